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
