//! One client flooding the engine with commands cannot take the server down: the engine's
//! queue is bounded, so the flooding connection stops being read while the engine is behind.
//! Memory stays bounded, the API and other clients keep answering, and SIGTERM still ends
//! the process.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::{api, connect_command, ws_open, Rotor};
use tokio_tungstenite::tungstenite::Message;

/// How long the flood lasts.
const FLOOD: Duration = Duration::from_secs(5);
/// Growth of the server's resident memory allowed during the flood.
const RSS_BOUND_KIB: u64 = 100 * 1024;
/// How long the API and a new client may take to answer during the flood (debug build, busy
/// 2-core machine: generous, yet far below what an unbounded queue costs).
const PROMPT: Duration = Duration::from_secs(3);

/// A frame of `send` commands just under the 64 KiB message limit: no replies, so the
/// slow-client rule never fires, and every command is work for the engine.
fn flood_frame() -> Message {
    let command = r#"{"send":{"data":{"k":"v"}}}"#;
    let lines: Vec<&str> = std::iter::repeat_n(command, 64 * 1024 / (command.len() + 1) - 1).collect();
    Message::Text(lines.join("\n").into())
}

#[test]
fn a_command_flood_keeps_memory_bounded_and_others_answered() {
    let rotor = Rotor::start("flood", json!({}), None);
    let addr = rotor.addr;
    std::thread::sleep(Duration::from_millis(300));
    let rss_before = rotor.rss_kib();

    let stop = Arc::new(AtomicBool::new(false));
    let frames = Arc::new(AtomicU64::new(0));
    let flooder = {
        let (stop, frames) = (stop.clone(), frames.clone());
        let rotor_url = rotor.url("/connection/websocket");
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            runtime.block_on(async move {
                let tcp = tokio::net::TcpStream::connect(addr).await.expect("connects");
                let (mut ws, _) = tokio_tungstenite::client_async(rotor_url, tcp).await.expect("WebSocket handshake");
                ws.send(connect_command("flooder", false)).await.unwrap();
                let _ = ws.next().await;
                let frame = flood_frame();
                let deadline = Instant::now() + FLOOD;
                // Bounded in count and time; a send that waits is the server pushing back.
                for _ in 0..1_000_000u32 {
                    if Instant::now() > deadline || stop.load(Ordering::Relaxed) {
                        break;
                    }
                    match tokio::time::timeout(Duration::from_millis(500), ws.send(frame.clone())).await {
                        Ok(Ok(())) => {
                            frames.fetch_add(1, Ordering::Relaxed);
                        }
                        Ok(Err(_)) => break,
                        Err(_) => {} // blocked: the server is not reading us; try again
                    }
                }
            });
        })
    };

    let mut rss_max = rss_before;
    let mut slowest_api = Duration::ZERO;
    let mut slowest_connect = Duration::ZERO;
    let started = Instant::now();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    while started.elapsed() < FLOOD {
        std::thread::sleep(Duration::from_millis(400));
        rss_max = rss_max.max(rotor.rss_kib());
        let t = Instant::now();
        let (status, body) = api(addr, "info", &json!({}), PROMPT * 2);
        slowest_api = slowest_api.max(t.elapsed());
        assert!(status.contains(" 200 "), "API during the flood: {status:?} {body}");
        let t = Instant::now();
        runtime.block_on(async {
            let mut other = ws_open(&rotor, "/connection/websocket", None).await;
            other.send(connect_command("bystander", false)).await.unwrap();
            let reply = tokio::time::timeout(PROMPT * 2, other.next()).await;
            assert!(matches!(reply, Ok(Some(Ok(Message::Text(_))))), "a bystander's connect: {reply:?}");
        });
        slowest_connect = slowest_connect.max(t.elapsed());
    }
    stop.store(true, Ordering::Relaxed);
    let _ = flooder.join();
    rss_max = rss_max.max(rotor.rss_kib());
    eprintln!(
        "flood: {} frames of 64 KiB sent in {:?}; RSS {rss_before} KiB -> max {rss_max} KiB; slowest API {slowest_api:?}, slowest connect {slowest_connect:?}",
        frames.load(Ordering::Relaxed),
        FLOOD
    );
    assert!(rss_max < rss_before + RSS_BOUND_KIB, "RSS grew from {rss_before} KiB to {rss_max} KiB");
    assert!(slowest_api < PROMPT, "the API took {slowest_api:?}");
    assert!(slowest_connect < PROMPT, "a connect took {slowest_connect:?}");

    let mut rotor = rotor;
    let exited = rotor.terminate(Duration::from_secs(10));
    assert!(exited.is_some(), "SIGTERM did not end the process within 10 s");
}
