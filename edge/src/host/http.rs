//! HTTP answers shared by the Worker and the node objects (the same status codes and headers
//! as the native server).

use worker::{Headers, Request, Response, Result};

pub fn text(status: u16, body: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "text/plain; charset=utf-8")?;
    Ok(Response::ok(body)?.with_status(status).with_headers(headers))
}

pub fn json(status: u16, body: String) -> Result<Response> {
    let headers = Headers::new();
    headers.set("content-type", "application/json")?;
    Ok(Response::ok(body)?.with_status(status).with_headers(headers))
}

pub fn empty(status: u16) -> Result<Response> {
    Ok(Response::empty()?.with_status(status))
}

pub fn method_not_allowed(allow: &str) -> Result<Response> {
    let headers = Headers::new();
    headers.set("allow", allow)?;
    headers.set("content-type", "text/plain; charset=utf-8")?;
    Ok(Response::ok(format!("method not allowed, use {allow}"))?.with_status(405).with_headers(headers))
}

/// The answer to a CORS preflight for a POST endpoint.
pub fn preflight(req: &Request) -> Result<Response> {
    let headers = Headers::new();
    headers.set("access-control-allow-methods", "POST, OPTIONS")?;
    headers.set("access-control-max-age", "300")?;
    if let Some(asked) = req.headers().get("access-control-request-headers")? {
        headers.set("access-control-allow-headers", &asked)?;
    }
    Ok(Response::empty()?.with_status(204).with_headers(headers))
}

pub fn no_cache(h: &Headers) -> Result<()> {
    h.set("cache-control", "private, no-cache, no-store, must-revalidate, max-age=0")?;
    h.set("pragma", "no-cache")?;
    h.set("expires", "0")?;
    h.set("x-accel-buffering", "no")
}

pub fn cors(h: &Headers, origin: &str) -> Result<()> {
    h.set("access-control-allow-origin", origin)?;
    h.set("access-control-allow-credentials", "true")?;
    h.set("vary", "Origin")
}

/// The request body, at most `limit` bytes: 413 past it.
pub async fn read_body(req: &mut Request, limit: usize) -> std::result::Result<Vec<u8>, Response> {
    let too_large = || text(413, &format!("request body is larger than the limit of {limit} bytes")).expect("static response");
    let declared = req.headers().get("content-length").ok().flatten().and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    match req.bytes().await {
        Ok(b) if b.len() > limit => Err(too_large()),
        Ok(b) => Ok(b),
        Err(e) => Err(text(400, &format!("could not read request body: {e}")).expect("static response")),
    }
}

pub fn query_param(req: &Request, name: &str) -> Option<String> {
    let url = req.url().ok()?;
    let value = url.query_pairs().find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    value
}
