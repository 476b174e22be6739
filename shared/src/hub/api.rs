//! Server API commands that go through the hub.

use super::{Hub, Pending};
use crate::api::{ApiCommand, ApiId, ApiKind};
use crate::broker::{BrokerOp, PublishOp};
use crate::hub::Output;
use crate::protocol::Error;
use crate::time::Timestamp;

impl Hub {
    pub(crate) fn api(&mut self, id: ApiId, command: ApiCommand, _now: Timestamp) {
        match command {
            ApiCommand::Publish(req) => {
                if req.channel.is_empty() {
                    return self.api_error(id, Error::bad_request());
                }
                let Ok(opts) = self.config.namespace_for(&req.channel) else {
                    return self.api_error(id, Error::unknown_channel());
                };
                let data = match req.payload() {
                    Ok(d) if !d.is_empty() && &d[..] != b"null" => d,
                    Ok(_) | Err(_) => return self.api_error(id, Error::bad_request()),
                };
                let op = PublishOp {
                    data,
                    info: None,
                    tags: req.tags,
                    history: self.history_options(opts),
                    skip_history: req.skip_history,
                    idempotency_key: (!req.idempotency_key.is_empty()).then_some(req.idempotency_key),
                };
                self.request(&req.channel, BrokerOp::Publish(op), Pending::Api { id, kind: ApiKind::Publish });
            }
        }
    }

    fn api_error(&mut self, id: ApiId, error: Error) {
        self.outputs.push_back(Output::Api { id, result: Err(error) });
    }
}
