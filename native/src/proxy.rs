//! The native side of proxies to the application backend: POSTs the hub's
//! [`ProxyRequest`]s with a pooled keep-alive HTTP/1.1 client and hands back what came.
//!
//! The client is hyper-util's (`client::legacy::Client`): rotor already runs on hyper for
//! its server, so the client adds little (reqwest would bring its own stack on top of the
//! same hyper), and it pools connections per host with keep-alive. `https://` endpoints go
//! through hyper-rustls (rustls with ring, Mozilla's roots from webpki-roots: no system
//! OpenSSL). The hub owns the timeout; the call is bounded here too, so that no task
//! outlives it. At most `MAX_IN_FLIGHT` (1,024) calls are on the wire at once (a thousand clients
//! connecting through a slow backend would otherwise open a thousand sockets to it, and fds
//! are shared with the clients'); the others wait their turn within their own timeout. The
//! sockets themselves are counted too, by the connector (`CountedConnector`): the pool finishes
//! a connect in the background when its call gave up, so counting calls alone does not bound
//! sockets. A socket holds its permit until it closes, idle in the pool or not.

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

/// Idle connections kept per backend host (six endpoints on six hosts stay well under
/// `MAX_SOCKETS` even with full pools).
const MAX_IDLE_PER_HOST: usize = 64;
/// Calls on the wire at once.
const MAX_IN_FLIGHT: usize = 1024;
/// Sockets open to backends at once, idle ones included.
const MAX_SOCKETS: usize = MAX_IN_FLIGHT + 6 * MAX_IDLE_PER_HOST;

#[derive(Clone)]
pub struct ProxyClient {
    client: Client<CountedConnector, Full<Bytes>>,
    in_flight: Arc<Semaphore>,
}

impl Default for ProxyClient {
    fn default() -> Self {
        ProxyClient::with_limits(MAX_IN_FLIGHT, MAX_SOCKETS)
    }
}

impl ProxyClient {
    fn with_limits(in_flight: usize, sockets: usize) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        connector.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_webpki_roots()
            .https_or_http()
            .enable_http1()
            .wrap_connector(connector);
        let connector = CountedConnector { inner: connector, sockets: Arc::new(Semaphore::new(sockets)) };
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

type Inner = HttpsConnector<HttpConnector>;
type InnerStream = hyper_rustls::MaybeHttpsStream<hyper_util::rt::TokioIo<tokio::net::TcpStream>>;
type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The connector, each socket holding a permit of a bounded count until it is dropped.
#[derive(Clone)]
struct CountedConnector {
    inner: Inner,
    sockets: Arc<Semaphore>,
}

impl tower_service::Service<http::Uri> for CountedConnector {
    type Response = Counted;
    type Error = BoxError;
    type Future = std::pin::Pin<Box<dyn std::future::Future<Output = Result<Counted, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<Result<(), BoxError>> {
        tower_service::Service::<http::Uri>::poll_ready(&mut self.inner, cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let mut inner = self.inner.clone();
        let sockets = self.sockets.clone();
        Box::pin(async move {
            let permit = sockets.acquire_owned().await?;
            let stream = tower_service::Service::call(&mut inner, uri).await?;
            Ok(Counted { stream, _permit: permit })
        })
    }
}

/// A backend socket and its permit.
struct Counted {
    stream: InnerStream,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl hyper_util::client::legacy::connect::Connection for Counted {
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.stream.connected()
    }
}

impl hyper::rt::Read for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl hyper::rt::Write for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
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
    /// no more than the limit of sockets are open to it at once, and every call still ends at its
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
        let client = ProxyClient::with_limits(8, 8);
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
        let calls = calls.collect::<Vec<_>>();
        // Before any call has timed out no socket has closed, so what was accepted is open.
        tokio::time::sleep(Duration::from_millis(350)).await;
        let open = accepted.load(std::sync::atomic::Ordering::SeqCst);
        assert!((1..=8).contains(&open), "{open} sockets open to the backend at once");
        for call in calls {
            let outcome = call.await.unwrap();
            assert!(matches!(&outcome, ProxyOutcome::Failed(c) if c.contains("within 500 ms")), "{outcome:?}");
        }
        assert!(started.elapsed() < Duration::from_secs(2), "waiting for a turn counts against the timeout");
    }
}
