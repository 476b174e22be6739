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
    // Centrifugo's variables are a configuration too.
    let secret = ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "env-secret");
    let (ok, out, err) = run(rotor().current_dir(&dir).env(secret.0, secret.1).args(["gentoken", "-u", "x", "-q"]));
    assert!(ok, "{err}");
    let (ok, out, _) = run(rotor().current_dir(&dir).env(secret.0, secret.1).args(["checktoken", out.trim()]));
    assert!(ok && out.starts_with("valid token for user \"x\""), "{out}");
}

/// A rotor server started by a test, stopped (by its own handle) when dropped.
struct Server {
    child: std::process::Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).unwrap().port()
}

/// Starts rotor with `args` and only the environment given; waits until it answers.
fn serve(args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = rotor();
    cmd.env_clear().args(args).args(["--address", "127.0.0.1", "--port", &port.to_string()]);
    cmd.envs(env.iter().copied()).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped());
    let mut server = Server { child: cmd.spawn().expect("rotor starts"), port };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Ok(Some(status)) = server.child.try_wait() {
            let mut err = String::new();
            std::io::Read::read_to_string(server.child.stderr.as_mut().unwrap(), &mut err).unwrap();
            panic!("rotor exited ({status}): {err}");
        }
        assert!(std::time::Instant::now() < deadline, "rotor did not start");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server
}

