//! The native side of proxies to the application backend: POSTs the hub's
//! [`ProxyRequest`]s with a pooled keep-alive HTTP/1.1 client and hands back what came.
//!
//! The client is hyper-util's (`client::legacy::Client`): rotor already runs on hyper for
//! its server, so the client adds little (reqwest would bring its own stack on top of the
//! same hyper), and it pools connections per host with keep-alive. `https://` endpoints go
//! through hyper-rustls (rustls with ring, Mozilla's roots from webpki-roots: no system
//! OpenSSL). The hub owns the timeout; the call is bounded here too, so that no task
//! outlives it.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use shared::proxy::{ProxyOutcome, ProxyRequest, MAX_ANSWER_BYTES};

/// Idle connections kept per backend host.
const MAX_IDLE_PER_HOST: usize = 256;

#[derive(Clone)]
pub struct ProxyClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Default for ProxyClient {
    fn default() -> Self {
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
        ProxyClient { client }
    }
}

impl ProxyClient {
    /// Makes the call; never longer than its timeout.
    pub async fn call(&self, request: ProxyRequest) -> ProxyOutcome {
        let timeout = Duration::from_millis(request.timeout_ms);
        match tokio::time::timeout(timeout, self.post(request)).await {
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
