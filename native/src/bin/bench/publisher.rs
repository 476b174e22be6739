//! Publishes through `POST /api/publish` on keep-alive HTTP/1.1 connections: a few senders,
//! each one request at a time, together as fast as the server answers.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::now_us;
use crate::server::API_KEY;

pub struct Published {
    pub ok: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub elapsed: Duration,
}

/// Publishes `total` publications; publication `seq` goes to `channels[seq % channels.len()]`
/// and carries `#seq@<µs since epoch>;` plus padding to about 100 bytes of data.
/// `rate` > 0 paces the publications at that many per second in total (0: no pacing).
pub async fn publish(
    server: SocketAddr,
    channels: Arc<Vec<String>>,
    total: u64,
    senders: usize,
    rate: f64,
) -> Published {
    let next = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (next, channels) = (next.clone(), channels.clone());
        tasks.push(tokio::spawn(async move { sender(server, &channels, total, &next, start, rate).await }));
    }
    let mut out = Published { ok: 0, errors: 0, first_error: None, elapsed: Duration::ZERO };
    for t in tasks {
        match t.await {
            Ok((ok, errors, first)) => {
                out.ok += ok;
                out.errors += errors;
                out.first_error = out.first_error.or(first);
            }
            Err(e) => out.first_error = out.first_error.or(Some(e.to_string())),
        }
    }
    out.elapsed = start.elapsed();
    out
}

async fn sender(
    server: SocketAddr,
    channels: &[String],
    total: u64,
    next: &AtomicU64,
    start: Instant,
    rate: f64,
) -> (u64, u64, Option<String>) {
    let (mut ok, mut errors, mut first) = (0, 0, None::<String>);
    let mut conn: Option<TcpStream> = None;
    let mut buf = Vec::with_capacity(4096);
    loop {
        let seq = next.fetch_add(1, Relaxed);
        if seq >= total {
            return (ok, errors, first);
        }
        if rate > 0.0 {
            tokio::time::sleep_until((start + Duration::from_secs_f64(seq as f64 / rate)).into()).await;
        }
        let channel = &channels[(seq % channels.len() as u64) as usize];
        let mark = format!("#{seq}@{};", now_us());
        let pad = "x".repeat(100usize.saturating_sub(mark.len() + 8));
        let body = format!(r#"{{"channel":"{channel}","data":{{"b":"{mark}{pad}"}}}}"#);
        let request = format!(
            "POST /api/publish HTTP/1.1\r\nHost: {server}\r\nX-API-Key: {API_KEY}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
        let result = async {
            if conn.is_none() {
                let s = TcpStream::connect(server).await.map_err(|e| format!("api connect: {e}"))?;
                s.set_nodelay(true).map_err(|e| e.to_string())?;
                conn = Some(s);
            }
            let s = conn.as_mut().unwrap();
            s.write_all(request.as_bytes()).await.map_err(|e| format!("api write: {e}"))?;
            read_response(s, &mut buf).await
        };
        match tokio::time::timeout(Duration::from_secs(30), result).await {
            Ok(Ok((200, body))) if !body.contains("\"error\"") => ok += 1,
            Ok(Ok((status, body))) => {
                errors += 1;
                first.get_or_insert(format!("api answered {status}: {body}"));
            }
            Ok(Err(e)) => {
                errors += 1;
                first.get_or_insert(e);
                conn = None;
            }
            Err(_) => {
                errors += 1;
                first.get_or_insert("api request timed out (30 s)".into());
                conn = None;
            }
        }
    }
}

/// Reads one response with a Content-Length body; returns (status, body).
async fn read_response(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(u16, String), String> {
    buf.clear();
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head) = response.parse(buf).map_err(|e| format!("api response: {e}"))? {
            let status = response.code.unwrap_or(0);
            let length: usize = response
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("content-length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .ok_or("api response without Content-Length")?;
            while buf.len() < head + length {
                read_more(s, buf).await?;
            }
            let body = String::from_utf8_lossy(&buf[head..head + length]).into_owned();
            buf.drain(..head + length);
            return Ok((status, body));
        }
        read_more(s, buf).await?;
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    match s.read(&mut chunk).await {
        Ok(0) => Err("api connection closed".into()),
        Ok(n) => {
            buf.extend_from_slice(&chunk[..n]);
            Ok(())
        }
        Err(e) => Err(format!("api read: {e}")),
    }
}
