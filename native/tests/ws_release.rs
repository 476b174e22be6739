//! Bidirectional WebSocket connections free everything when they end, however they end: the
//! server's fds come back to the baseline, no socket stays in CLOSE-WAIT, and a client's close
//! frame is answered with a close frame carrying its code (RFC 6455 §5.5.1).

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::{connect_command, ws_open, Rotor, Ws};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::Message;

/// Open/close cycles of each kind (clean close and abort); `ROTOR_TEST_CYCLES` for more.
fn cycle_count() -> usize {
    std::env::var("ROTOR_TEST_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}
/// fds the server may still hold after the cycles (timers, runtime, allocator noise).
const FD_MARGIN: usize = 4;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Json,
    Protobuf,
    /// `/connection/uni_websocket`, served without hyper.
    Uni,
}

async fn connected(rotor: &Rotor, kind: Kind) -> Ws {
    let mut ws = match kind {
        Kind::Json => ws_open(rotor, "/connection/websocket", None).await,
        Kind::Protobuf => ws_open(rotor, "/connection/websocket?format=protobuf", None).await,
        Kind::Uni => ws_open(rotor, "/connection/uni_websocket", None).await,
    };
    let connect = match kind {
        Kind::Uni => Message::Text(json!({"token": support::token("alice")}).to_string().into()),
        _ => connect_command("alice", matches!(kind, Kind::Protobuf)),
    };
    ws.send(connect).await.unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("a connect reply in time");
    assert!(matches!(reply, Some(Ok(Message::Text(_) | Message::Binary(_)))), "connect reply: {reply:?}");
    ws
}

/// Closes with a close frame and reads until the server hangs up.
async fn close_cleanly(mut ws: Ws) -> Option<CloseFrame> {
    ws.send(Message::Close(Some(CloseFrame { code: CloseCode::Library(4001), reason: "bye".into() }))).await.unwrap();
    let mut answer = None;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Message::Close(frame)) => answer = frame,
                Ok(_) => {}
                Err(_) => break,
            }
        }
    })
    .await;
    answer
}

/// `n` connect/close cycles, ten at a time, of the given kinds in turn; `clean`: with a
/// close frame, else the client just goes away (FIN, no close frame).
async fn cycles(rotor: &Rotor, kinds: &[Kind], n: usize, clean: bool) {
    for batch in (0..n).collect::<Vec<_>>().chunks(10) {
        futures_util::future::join_all(batch.iter().map(|i| async move {
            let ws = connected(rotor, kinds[i % kinds.len()]).await;
            if clean {
                close_cleanly(ws).await;
            }
        }))
        .await;
    }
}

/// Cycles of `kinds` leave the server's fds at the baseline and no socket in CLOSE-WAIT.
async fn release_everything(name: &str, kinds: &[Kind]) {
    let rotor = Rotor::start(name, json!({}), None);
    // Warm up what is allocated once (runtime threads, timer wheel, hub maps).
    cycles(&rotor, kinds, 10, true).await;
    rotor.wait_for(Duration::from_secs(5), |r| r.close_wait() == 0);
    std::thread::sleep(Duration::from_millis(300));
    let (fds_before, rss_before) = (rotor.fds(), rotor.rss_kib());

    let n = cycle_count();
    cycles(&rotor, kinds, n, true).await;
    cycles(&rotor, kinds, n, false).await;

    let released =
        rotor.wait_for(Duration::from_secs(10), |r| r.fds() <= fds_before + FD_MARGIN && r.close_wait() == 0);
    let (fds_after, rss_after, close_wait) = (rotor.fds(), rotor.rss_kib(), rotor.close_wait());
    eprintln!(
        "{name}: {} WebSocket cycles ({n} clean, {n} aborted): fds {fds_before} -> {fds_after}, \
         RSS {rss_before} KiB -> {rss_after} KiB, CLOSE-WAIT {close_wait}",
        2 * n
    );
    assert!(released, "fds {fds_before} -> {fds_after}, CLOSE-WAIT sockets: {close_wait}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_cycles_leave_no_fds_and_no_close_wait() {
    release_everything("ws-release", &[Kind::Json, Kind::Protobuf]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uni_websocket_cycles_leave_no_fds_and_no_close_wait() {
    release_everything("uni-ws-release", &[Kind::Uni]).await;
}

#[tokio::test]
async fn a_client_close_frame_gets_a_close_frame_with_its_code() {
    let rotor = Rotor::start("ws-close-echo", json!({}), None);
    for kind in [Kind::Json, Kind::Protobuf, Kind::Uni] {
        let answer = close_cleanly(connected(&rotor, kind).await).await;
        let frame = answer.unwrap_or_else(|| panic!("{kind:?}: the server answers the close frame"));
        assert_eq!(u16::from(frame.code), 4001, "{kind:?}");
    }
    // Before any command, too.
    for path in ["/connection/websocket", "/connection/uni_websocket"] {
        let answer = close_cleanly(ws_open(&rotor, path, None).await).await;
        assert_eq!(answer.map(|f| u16::from(f.code)), Some(4001), "{path}");
    }
    assert!(rotor.wait_for(Duration::from_secs(5), |r| r.close_wait() == 0), "CLOSE-WAIT: {}", rotor.close_wait());
}
