//! The native side of proxies to the application backend: POSTs the hub's
//! [`ProxyRequest`]s with a pooled keep-alive HTTP/1.1 client and hands back what came.
//!
//! The client is hyper-util's (`client::legacy::Client`): rotor already runs on hyper for
//! its server, so the client adds little (reqwest would bring its own stack on top of the
//! same hyper), and it pools connections per host with keep-alive. `https://` endpoints go
//! through hyper-rustls (rustls with ring, Mozilla's roots from webpki-roots: no system
//! OpenSSL). The hub owns the timeout; the call is bounded here too, so that no task
//! outlives it. At most [`MAX_IN_FLIGHT`] calls are on the wire at once (a thousand clients
//! connecting through a slow backend would otherwise open a thousand sockets to it, and fds
//! are shared with the clients'); the others wait their turn within their own timeout.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use shared::proxy::{ProxyOutcome, ProxyRequest, MAX_ANSWER_BYTES};
use tokio::sync::Semaphore;

/// Idle connections kept per backend host.
const MAX_IDLE_PER_HOST: usize = 256;
/// Calls on the wire at once (so connections to backends, idle ones aside).
const MAX_IN_FLIGHT: usize = 1024;

#[derive(Clone)]
pub struct ProxyClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    in_flight: Arc<Semaphore>,
}

impl Default for ProxyClient {
    fn default() -> Self {
        ProxyClient::with_limit(MAX_IN_FLIGHT)
    }
}

impl ProxyClient {
    fn with_limit(in_flight: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
            .build(connector);
        ProxyClient { client, in_flight: Arc::new(Semaphore::new(in_flight)) }
    }

    /// Makes the call; never longer than its timeout, the wait for a turn included.
    pub async fn call(&self, request: ProxyRequest) -> ProxyOutcome {
        let timeout = Duration::from_millis(request.timeout_ms);
        let turn_then_post = async {
            // The semaphore is never closed; the permit is held until the body is read.
            let Ok(_permit) = self.in_flight.acquire().await else {
                return ProxyOutcome::Failed("proxy client closed".into());
            };
            self.post(request).await
        };
        match tokio::time::timeout(timeout, turn_then_post).await {
            Ok(outcome) => outcome,
            Err(_) => ProxyOutcome::Failed(format!("no answer within {} ms", timeout.as_millis())),
        }
    }

    async fn post(&self, request: ProxyRequest) -> ProxyOutcome {
        let mut builder = http::Request::post(request.endpoint.as_str());
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        let built = match builder.body(Full::new(request.body)) {
            Ok(r) => r,
            Err(e) => return ProxyOutcome::Failed(format!("bad request: {e}")),
        };
        let response = match self.client.request(built).await {
            Ok(r) => r,
            Err(e) => return ProxyOutcome::Failed(causes(&e)),
        };
        let status = response.status().as_u16();
        // One byte over the limit is enough for the hub to refuse it.
        match Limited::new(response.into_body(), MAX_ANSWER_BYTES + 1).collect().await {
            Ok(body) => ProxyOutcome::Answer { status, body: body.to_bytes() },
            Err(e) if e.is::<http_body_util::LengthLimitError>() => {
                ProxyOutcome::Failed(format!("answer larger than {MAX_ANSWER_BYTES} bytes"))
            }
            Err(e) => ProxyOutcome::Failed(format!("reading the answer: {e}")),
        }
    }
}

/// An error and its causes, innermost last ("client error (Connect): tcp connect error:
/// Connection refused").
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::proxy::{ProxyId, ProxyKind};

    /// A backend that accepts connections and never answers: however many calls wait on it,
    /// no more than the limit of sockets are opened to it, and every call still ends at its
    /// timeout.
    #[tokio::test]
    async fn calls_to_a_stalled_backend_open_no_more_sockets_than_the_limit() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                held.push(socket);
            }
        });
        let client = ProxyClient::with_limit(8);
        let calls = (0..40u64).map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                client
                    .call(ProxyRequest {
                        id: ProxyId(i),
                        kind: ProxyKind::Rpc,
                        endpoint: format!("http://127.0.0.1:{port}/rpc"),
                        timeout_ms: 500,
                        headers: vec![("content-type".into(), "application/json".into())],
                        body: Bytes::from_static(b"{}"),
                    })
                    .await
            })
        });
        let started = std::time::Instant::now();
        for call in calls.collect::<Vec<_>>() {
            let outcome = call.await.unwrap();
            assert!(matches!(&outcome, ProxyOutcome::Failed(c) if c.contains("within 500 ms")), "{outcome:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "waiting for a turn counts against the timeout");
        let opened = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!(opened <= 8, "{opened} sockets opened to the backend");
    }
}
