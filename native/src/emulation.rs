//! Bidirectional emulation: `/connection/http_stream` and `/connection/sse` carry replies to
//! the client; `POST /emulation` carries its later commands to the session named in it.

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use shared::hub::Transport;
use shared::protocol::{decode_emulation, Encoding};

use crate::engine::{Engine, Event};
use crate::server::{empty, method_not_allowed, preflight, query_param, read_body, text, Body};
use crate::stream;

fn is_protobuf(req: &Request<Incoming>) -> bool {
    req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/octet-stream"))
}

/// `POST /connection/http_stream`: the body is the encoded connect command frame.
pub async fn http_stream(req: Request<Incoming>, engine: &Engine) -> Response<Body> {
    match *req.method() {
        Method::POST => {}
        Method::OPTIONS => return preflight(&req),
        _ => return method_not_allowed("POST"),
    }
    let encoding = if is_protobuf(&req) { Encoding::Protobuf } else { Encoding::Json };
    let limit = engine.config.http_stream_max_request_body_size as usize;
    let body = match read_body(req, limit, engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let content_type = match encoding {
        Encoding::Json => "application/json",
        Encoding::Protobuf => "application/octet-stream",
    };
    let session = engine.session_id();
    stream::open(engine, Transport::HttpStream(encoding), Event::Frame { session, data: body }, content_type, None).await.map(|b| b.boxed())
}

/// `/connection/sse`: `cf_connect` carries the connect command frame (JSON only).
pub async fn sse(req: Request<Incoming>, engine: &Engine) -> Response<Body> {
    let frame = match *req.method() {
        Method::GET => match query_param(&req, "cf_connect") {
            Some(frame) => Bytes::from(frame),
            None => return text(StatusCode::BAD_REQUEST, "missing cf_connect query parameter with the connect command"),
        },
        Method::POST => {
            let limit = engine.config.sse_max_request_body_size as usize;
            match read_body(req, limit, engine).await {
                Ok(b) => b,
                Err(r) => return r,
            }
        }
        Method::OPTIONS => return preflight(&req),
        _ => return method_not_allowed("GET, POST"),
    };
    let session = engine.session_id();
    let prelude = Some(Bytes::from_static(b"\r\n"));
    stream::open(engine, Transport::Sse, Event::Frame { session, data: frame }, "text/event-stream; charset=utf-8", prelude)
        .await
        .map(|b| b.boxed())
}

/// `POST /emulation`: `{node, session, data}`; 204 once handed to the session.
pub async fn emulation(req: Request<Incoming>, engine: &Engine) -> Response<Body> {
    match *req.method() {
        Method::POST => {}
        Method::OPTIONS => return preflight(&req),
        _ => return method_not_allowed("POST"),
    }
    let protobuf = is_protobuf(&req);
    let limit = engine.config.emulation_max_request_body_size as usize;
    let body = match read_body(req, limit, engine).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let (node, token, data) = match decode_emulation(&body, protobuf) {
        Ok(r) => (r.node, r.session, r.data),
        Err(e) => return text(StatusCode::BAD_REQUEST, &e),
    };
    if node != *engine.node_id {
        return text(StatusCode::NOT_FOUND, "unknown node: the session lives on another node or ended");
    }
    // Waits while the engine is behind: this connection's next request waits with it.
    engine.send(Event::Emulation { token, data }).await;
    empty(StatusCode::NO_CONTENT)
}
