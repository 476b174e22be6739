//! Every step a client controls has a deadline: the request head (however it trickles in), the
//! body, an idle keep-alive connection, and the writes to a client that stopped reading. The
//! server runs with the timeouts shortened to about a second (support::FAST_TIMEOUTS).

mod support;

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use support::{read_until_closed, Rotor, API_KEY, FAST_TIMEOUTS};

/// How long past a 1 s timeout the server may take to act on it (a busy 2-core machine).
const WITHIN: Duration = Duration::from_secs(4);

fn open(rotor: &Rotor, sent: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(rotor.addr).unwrap();
    s.write_all(sent).unwrap();
    s
}

#[test]
fn an_unfinished_head_gets_408_and_the_connection_closes() {
    let rotor = Rotor::start("head-timeout", json!({}), Some(FAST_TIMEOUTS));
    let started = Instant::now();
    let mut s = open(&rotor, b"GET /health HTTP/1.1\r\nHost: x\r\n");
    let (answer, closed) = read_until_closed(&mut s, WITHIN);
    assert!(closed, "still open after {:?}; read {answer:?}", started.elapsed());
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request head did not arrive"), "{answer}");
}

#[test]
fn a_head_trickled_one_byte_at_a_time_still_has_one_deadline() {
    let rotor = Rotor::start("head-trickle", json!({}), Some(FAST_TIMEOUTS));
    let mut s = TcpStream::connect(rotor.addr).unwrap();
    let started = Instant::now();
    let head = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n\r\n";
    let mut cut_off = false;
    // One byte every 200 ms: each read is quick, the head as a whole is not.
    for b in head {
        if s.write_all(std::slice::from_ref(b)).is_err() || started.elapsed() > WITHIN {
            cut_off = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
        let mut probe = [0u8; 256];
        s.set_nonblocking(true).unwrap();
        let read = std::io::Read::read(&mut s, &mut probe);
        s.set_nonblocking(false).unwrap();
        if read.is_ok() {
            cut_off = true; // an answer (the 408) or EOF
            break;
        }
    }
    assert!(cut_off && started.elapsed() < WITHIN, "a trickled head held the connection for {:?}", started.elapsed());
}

#[test]
fn a_connection_that_sends_nothing_is_closed() {
    let rotor = Rotor::start("head-silent", json!({}), Some(FAST_TIMEOUTS));
    let mut s = open(&rotor, b"");
    let (answer, closed) = read_until_closed(&mut s, WITHIN);
    assert!(closed, "a silent connection stays open");
    assert_eq!(answer, "", "nothing is said to a connection that said nothing");
}

#[test]
fn a_body_that_never_arrives_gets_408_on_every_path() {
    let rotor = Rotor::start("body-timeout", json!({}), Some(FAST_TIMEOUTS));
    let heads = [
        // hyper: the API, the emulation endpoint, a bidirectional stream
        format!("POST /api/info HTTP/1.1\r\nHost: x\r\nX-API-Key: {API_KEY}\r\nContent-Length: 100\r\n\r\n{{\"a\":"),
        "POST /emulation HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":".to_owned(),
        "POST /connection/http_stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":".to_owned(),
        // the hand-served unidirectional path
        "POST /connection/uni_http_stream HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\":".to_owned(),
    ];
    for head in heads {
        let started = Instant::now();
        let mut s = open(&rotor, head.as_bytes());
        let (answer, closed) = read_until_closed(&mut s, WITHIN);
        let what = head.lines().next().unwrap();
        assert!(closed, "{what}: still open after {:?}; read {answer:?}", started.elapsed());
        assert!(answer.starts_with("HTTP/1.1 408"), "{what}: {answer}");
        assert!(answer.contains("request body did not arrive"), "{what}: {answer}");
    }
}

#[test]
fn an_idle_keep_alive_connection_is_closed() {
    let rotor = Rotor::start("keep-alive-timeout", json!({}), Some(FAST_TIMEOUTS));
    let mut s = open(&rotor, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    let started = Instant::now();
    let (answer, closed) = read_until_closed(&mut s, WITHIN);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(closed, "an idle keep-alive connection is still open after {:?}", started.elapsed());
    // A second request in time is still served on the same connection.
    let mut s = open(&rotor, b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::sleep(Duration::from_millis(300));
    s.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let (answer, _) = read_until_closed(&mut s, WITHIN);
    assert_eq!(answer.matches("HTTP/1.1 200").count(), 2, "{answer}");
}
