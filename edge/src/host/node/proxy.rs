//! Proxy calls to the application backend from a node object: the hub's
//! [`ProxyRequest`]s go out with `fetch` (bounded by the call's timeout, and the answer
//! read to at most [`MAX_ANSWER_BYTES`] + 1, redirects not followed), and what comes back goes to
//! `Hub::handle_proxy_reply`. The hub owns the timeout; the fetch is aborted at it too, so
//! nothing outlives the call.

use std::rc::Rc;

use futures_util::future::{select, Either};
use futures_util::StreamExt;
use shared::proxy::{ProxyOutcome, ProxyRequest, MAX_ANSWER_BYTES};
use worker::{AbortController, Fetch, Headers, Method, Request, RequestInit, RequestRedirect};

use super::NodeHost;
use crate::host::now;

impl NodeHost {
    pub(super) fn proxy(self: &Rc<Self>, request: ProxyRequest) {
        let host = self.clone();
        worker::wasm_bindgen_futures::spawn_local(async move {
            let id = request.id;
            let outcome = call(request).await;
            let now = now();
            host.with_hub(|hub| hub.handle_proxy_reply(id, outcome, now));
            host.drain(now);
        });
    }
}

async fn call(request: ProxyRequest) -> ProxyOutcome {
    let timeout = std::time::Duration::from_millis(request.timeout_ms);
    let controller = AbortController::default();
    let signal = controller.signal();
    let post = Box::pin(post(request, signal));
    let deadline = Box::pin(worker::Delay::from(timeout));
    match select(post, deadline).await {
        Either::Left((outcome, _)) => outcome,
        Either::Right(_) => {
            controller.abort();
            ProxyOutcome::Failed(format!("no answer within {} ms", timeout.as_millis()))
        }
    }
}

async fn post(request: ProxyRequest, signal: worker::AbortSignal) -> ProxyOutcome {
    let failed = |what: &str, e: worker::Error| ProxyOutcome::Failed(format!("{what}: {e}"));
    let headers = Headers::new();
    for (name, value) in &request.headers {
        if let Err(e) = headers.set(name, value) {
            return failed("header", e);
        }
    }
    let body = js_sys::Uint8Array::from(&request.body[..]);
    let mut init = RequestInit::new();
    // A redirect is an answer like any other 3xx (refused by its status), as natively: fetch
    // would follow it by default, re-sending the body and forwarded headers elsewhere.
    init.with_method(Method::Post)
        .with_headers(headers)
        .with_body(Some(body.into()))
        .with_redirect(RequestRedirect::Manual);
    let req = match Request::new_with_init(&request.endpoint, &init) {
        Ok(r) => r,
        Err(e) => return failed("request", e),
    };
    let mut response = match Fetch::Request(req).send_with_signal(&signal).await {
        Ok(r) => r,
        Err(e) => return failed("fetch", e),
    };
    let status = response.status_code();
    let mut stream = match response.stream() {
        Ok(s) => s,
        Err(e) => return failed("answer", e),
    };
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        match chunk {
            Ok(chunk) => body.extend_from_slice(&chunk),
            Err(e) => return failed("reading the answer", e),
        }
        if body.len() > MAX_ANSWER_BYTES {
            return ProxyOutcome::Failed(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
        }
    }
    ProxyOutcome::Answer { status, body: body.into() }
}
