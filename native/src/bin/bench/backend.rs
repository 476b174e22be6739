//! The application backend of the connect-proxy phase: a hyper HTTP/1.1 server in the bench
//! process that answers every connect call with a user of its own (one per client id), as
//! a cookie-checking backend would, and counts the calls.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

pub struct Backend {
    pub addr: SocketAddr,
    pub calls: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Backend {
    pub async fn start() -> Result<Backend, String> {
        let listener = TcpListener::bind("127.0.0.1:0").await.map_err(|e| format!("backend: {e}"))?;
        let addr = listener.local_addr().map_err(|e| e.to_string())?;
        let calls = Arc::new(AtomicU64::new(0));
        let counted = calls.clone();
        let task = tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let calls = counted.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                        let calls = calls.clone();
                        async move { Ok::<_, Infallible>(answer(req, &calls).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(TokioIo::new(socket), service)
                        .await;
                });
            }
        });
        Ok(Backend { addr, calls, task })
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

async fn answer(req: Request<hyper::body::Incoming>, calls: &AtomicU64) -> Response<Full<Bytes>> {
    calls.fetch_add(1, Relaxed);
    let body = Limited::new(req.into_body(), 64 * 1024).collect().await.map(|b| b.to_bytes()).unwrap_or_default();
    let client = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["client"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let text = format!(r#"{{"result":{{"user":"user-{client}"}}}}"#);
    let mut response = Response::new(Full::new(Bytes::from(text)));
    response.headers_mut().insert("content-type", hyper::header::HeaderValue::from_static("application/json"));
    response
}
