//! Streaming HTTP responses (uni HTTP stream, uni SSE, and the bidirectional emulation
//! streams): a response body fed by the session's outbound queue.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http::Request;
use http::{header, HeaderValue, Response, StatusCode};
use http_body::Frame;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use shared::http::{FirstInput, StreamInput, StreamOpen};
use shared::hub::{SessionId, Transport};

use crate::engine::{Engine, Event, SessionGuard};
use crate::http::{answer, read_body, Body};
use crate::outbox::{Out, Outbox};

/// Frames coalesced into one body chunk at most (fewer, larger writes under load).
const COALESCE_LIMIT: usize = 64 * 1024;

pub struct SessionBody {
    outbox: Arc<Outbox>,
    batch: VecDeque<Out>,
    prelude: Option<Bytes>,
    done: bool,
    /// After a disconnect push the stream stays open a moment, so clients handle the push
    /// before they see the stream end (Node's `eventsource` reports the end first otherwise).
    linger: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Tells the engine when the client goes away (the body is dropped by hyper).
    guard: SessionGuard,
}

const LINGER: std::time::Duration = std::time::Duration::from_millis(shared::http::STREAM_END_LINGER_MS);

impl http_body::Body for SessionBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        let this = self.get_mut();
        if let Some(prelude) = this.prelude.take() {
            return Poll::Ready(Some(Ok(Frame::data(prelude))));
        }
        if this.done {
            if let Some(linger) = this.linger.as_mut() {
                if linger.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                this.linger = None;
            }
            return Poll::Ready(None);
        }
        if this.batch.is_empty() && this.outbox.poll_take(cx, &mut this.batch).is_pending() {
            return Poll::Pending;
        }
        // Everything queued goes out as one chunk (fewer, larger writes under load).
        let mut chunk = BytesMut::new();
        let mut single = None;
        let mut taken = 0;
        while let Some(out) = this.batch.pop_front() {
            taken += Outbox::frame_len(&out);
            match out {
                Out::Data(b) | Out::Ping(b) => {
                    if single.is_none() && chunk.is_empty() {
                        single = Some(b);
                    } else {
                        if let Some(first) = single.take() {
                            chunk.extend_from_slice(&first);
                        }
                        chunk.extend_from_slice(&b);
                    }
                    if chunk.len() >= COALESCE_LIMIT {
                        break;
                    }
                }
                Out::Close(_) => {
                    this.done = true;
                    this.linger = Some(Box::pin(tokio::time::sleep(LINGER)));
                    break;
                }
            }
        }
        this.outbox.written(taken);
        let _ = &this.guard;
        match single.or_else(|| (!chunk.is_empty()).then(|| chunk.freeze())) {
            Some(data) => Poll::Ready(Some(Ok(Frame::data(data)))),
            None => Poll::Ready(None),
        }
    }
}

impl Drop for SessionBody {
    fn drop(&mut self) {
        self.outbox.close();
    }
}

/// Serves a stream the endpoint layer decided on: reads the body that carries the first
/// input if it does, then opens the session.
pub async fn serve(req: Request<Incoming>, engine: &Engine, open: StreamOpen) -> Response<Body> {
    let input = match open.input {
        StreamInput::Ready(input) => input,
        StreamInput::Body(rule) => match read_body(req, rule, engine).await {
            Ok(body) => match FirstInput::from_body(open.transport, body) {
                Ok(input) => input,
                Err(a) => return answer(a),
            },
            Err(r) => return r,
        },
    };
    let first = first_event(engine.session_id(), input, open.last_event_id);
    let prelude = (!open.prelude.is_empty()).then_some(open.prelude);
    self::open(engine, open.transport, first, open.content_type, prelude, open.headers).await.map(|b| b.boxed())
}

/// The event that gives a new stream session its first input.
pub fn first_event(session: SessionId, input: FirstInput, last_event_id: Option<String>) -> Event {
    match input {
        FirstInput::Connect(request) => Event::Connect { session, request, last_event_id },
        FirstInput::Frame(data) => Event::Frame { session, data },
    }
}

/// Opens a session on a streaming transport and returns its response; `first` is what the
/// engine should process right after opening (the connect request or frame). Waits while the
/// engine is behind; the guard that reports the end exists once the open is queued, so an
/// open given up while waiting leaves nothing behind.
pub async fn open(
    engine: &Engine,
    transport: Transport,
    first: Event,
    content_type: &'static str,
    prelude: Option<Bytes>,
    headers: Vec<(String, String)>,
) -> Response<SessionBody> {
    let session = match &first {
        Event::Connect { session, .. } | Event::Frame { session, .. } => *session,
        _ => engine.session_id(),
    };
    let outbox = Arc::new(Outbox::default());
    engine.send(Event::Open { session, transport, conn: outbox.clone(), headers }).await;
    let guard = SessionGuard::new(engine.clone(), session);
    engine.send(first).await;
    let body = SessionBody { outbox, batch: VecDeque::new(), prelude, done: false, linger: None, guard };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::OK;
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    no_cache(h);
    // The connection ends with the stream, as on the hand-served path. Kept alive, it would
    // wait for a next request for the whole keep-alive timeout: a client cut off (3008) or
    // disconnected whose last bytes fit the kernel buffers, and which never reads again,
    // would hold it long after the session ended.
    h.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

pub fn no_cache(h: &mut http::HeaderMap) {
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache, no-store, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(header::EXPIRES, HeaderValue::from_static("0"));
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
}
