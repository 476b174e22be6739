//! Streaming HTTP responses (uni HTTP stream, uni SSE, and the bidirectional emulation
//! streams): a response body fed by the session's outbound queue.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use shared::hub::{SessionId, Transport};
use tokio::sync::mpsc;

use crate::engine::{Conn, Engine, Event, Out};

/// Frames coalesced into one body chunk at most (fewer, larger writes under load).
const COALESCE_LIMIT: usize = 64 * 1024;

pub struct SessionBody {
    rx: mpsc::UnboundedReceiver<Out>,
    queued: Arc<std::sync::atomic::AtomicUsize>,
    prelude: Option<Bytes>,
    done: bool,
    guard: CloseGuard,
}

/// Tells the engine when the client goes away (the body is dropped by hyper).
struct CloseGuard {
    engine: Engine,
    session: SessionId,
}

impl Drop for CloseGuard {
    fn drop(&mut self) {
        self.engine.send(Event::Closed { session: self.session });
    }
}

impl http_body::Body for SessionBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(prelude) = this.prelude.take() {
            return Poll::Ready(Some(Ok(Frame::data(prelude))));
        }
        if this.done {
            return Poll::Ready(None);
        }
        let first = match this.rx.poll_recv(cx) {
            Poll::Ready(Some(Out::Data(b) | Out::Ping(b))) => b,
            Poll::Ready(Some(Out::Close(_)) | None) => {
                this.done = true;
                return Poll::Ready(None);
            }
            Poll::Pending => return Poll::Pending,
        };
        let mut total = first.len();
        let mut joined: Option<BytesMut> = None;
        while total < COALESCE_LIMIT {
            match this.rx.poll_recv(cx) {
                Poll::Ready(Some(Out::Data(b) | Out::Ping(b))) => {
                    total += b.len();
                    joined.get_or_insert_with(|| BytesMut::from(&first[..])).extend_from_slice(&b);
                }
                Poll::Ready(Some(Out::Close(_)) | None) => {
                    this.done = true;
                    break;
                }
                Poll::Pending => break,
            }
        }
        this.queued.fetch_sub(total, Ordering::Relaxed);
        let _ = &this.guard;
        Poll::Ready(Some(Ok(Frame::data(joined.map(BytesMut::freeze).unwrap_or(first)))))
    }
}

/// Opens a session on a streaming transport and returns its response; `first` is what the
/// engine should process right after opening (the connect request or frame).
pub fn open(engine: &Engine, transport: Transport, first: Event, content_type: &'static str, prelude: Option<Bytes>) -> Response<SessionBody> {
    let session = match &first {
        Event::Connect { session, .. } | Event::Frame { session, .. } => *session,
        _ => engine.session_id(),
    };
    let (conn, rx) = Conn::new();
    let queued = conn.queued.clone();
    engine.send(Event::Open { session, transport, conn });
    engine.send(first);
    let body = SessionBody { rx, queued, prelude, done: false, guard: CloseGuard { engine: engine.clone(), session } };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_cache(h);
    response
}

pub fn no_cache(h: &mut http::HeaderMap) {
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}
