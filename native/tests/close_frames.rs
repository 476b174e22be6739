//! Close frames are valid RFC 6455 control frames whatever the API asks for: the code is one a
//! peer may receive (reserved or out-of-range codes go out as 1011) and the reason fits the
//! 125-byte payload. tungstenite, as the client here, fails the connection on anything else.

mod support;

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use support::{api, connect_command, token, ws_open, Rotor, Ws};
use tokio_tungstenite::tungstenite::Message;

/// Reads until the close frame; its code and reason.
async fn close_frame(ws: &mut Ws) -> (u16, String) {
    let read = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return Ok((u16::from(frame.code), frame.reason.to_string())),
                Some(Ok(Message::Close(None))) => return Err("a close frame without a code".to_owned()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(format!("the connection failed: {e}")),
                None => return Err("the connection ended without a close frame".to_owned()),
            }
        }
    });
    read.await.expect("a close frame in time").unwrap_or_else(|e| panic!("{e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_disconnect_close_frames_are_valid_on_both_websocket_paths() {
    let rotor = Rotor::start("close-frames", json!({}), None);
    let long = "r".repeat(200);
    let cases = [
        (70000, long.as_str(), 1011),
        (1005, "reserved", 1011),
        (999, "below 1000", 1011),
        (1006, "abnormal", 1011),
        (4000, "fine", 4000),
    ];
    for (i, (code, reason, wire_code)) in cases.into_iter().enumerate() {
        for uni in [false, true] {
            let user = format!("user-{i}-{uni}");
            let mut ws = if uni {
                let mut ws = ws_open(&rotor, "/connection/uni_websocket", None).await;
                ws.send(Message::Text(json!({"token": token(&user)}).to_string().into())).await.unwrap();
                ws
            } else {
                let mut ws = ws_open(&rotor, "/connection/websocket", None).await;
                ws.send(connect_command(&user, false)).await.unwrap();
                ws
            };
            // The connect reply (or push) first: the session exists before the disconnect.
            let first = tokio::time::timeout(Duration::from_secs(5), ws.next()).await.expect("connected in time");
            assert!(matches!(first, Some(Ok(Message::Text(_)))), "{first:?}");
            let addr = rotor.addr;
            let body = json!({"user": user, "disconnect": {"code": code, "reason": reason}});
            let (status, answer) =
                tokio::task::spawn_blocking(move || api(addr, "disconnect", &body, Duration::from_secs(5)))
                    .await
                    .unwrap();
            assert!(status.contains(" 200 "), "{status} {answer}");
            if answer.contains("\"error\"") {
                continue; // the API may refuse such a code outright; then there is no frame to check
            }
            let (got_code, got_reason) = close_frame(&mut ws).await;
            assert_eq!(got_code, wire_code, "code {code} (uni: {uni})");
            assert!(got_reason.len() <= 123, "reason of {} bytes", got_reason.len());
            assert!(reason.starts_with(&got_reason), "{got_reason:?} is a prefix of {reason:?}");
        }
    }
}
