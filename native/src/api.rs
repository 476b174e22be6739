//! The server HTTP API: `POST /api/<method>` and the legacy `POST /api`.

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::Value;
use shared::api;
use shared::protocol::Error;

use crate::engine::Engine;
use crate::server::{method_not_allowed, query_param, read_body, text, Body};

/// API request bodies larger than this are refused (400, like other undecodable bodies).
const MAX_BODY: usize = 10 * 1024 * 1024;

pub async fn handle(req: Request<Incoming>, engine: Engine, prefix: &str) -> Response<Body> {
    if req.method() != Method::POST {
        return method_not_allowed("POST");
    }
    let c = engine.config.clone();
    if !c.api_insecure && !authorized(&req, &c.api_key) {
        return crate::server::empty(StatusCode::UNAUTHORIZED);
    }
    let transport_errors = c.api_error_mode == "transport"
        || req.headers().get("x-centrifugo-error-mode").and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("transport"));
    let method = req.uri().path()[prefix.len()..].trim_start_matches('/').to_owned();
    let body = match read_body(req, MAX_BODY, &engine).await {
        Ok(b) => b,
        Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return text(StatusCode::BAD_REQUEST, &format!("request body is larger than the limit of {MAX_BODY} bytes"))
        }
        Err(r) => return r,
    };
    if method.is_empty() {
        return legacy(&engine, &body).await;
    }
    let command = match api::parse(&method, &body) {
        Ok(Some(command)) => command,
        Ok(None) => return answer("", Err(api::not_found()), transport_errors),
        Err(e) => return text(StatusCode::BAD_REQUEST, &e.0),
    };
    let method = command.method();
    answer(method, engine.api(command, body.len()).await, transport_errors)
}

fn authorized(req: &Request<Incoming>, key: &str) -> bool {
    if key.is_empty() {
        return false;
    }
    let h = req.headers();
    if let Some(v) = h.get("x-api-key").and_then(|v| v.to_str().ok()) {
        return v == key;
    }
    if let Some(v) = h.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) {
        let mut parts = v.splitn(2, ' ');
        let scheme = parts.next().unwrap_or("");
        let given = parts.next().unwrap_or("").trim();
        return scheme.eq_ignore_ascii_case("apikey") && given == key;
    }
    query_param(req, "api_key").is_some_and(|v| v == key)
}

fn answer(method: &str, result: Result<Value, Error>, transport_errors: bool) -> Response<Body> {
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
