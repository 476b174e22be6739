//! Operating rotor (issue 14): what it logs, what `/metrics` shows after known traffic,
//! `/health` when the engine stops answering, and the graceful drain on SIGTERM. Each test
//! runs a real `rotor` process and talks to it over real sockets.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{api, exchange, publish_bulk, small_window_socket, token_with, Rotor};

fn post(path: &str, body: &str) -> String {
    format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len())
}

fn get(rotor: &Rotor, path: &str) -> (String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    let (text, _) = exchange(rotor.addr, request.as_bytes(), Duration::from_secs(5));
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (head.lines().next().unwrap_or("").to_owned(), body.to_owned())
}

/// Opens a uni HTTP stream for `user` subscribed to `channels` and reads its connect push.
fn uni_stream(rotor: &Rotor, user: &str, channels: &[&str]) -> TcpStream {
    let mut s = TcpStream::connect(rotor.addr).unwrap();
    let body = json!({"token": token_with(user, channels)}).to_string();
    s.write_all(post("/connection/uni_http_stream", &body).as_bytes()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&got).contains("\"connect\"") {
        let n = s.read(&mut buf).expect("the connect push");
        assert!(n > 0, "stream closed: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// The log's JSON lines (the log goes to a file, not a terminal: JSON).
fn log_lines(rotor: &Rotor) -> Vec<Value> {
    rotor.log().lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
}

fn find_log(rotor: &Rotor, within: Duration, ok: impl Fn(&Value) -> bool) -> Option<Value> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(line) = log_lines(rotor).into_iter().find(&ok) {
            return Some(line);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A figure of the Prometheus text: the value of the sample named exactly `series`.
fn figure(text: &str, series: &str) -> Option<f64> {
    text.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (name, value) = l.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

#[test]
fn logs_name_a_refused_token_and_a_slow_client() {
    let rotor = Rotor::start("ops-logs", json!({"log_level": "debug", "client_queue_max_size": 65536}), None);
    // Every line is JSON (stderr is a file here).
    assert!(
        find_log(&rotor, Duration::from_secs(5), |l| l["message"] == "rotor listening").is_some(),
        "{}",
        rotor.log()
    );

    // A bad token: refused, at info, with the code and reason.
    let (text, _) = exchange(
        rotor.addr,
        post("/connection/uni_http_stream", r#"{"token":"not.a.token"}"#).as_bytes(),
        Duration::from_secs(3),
    );
    assert!(text.contains("3500"), "{text}");
    let refused = find_log(&rotor, Duration::from_secs(5), |l| l["message"] == "connection refused")
        .unwrap_or_else(|| panic!("no refusal logged:\n{}", rotor.log()));
    assert_eq!(refused["level"], "INFO");
    assert_eq!(refused["code"], 3500);
    assert_eq!(refused["reason"], "invalid token");
    assert_eq!(refused["transport"], "uni_http_stream");

    // A client that stops reading: disconnected as slow (3008), at info, naming the user.
    let mut slow = small_window_socket(rotor.addr);
    let body = json!({"token": token_with("slowpoke", &["news"])}).to_string();
    slow.write_all(post("/connection/uni_http_stream", &body).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // One publication over the queue limit: the client is behind at once.
    publish_bulk(rotor.addr, "news", 1, 128 * 1024);
    let cut = find_log(&rotor, Duration::from_secs(10), |l| l["message"] == "client disconnected" && l["code"] == 3008)
        .unwrap_or_else(|| panic!("no slow disconnect logged:\n{}", rotor.log()));
    assert_eq!(cut["level"], "INFO");
    assert_eq!(cut["user"], "slowpoke");
    assert_eq!(cut["reason"], "slow");
    // The accepted connection was logged at debug.
    let accepted =
        find_log(&rotor, Duration::from_secs(1), |l| l["message"] == "client connected" && l["user"] == "slowpoke");
    assert_eq!(accepted.map(|l| l["level"].clone()), Some(json!("DEBUG")));
    drop(slow);
}

#[test]
fn log_level_and_log_file_are_honoured() {
    let file = std::env::temp_dir().join(format!("rotor-ops-logfile-{}.log", std::process::id()));
    let _ = std::fs::remove_file(&file);
    let rotor = Rotor::start("ops-logfile", json!({"log_level": "warn", "log_file": file.to_str().unwrap()}), None);
    let (text, _) = exchange(
        rotor.addr,
        post("/connection/uni_http_stream", r#"{"token":"not.a.token"}"#).as_bytes(),
        Duration::from_secs(3),
    );
    assert!(text.contains("3500"), "{text}");
    let (status, _) = get(&rotor, "/health");
    assert!(status.contains(" 200 "), "{status}");
    let written = std::fs::read_to_string(&file).unwrap_or_default();
    // warn: neither the start-up line nor the refusal (info) is there.
    assert!(!written.contains("rotor listening") && !written.contains("connection refused"), "{written}");
    drop(rotor);
    let _ = std::fs::remove_file(&file);

    // The new keys' defaults, and a level rotor does not know stops start-up naming the key.
    let out =
        std::process::Command::new(env!("CARGO_BIN_EXE_rotor")).arg("defaultconfig").output().expect("rotor runs");
    let defaults: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((defaults["log_level"].as_str(), defaults["prometheus"].as_bool()), (Some("info"), Some(false)));
    assert_eq!(defaults["shutdown_timeout"], json!("30s"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rotor"))
        .env("ROTOR_LOG_LEVEL", "loud")
        .args(["--port", "0"])
        .output()
        .expect("rotor runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("log_level") && stderr.contains("loud"), "{stderr}");
}

#[test]
fn metrics_show_known_traffic_under_centrifugo_names() {
    let rotor = Rotor::start("ops-metrics", json!({"prometheus": true}), None);
    let clients: Vec<TcpStream> = ["alice", "bob", "alice"].iter().map(|u| uni_stream(&rotor, u, &["news"])).collect();
    let (status, body) =
        api(rotor.addr, "publish", &json!({"channel": "news", "data": {"x": 1}}), Duration::from_secs(5));
    assert!(status.contains(" 200 "), "{status} {body}");
    let (status, _) = api(rotor.addr, "nosuchmethod", &json!({}), Duration::from_secs(5));
    assert!(status.contains(" 200 ") || status.contains(" 404 "), "{status}");

    let (status, text) = get(&rotor, "/metrics");
    assert!(status.contains(" 200 "), "{status}");
    let f = |series: &str| figure(&text, series).unwrap_or_else(|| panic!("no {series} in\n{text}"));
    assert_eq!(f("centrifugo_node_num_clients"), 3.0);
    assert_eq!(f("centrifugo_node_num_users"), 2.0);
    assert_eq!(f("centrifugo_node_num_channels"), 1.0);
    assert_eq!(f("centrifugo_node_num_subscriptions"), 3.0);
    assert_eq!(f("centrifugo_node_build{version=\"0.1.0\"}"), 1.0);
    assert_eq!(f("centrifugo_transport_connect_count{transport=\"uni_http_stream\"}"), 3.0);
    assert_eq!(f("centrifugo_node_messages_sent_count{type=\"publication\"}"), 1.0);
    assert_eq!(f("centrifugo_node_messages_received_count{type=\"publication\"}"), 1.0);
    assert_eq!(f("centrifugo_transport_messages_sent{transport=\"uni_http_stream\"}"), 3.0);
    assert_eq!(f("centrifugo_api_command_duration_seconds_count{protocol=\"http\",method=\"publish\"}"), 1.0);
    assert!(f("process_resident_memory_bytes") > 0.0);
    assert!(f("process_open_fds") > 0.0);
    assert!(text.contains("# TYPE centrifugo_client_command_duration_seconds summary"));
    // Every sample line is `name{labels} value` with a number (or NaN) for value.
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let (_, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("bad line {line:?}"));
        assert!(value == "NaN" || value.parse::<f64>().is_ok(), "bad value in {line:?}");
    }

    // One client goes away: the next publication reaches (and counts) two.
    let mut clients = clients;
    drop(clients.pop());
    let gone = rotor.wait_for(Duration::from_secs(5), |r| {
        figure(&get(r, "/metrics").1, "centrifugo_node_num_clients") == Some(2.0)
    });
    assert!(gone, "{}", get(&rotor, "/metrics").1);
    let (status, body) =
        api(rotor.addr, "publish", &json!({"channel": "news", "data": {"x": 2}}), Duration::from_secs(5));
    assert!(status.contains(" 200 "), "{status} {body}");
    let text = get(&rotor, "/metrics").1;
    assert_eq!(figure(&text, "centrifugo_transport_messages_sent{transport=\"uni_http_stream\"}"), Some(5.0), "{text}");

    // The rest leave: the gauge follows; a server disconnect is counted by code.
    drop(clients);
    let (status, body) = api(rotor.addr, "disconnect", &json!({"user": "bob"}), Duration::from_secs(5));
    assert!(status.contains(" 200 "), "{status} {body}");
    let settled = rotor.wait_for(Duration::from_secs(5), |r| {
        figure(&get(r, "/metrics").1, "centrifugo_node_num_clients") == Some(0.0)
    });
    assert!(settled, "{}", get(&rotor, "/metrics").1);

    // Off by default: no endpoint.
    let quiet = Rotor::start("ops-metrics-off", json!({}), None);
    let (status, _) = get(&quiet, "/metrics");
    assert!(status.contains(" 404 "), "{status}");
}

#[test]
fn health_turns_503_when_the_engine_stops_answering() {
    let rotor = Rotor::start_with_env("ops-health", json!({}), None, &[("ROTOR_TEST_ENGINE_STALL_MS", "1500")]);
    let (status, _) = get(&rotor, "/health");
    assert!(status.contains(" 200 "), "{status}");
    std::thread::sleep(Duration::from_millis(1700));
    let started = Instant::now();
    let (status, body) = get(&rotor, "/health");
    assert!(status.contains(" 503 "), "{status} {body}");
    assert!(body.contains("engine did not answer"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(3), "took {:?}", started.elapsed());
    assert!(find_log(&rotor, Duration::from_secs(2), |l| l["level"] == "ERROR").is_some(), "{}", rotor.log());
}

#[test]
fn sigterm_drains_clients_with_3001_and_exits_in_time() {
    let mut rotor = Rotor::start("ops-drain", json!({"shutdown_timeout": "3s"}), None);
    let mut clients: Vec<TcpStream> = (0..3).map(|i| uni_stream(&rotor, &format!("u{i}"), &["news"])).collect();
    let exited = rotor.terminate(Duration::from_secs(5)).expect("rotor exits after SIGTERM");
    assert!(exited < Duration::from_secs(3), "took {exited:?} (shutdown_timeout 3s)");
    for c in &mut clients {
        let (text, closed) = support::read_until_closed(c, Duration::from_secs(2));
        assert!(text.contains(r#""disconnect":{"code":3001,"reason":"shutdown"}"#), "{text}");
        assert!(closed);
    }
    // No longer accepting.
    assert!(TcpStream::connect_timeout(&rotor.addr, Duration::from_millis(500)).is_err());
    let done = log_lines(&rotor).into_iter().find(|l| l["message"] == "shutdown: every connection flushed and closed");
    assert_eq!(done.map(|l| l["connections"].clone()), Some(json!(3)), "{}", rotor.log());
}

/// A second SIGTERM (or Ctrl-C) during a drain that waits for a client who does not read:
/// rotor exits at once instead of waiting out `shutdown_timeout`.
#[test]
fn a_second_signal_ends_the_drain_at_once() {
    let mut rotor =
        Rotor::start("ops-drain-twice", json!({"shutdown_timeout": "30s", "client_queue_max_size": 16_777_216}), None);
    let mut stuck = small_window_socket(rotor.addr);
    let body = json!({"token": token_with("stuck", &["news"])}).to_string();
    stuck.write_all(post("/connection/uni_http_stream", &body).as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(300));
    // Several MiB the client does not read: its connection cannot flush.
    publish_bulk(rotor.addr, "news", 40, 128 * 1024);
    unsafe {
        libc::kill(rotor.pid() as libc::pid_t, libc::SIGTERM);
    }
    assert!(
        find_log(&rotor, Duration::from_secs(5), |l| l["message"] == "shutting down: no new connections").is_some(),
        "{}",
        rotor.log()
    );
    std::thread::sleep(Duration::from_millis(300));
    assert!(rotor.alive(), "the drain waits for the stuck client");
    let exited = rotor.terminate(Duration::from_secs(5)).expect("rotor exits after a second SIGTERM");
    assert!(exited < Duration::from_secs(2), "took {exited:?}");
    drop(stuck);
}
