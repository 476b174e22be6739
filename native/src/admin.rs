//! The admin web UI's requests (`shared::admin` decides; this moves the bytes): the login
//! with its slow-down table, and admin API calls run like `POST /api/<method>`.

use std::net::IpAddr;

use http::{header, Request, Response};
use hyper::body::Incoming;
use shared::admin::{self, Step};
use shared::http::{AdminCall, AdminLogin};

use crate::engine::{now, Engine};
use crate::http::{answer, read_body, Body};

/// `POST <prefix>/admin/auth`.
pub async fn login(req: Request<Incoming>, engine: &Engine, login: AdminLogin, peer: Option<IpAddr>) -> Response<Body> {
    let content_type = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = match read_body(req, login.body, engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let who = peer.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string());
    let reply = {
        let mut guard = engine.admin_logins.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        guard.login(&engine.config, &who, content_type.as_deref(), &body, now())
    };
    if reply.status != 200 {
        tracing::info!(%who, status = reply.status, reason = %reply.body, "admin login refused");
    }
    answer(reply)
}

/// `POST <prefix>/admin/api`.
pub async fn api(req: Request<Incoming>, engine: &Engine, call: AdminCall) -> Response<Body> {
    if let Err(refused) = admin::authorize(&engine.config, call.token.as_deref(), now()) {
        return answer(refused);
    }
    let body = match read_body(req, call.body, engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match admin::command(&engine.config, &engine.endpoints, call.token.as_deref(), &body, now()) {
        Ok(Step::Run { command, .. }) => answer(admin::api_answer(&engine.api(*command, body.len()).await)),
        Ok(Step::Done(reply)) => answer(reply),
        Err(refused) => {
            tracing::info!(status = refused.status, reason = %refused.body, "admin api call refused");
            answer(refused)
        }
    }
}
