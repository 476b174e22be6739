//! Server API commands acting on this node's connections (`disconnect`, `subscribe`,
//! `channels`, `info`, …): the Worker sends them to every node object and merges the answers
//! (see `crate::api_route`).

use std::rc::Rc;

use futures_channel::oneshot;
use shared::api::{self, ApiId};
use shared::protocol::Error;
use worker::{Request, Response, Result};

use super::NodeHost;
use crate::host::http::{self, query_param};
use crate::host::now;

impl NodeHost {
    pub(super) async fn connection_api(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let method = query_param(&req, "method").unwrap_or_default();
        let body = req.bytes().await?;
        let result = match api::parse(&method, &body) {
            Ok(Some(command)) => {
                let id = ApiId(self.next_api.get());
                self.next_api.set(id.0 + 1);
                let (tx, rx) = oneshot::channel();
                self.api_waiters.borrow_mut().insert(id, tx);
                let now = now();
                self.with_hub(|hub| hub.handle_api(id, command, now));
                self.drain(now);
                rx.await.unwrap_or_else(|_| Err(Error::internal()))
            }
            Ok(None) => Err(api::not_found()),
            Err(_) => Err(Error::bad_request()),
        };
        http::json(200, api::envelope(&result).to_string())
    }
}
