//! The server HTTP API: `POST /api/<method>` and the legacy `POST /api`.

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use shared::api;
use shared::http::ApiCall;
use shared::protocol::Error;

use crate::engine::Engine;
use crate::http::{read_body, text, Body};

/// Runs an API call the endpoint layer authorized.
pub async fn handle(req: Request<Incoming>, engine: Engine, call: ApiCall) -> Response<Body> {
    let body = match read_body(req, call.body, &engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if call.method.is_empty() {
        return legacy(&engine, &body).await;
    }
    let command = match api::parse(&call.method, &body) {
        Ok(Some(command)) => command,
        Ok(None) => return answer("", Err(api::not_found()), call.transport_errors),
        Err(e) => {
            tracing::info!(method = %call.method, "api error: {}", e.0);
            return text(StatusCode::BAD_REQUEST, &e.0);
        }
    };
    let method = command.method();
    answer(method, engine.api(command, body.len()).await, call.transport_errors)
}

fn answer(method: &str, result: Result<Value, Error>, transport_errors: bool) -> Response<Body> {
    if let Err(e) = &result {
        tracing::info!(method, code = e.code, message = %e.message, "api error");
    }
    let (status, body) = api::http_answer(method, &result, transport_errors);
    json_response(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), &body)
}

/// `POST /api` with newline-separated `{"method":…,"params":…}` commands; answers are
/// newline-joined in the same order.
async fn legacy(engine: &Engine, body: &[u8]) -> Response<Body> {
    let commands = match api::parse_legacy(body) {
        Ok(c) => c,
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.0),
    };
    let mut lines = Vec::with_capacity(commands.len());
    let commands_len = commands.len().max(1);
    for command in commands {
        let result = match command.command() {
            Ok(parsed) => engine.api(parsed, body.len() / commands_len).await,
            Err(e) => Err(e),
        };
        let mut line = api::envelope(&result);
        if !command.id.is_null() {
            line["id"] = command.id.clone();
        }
        lines.push(line.to_string());
    }
    let mut r = Response::new(Full::new(Bytes::from(lines.join("\n"))).boxed());
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}

fn json_response(status: StatusCode, value: &Value) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(value.to_string())).boxed());
    *r.status_mut() = status;
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    r
}
