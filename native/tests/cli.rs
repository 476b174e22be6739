//! The command-line tools, run as a user would: genconfig, gentoken, checktoken, config errors.

use std::process::Command;

fn rotor() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rotor"))
}

fn temp_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("rotor-cli-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().expect("rotor runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn genconfig_gentoken_checktoken_round_trip() {
    let dir = temp_dir("roundtrip");
    let (ok, out, err) = run(rotor().current_dir(&dir).arg("genconfig"));
    assert!(ok, "{err}");
    assert!(out.contains("config.json"));
    let config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap();
    let secret = config["token_hmac_secret_key"].as_str().unwrap();
    let key = config["api_key"].as_str().unwrap();
    assert!(secret.len() >= 32, "secret {secret:?}");
    assert!(!key.is_empty());

    // Refuses to overwrite.
    let (ok, _, err) = run(rotor().current_dir(&dir).arg("genconfig"));
    assert!(!ok);
    assert!(err.contains("already exists"), "{err}");

    // gentoken reads config.json from the working directory, like the seed walkthrough.
    let (ok, out, err) = run(rotor().current_dir(&dir).args(["gentoken", "-u", "user12"]));
    assert!(ok, "{err}");
    assert!(out.starts_with("HMAC SHA-256 JWT for user \"user12\" with expiration TTL 168h0m0s:\n"), "{out}");
    let token = out.lines().nth(1).unwrap().trim().to_owned();
    assert_eq!(token.split('.').count(), 3);

    let (ok, out, _) = run(rotor().current_dir(&dir).args(["gentoken", "-u", "user12", "--ttl", "3600", "-q"]));
    assert!(ok);
    assert_eq!(out.trim().split('.').count(), 3);

    let (ok, out, _) = run(rotor().current_dir(&dir).args(["checktoken", &token]));
    assert!(ok, "{out}");
    assert!(out.starts_with("valid token for user \"user12\""), "{out}");
    assert!(out.contains("payload: {"), "{out}");

    // A token signed with another secret is refused.
    let other = temp_dir("other");
    run(rotor().current_dir(&other).arg("genconfig"));
    let (ok, out, _) = run(rotor().current_dir(&other).args(["checktoken", &token]));
    assert!(!ok);
    assert!(out.contains("invalid token"), "{out}");
}

#[test]
fn config_errors_name_the_key() {
    let dir = temp_dir("errors");
    std::fs::write(dir.join("bad.json"), r#"{"port": "abc"}"#).unwrap();
    let (ok, _, err) = run(rotor().current_dir(&dir).args(["-c", "bad.json", "--port", "0"]));
    assert!(!ok);
    assert!(err.contains("port"), "{err}");

    std::fs::write(dir.join("broken.json"), r#"{"port": "#).unwrap();
    let (ok, _, err) = run(rotor().current_dir(&dir).args(["-c", "broken.json"]));
    assert!(!ok);
    assert!(err.contains("broken.json"), "{err}");

    let (ok, _, err) = run(rotor().current_dir(&dir).args(["-c", "missing.json"]));
    assert!(!ok);
    assert!(err.contains("missing.json"), "{err}");
}

#[test]
fn token_tools_without_config_explain_what_to_do() {
    let dir = temp_dir("noconfig");
    let (ok, _, err) = run(rotor().current_dir(&dir).args(["gentoken", "-u", "x"]));
    assert!(!ok);
    assert!(err.contains("genconfig"), "{err}");
}

/// One plain HTTP/1.1 request over loopback; the status code and the body.
fn http(addr: &str, method: &str, path: &str, headers: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    (status, body)
}

#[test]
fn no_config_prints_the_admin_url_and_password_which_log_in() {
    use std::io::{BufRead, BufReader};
    let mut child = rotor()
        .args(["--port", "0"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("rotor starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = lines.by_ref().map_while(Result::ok).find(|l| l.starts_with("Admin web UI: "));
    let line = line.expect("the banner names the admin web UI");
    // "Admin web UI: http://127.0.0.1:<port>/  (password: <password>)"
    let url = line.split_whitespace().nth(3).unwrap().to_owned();
    let password = line.rsplit_once("password: ").unwrap().1.trim_end_matches(')').to_owned();
    let addr = url.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let (status, page) = http(&addr, "GET", "/", "", "");
    assert_eq!(status, 200);
    assert!(page.contains("<title>rotor admin</title>"));
    let form = "Content-Type: application/x-www-form-urlencoded\r\n";
    let (status, _) = http(&addr, "POST", "/admin/auth", form, "password=wrong");
    assert_eq!(status, 401);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (status, body) = http(&addr, "POST", "/admin/auth", form, &format!("password={password}"));
    assert_eq!(status, 200, "{body}");
    let token: serde_json::Value = serde_json::from_str(&body).unwrap();
    let auth = format!("Authorization: token {}\r\n", token["token"].as_str().unwrap());
    let (status, body) = http(&addr, "POST", "/admin/api", &auth, r#"{"method":"info","params":{}}"#);
    assert_eq!(status, 200);
    assert!(body.contains("\"nodes\""), "{body}");
    let _ = child.kill();
    let _ = child.wait();
}
