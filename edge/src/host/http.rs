//! The endpoint layer's decisions and answers as Workers requests and responses, shared by
//! the Worker and the node objects.

use shared::http::{Answer, Routed};
use worker::{Headers, Request, Response, Result};

use super::Loaded;

/// Asks the endpoint layer what `req` is.
pub fn decide(req: &Request, loaded: &Loaded) -> Result<Routed> {
    let url = req.url()?;
    let headers: Vec<(String, String)> = req.headers().entries().collect();
    let method = req.method();
    let view =
        shared::http::Request { method: method.as_ref(), path: url.path(), query: url.query(), headers: &headers };
    Ok(shared::http::decide(&loaded.config, &loaded.endpoints, &view))
}

/// A ready answer of the endpoint layer.
pub fn answer(a: Answer) -> Result<Response> {
    let headers = Headers::new();
    for (name, value) in &a.headers {
        headers.append(name, value)?;
    }
    let response = if a.body.is_empty() { Response::empty()? } else { Response::ok(a.body)? };
    Ok(response.with_status(a.status).with_headers(headers))
}

pub fn text(status: u16, body: &str) -> Result<Response> {
    answer(Answer::text(status, body))
}

pub fn json(status: u16, body: String) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(body)?.with_status(status).with_headers(headers))
}

pub fn empty(status: u16) -> Result<Response> {
    Ok(Response::empty()?.with_status(status))
}

pub fn no_cache(h: &Headers) -> Result<()> {
    h.set("cache-control", "private, no-cache, no-store, must-revalidate, max-age=0")?;
    h.set("pragma", "no-cache")?;
    h.set("expires", "0")?;
    h.set("x-accel-buffering", "no")
}

/// Adds the CORS headers the layer decided on (not to a 101: its headers are the runtime's).
pub fn with_cors(response: Response, cors: &[(&'static str, String)]) -> Result<Response> {
    if response.status_code() != 101 {
        for (name, value) in cors {
            response.headers().set(name, value)?;
        }
    }
    Ok(response)
}

/// The request body, within `rule`: the layer's answer past it (make it a response with
/// [`answer`]).
pub async fn read_body(req: &mut Request, rule: shared::http::Body) -> std::result::Result<Vec<u8>, Answer> {
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rule.limit as u64) {
        return Err(rule.too_large());
    }
    match req.bytes().await {
        Ok(b) if b.len() > rule.limit => Err(rule.too_large()),
        Ok(b) => Ok(b),
        Err(e) => Err(Answer::unreadable_body(e)),
    }
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    let url = req.url().ok()?;
    let value = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    value
}