/// Opens a uni HTTP stream with `token` asking for `channel`; what the server sent in a second.
fn uni_connect(port: u16, token: &str, channel: &str) -> String {
    use std::io::{Read, Write};
    let body = serde_json::json!({"token": token, "subs": {channel: {}}}).to_string();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let request = format!(
        "POST /connection/uni_http_stream HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(request.as_bytes()).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    while let Ok(n) = s.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hs256(secret: &str, user: &str) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    shared::auth::issue_hs256(secret, &serde_json::json!({"sub": user, "exp": now + 3600}))
}

/// The server's start-up messages (stderr) so far.
fn startup_log(server: &mut Server) -> String {
    let _ = server.child.kill();
    let _ = server.child.wait();
    let mut err = String::new();
    std::io::Read::read_to_string(server.child.stderr.as_mut().unwrap(), &mut err).unwrap();
    err
}

const V6_YAML: &str = "\
client:
  token:
    hmac_secret_key: v6-yaml-secret
http_api:
  key: v6-key
uni_http_stream:
  enabled: true
channel:
  namespaces:
    - name: chat
      allow_subscribe_for_client: true
";

#[test]
fn a_v6_yaml_file_and_centrifugo_variables_start_the_same_server() {
    let dir = temp_dir("v6serve");
    std::fs::write(dir.join("config.yaml"), V6_YAML).unwrap();
    let path = dir.join("config.yaml");
    let from_file = serve(&["-c", path.to_str().unwrap()], &[]);
    let from_env = serve(
        &[],
        &[
            ("CENTRIFUGO_CLIENT_TOKEN_HMAC_SECRET_KEY", "v6-yaml-secret"),
            ("CENTRIFUGO_HTTP_API_KEY", "v6-key"),
            ("CENTRIFUGO_UNI_HTTP_STREAM_ENABLED", "true"),
            ("CENTRIFUGO_CHANNEL_NAMESPACES", "chat"),
            ("CENTRIFUGO_CHANNEL_NAMESPACES_CHAT_ALLOW_SUBSCRIBE_FOR_CLIENT", "true"),
        ],
    );
    for mut server in [from_file, from_env] {
        let good = uni_connect(server.port, &hs256("v6-yaml-secret", "u1"), "chat:room");
        assert!(good.contains("200 OK") && good.contains("\"connect\""), "{good}");
        assert!(good.contains("\"subs\":{\"chat:room\""), "the namespace serves chat:room: {good}");
        let unknown = uni_connect(server.port, &hs256("v6-yaml-secret", "u1"), "other:room");
        assert!(unknown.contains("\"connect\"") && !unknown.contains("other:room"), "{unknown}");
        let forged = uni_connect(server.port, &hs256("another-secret", "u1"), "chat:room");
        assert!(!forged.contains("\"connect\""), "{forged}");
        let log = startup_log(&mut server);
        assert!(
            log.contains("YAML, Centrifugo v6 layout (nested keys)") || log.contains("CENTRIFUGO_* variables"),
            "{log}"
        );
        assert!(!log.contains("warning"), "{log}");
    }
}

#[test]
fn v6_config_mistakes_name_the_dotted_key_and_the_file() {
    let dir = temp_dir("v6errors");
    std::fs::write(
        dir.join("bad.yaml"),
        "channel:\n  namespaces:\n    - name: aa\n    - name: bb\n    - name: cc\n      history_size: 1\n      history_ttl: [5]\n",
    )
    .unwrap();
    let (ok, _, err) = run(rotor().current_dir(&dir).args(["-c", "bad.yaml"]));
    assert!(!ok);
    assert!(err.contains("config file bad.yaml: config key \"channel.namespaces[2].history_ttl\""), "{err}");

    std::fs::write(dir.join("mixed.json"), r#"{"client": {"insecure": true}, "api_key": "k"}"#).unwrap();
    let (ok, _, err) = run(rotor().current_dir(&dir).args(["-c", "mixed.json"]));
    assert!(!ok);
    assert!(err.contains("use one layout per file"), "{err}");

    std::fs::write(dir.join("broken.toml"), "[client\n").unwrap();
    let (ok, _, err) = run(rotor().current_dir(&dir).args(["-c", "broken.toml"]));
    assert!(!ok);
    assert!(err.contains("config file broken.toml: invalid TOML"), "{err}");

    // Options rotor does not implement: one warning each (seen through a token tool, which
    // loads the same way and exits).
    std::fs::write(
        dir.join("extra.toml"),
        "[client.token]\nhmac_secret_key = \"s\"\njwks_public_endpoint = \"https://x/jwks\"\n[grpc_api]\nenabled = true\n",
    )
    .unwrap();
    let (_, _, err) = run(rotor().current_dir(&dir).args(["checktoken", "-c", "extra.toml", "x.y.z"]));
    assert_eq!(
        err.matches("warning: config key \"client.token.jwks_public_endpoint\" is not implemented").count(),
        1,
        "{err}"
    );
    assert_eq!(err.matches("warning: config key \"grpc_api\" is not implemented").count(), 1, "{err}");
}

#[test]
fn defaultconfig_prints_either_layout_in_any_format() {
    let (ok, out, _) = run(rotor().arg("defaultconfig"));
    assert!(ok);
    let v5: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v5["token_hmac_secret_key"], "");
    assert_eq!(v5["ping_interval"], "25s");
    let (ok, out, _) = run(rotor().args(["defaultconfig", "--layout", "v6"]));
    assert!(ok);
    let v6: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v6["client"]["token"]["hmac_secret_key"], "");
    assert_eq!(v6["channel"]["namespaces"], serde_json::json!([]));
    assert!(v6.get("token_hmac_secret_key").is_none());
    let dir = temp_dir("defaults");
    for (format, file) in [("yaml", "d.yaml"), ("toml", "d.toml"), ("json", "d.json")] {
        let (ok, out, err) = run(rotor().args(["defaultconfig", "--layout", "v6", "--format", format]));
        assert!(ok, "{err}");
        std::fs::write(dir.join(file), out).unwrap();
        // What it prints loads back without a warning.
        let (_, _, err) = run(rotor().current_dir(&dir).args(["checktoken", "-c", file, "x.y.z"]));
        assert!(!err.contains("warning"), "{format}: {err}");
    }
    let (ok, _, err) = run(rotor().args(["defaultconfig", "--layout", "v7"]));
    assert!(!ok && err.contains("v7"), "{err}");
}

#[test]
fn configdoc_lists_every_key_with_both_names() {
    let (ok, out, _) = run(rotor().arg("configdoc"));
    assert!(ok);
    assert!(out.contains("client.token.hmac_secret_key\n    v5: token_hmac_secret_key    default: \"\""), "{out}");
    assert!(out.contains("channel.without_namespace.presence | channel.namespaces[].presence"), "{out}");
    assert!(out.contains("(no v6 name)\n    v5: global_presence_ttl"), "{out}");
    for key in shared::config::Config::known_keys() {
        assert!(out.contains(&format!("v5: {key} ")), "{key} missing");
    }
    let (_, rest) = out.split_once("does not implement").unwrap();
    assert!(rest.contains("client.token.jwks_public_endpoint\n") && rest.contains("grpc_api\n"), "{rest}");
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
