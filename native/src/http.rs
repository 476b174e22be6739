//! The endpoint layer's answers as hyper responses, and request bodies read within the
//! layer's limits: what every transport served through hyper shares (`server.rs` routes to
//! them; none of them depends on it).

use std::convert::Infallible;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, Limited};
use hyper::body::Incoming;
use shared::http::Answer;

use crate::engine::Engine;

/// The body of every response served through hyper.
pub type Body = BoxBody<Bytes, Infallible>;

/// A ready answer of the endpoint layer as a hyper response.
pub fn answer(a: Answer) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(a.body)).boxed());
    *r.status_mut() = StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let h = r.headers_mut();
    for (name, value) in a.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            h.append(name, value);
        }
    }
    r
}

/// Reads a request body within `rule.limit` bytes and `engine.timeouts.body`: the layer's
/// answers past either (a body too slow also ends the connection).
pub async fn read_body(
    req: Request<Incoming>,
    rule: shared::http::Body,
    engine: &Engine,
) -> Result<Bytes, Response<Body>> {
    let declared =
        req.headers().get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > rule.limit as u64) {
        return Err(answer(rule.too_large()));
    }
    let timeout = engine.timeouts.body;
    match tokio::time::timeout(timeout, Limited::new(req.into_body(), rule.limit).collect()).await {
        Ok(Ok(collected)) => Ok(collected.to_bytes()),
        Ok(Err(e)) if e.downcast_ref::<http_body_util::LengthLimitError>().is_some() => Err(answer(rule.too_large())),
        Ok(Err(e)) => Err(answer(Answer::unreadable_body(e))),
        Err(_) => Err(answer(Answer::body_timeout(timeout.as_millis()))),
    }
}

pub fn text(status: StatusCode, body: &str) -> Response<Body> {
    answer(Answer::text(status.as_u16(), body))
}

pub fn empty(status: StatusCode) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::new()).boxed());
    *r.status_mut() = status;
    r
}
