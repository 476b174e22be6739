//! Connection and subscription tokens: any token string, and tokens with a valid HMAC
//! signature over arbitrary (or arbitrary but JSON-shaped) headers and claims, so the claims
//! reader runs past the signature check. Verification never panics.
#![no_main]

use std::sync::OnceLock;

use arbitrary::Arbitrary;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use serde_json::{Map, Number, Value};
use shared::auth::{assemble_token, issue_hs256, signing_input, KeySet, TokenVerifier};

const SECRET: &str = "fuzz-secret";
const RSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAuQcS+jPo0iXGqE8aOZgo
BzTmV3Y+sDybA/FnqfEqSFEU+5oL0odSxYA374/bBurN/cKAYhLWg32XTWx8BTUW
QgEkuJBmPWWqg8jeDr/VFHPGC6OhE5dMgQhQDuT/14l9QWyx+PA3MAxj80SVRHtH
ceNpcP6pWqHak9VeBhl4jlm1vt5VwW1mTt4FJ/uMVaBemd67CWigFDDsknpFwTDQ
23YmziYQPIqGT6Gn98JqIqRw+KM9wlu8b9IwrDGVTrI402Adw1Kc/jkcCsHBx98a
Pxgq9UNFYfsanjAEY/l0WCO9eBwkyEYsoNvLK8bTN1TpOZ0QRfMXq03Vt6K3Jt6W
2wIDAQAB
-----END PUBLIC KEY-----";
const ECDSA_PUBLIC: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEHe7lva2bTM75B5xY833coZYhkFTf
0nsZmW3XsGNQfO8FRihEcgIJQL0KdgQZTckGLmZL97NLvis1YlexDVq31w==
-----END PUBLIC KEY-----";

/// Plain; with aud, iss and a dotted user id claim; HMAC only.
fn verifiers() -> &'static [TokenVerifier; 3] {
    static V: OnceLock<[TokenVerifier; 3]> = OnceLock::new();
    V.get_or_init(|| {
        let all = KeySet::new(SECRET, RSA_PUBLIC, ECDSA_PUBLIC).expect("test keys parse");
        let hmac = KeySet::new(SECRET, "", "").expect("secret");
        [
            TokenVerifier::new(all.clone(), "", "", ""),
            TokenVerifier::new(all, "rotor", "issuer", "user.id"),
            TokenVerifier::new(hmac, "", "", "uid"),
        ]
    })
}

/// A JSON value (bounded by the input's length).
#[derive(Arbitrary, Debug)]
enum Json {
    Null,
    Bool(bool),
    Int(i64),
    Uint(u64),
    Float(f64),
    Str(String),
    Array(Vec<Json>),
    Object(Vec<(Key, Json)>),
}

/// Claim names the verifier reads, and others.
#[derive(Arbitrary, Debug)]
enum Key {
    Sub,
    Exp,
    Nbf,
    Aud,
    Iss,
    ExpireAt,
    Info,
    B64info,
    Data,
    B64data,
    Channels,
    Subs,
    Meta,
    Channel,
    Client,
    Override,
    Presence,
    JoinLeave,
    Value,
    User,
    Id,
    Uid,
    Other(String),
}

impl Key {
    fn name(&self) -> &str {
        match self {
            Key::Sub => "sub",
            Key::Exp => "exp",
            Key::Nbf => "nbf",
            Key::Aud => "aud",
            Key::Iss => "iss",
            Key::ExpireAt => "expire_at",
            Key::Info => "info",
            Key::B64info => "b64info",
            Key::Data => "data",
            Key::B64data => "b64data",
            Key::Channels => "channels",
            Key::Subs => "subs",
            Key::Meta => "meta",
            Key::Channel => "channel",
            Key::Client => "client",
            Key::Override => "override",
            Key::Presence => "presence",
            Key::JoinLeave => "join_leave",
            Key::Value => "value",
            Key::User => "user",
            Key::Id => "id",
            Key::Uid => "uid",
            Key::Other(s) => s,
        }
    }
}

impl Json {
    fn value(&self) -> Value {
        match self {
            Json::Null => Value::Null,
            Json::Bool(b) => Value::Bool(*b),
            Json::Int(n) => Value::from(*n),
            Json::Uint(n) => Value::from(*n),
            Json::Float(f) => Number::from_f64(*f).map_or(Value::Null, Value::Number),
            Json::Str(s) => Value::String(s.clone()),
            Json::Array(items) => Value::Array(items.iter().map(Json::value).collect()),
            Json::Object(entries) => object(entries),
        }
    }
}

#[derive(Arbitrary, Debug)]
enum Input {
    /// Any token string.
    Token(String),
    /// A valid HS256/384/512 signature over an arbitrary header and claims.
    Signed { alg: u8, header: Vec<u8>, claims: Vec<u8> },
    /// A valid HS256 token whose claims are a JSON object of known and unknown claims.
    Claims(Vec<(Key, Json)>),
    /// A token with a forged header (any JSON object) and an arbitrary signature.
    Forged { header: Vec<(Key, Json)>, alg: String, claims: Vec<(Key, Json)>, signature: Vec<u8> },
}

fn hmac_sign(alg: u8, input: &str) -> (&'static str, Vec<u8>) {
    fn sign<M: Mac + hmac::digest::KeyInit>(input: &str) -> Vec<u8> {
        let mut mac = <M as Mac>::new_from_slice(SECRET.as_bytes()).expect("any key length");
        mac.update(input.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }
    match alg % 3 {
        0 => ("HS256", sign::<Hmac<sha2::Sha256>>(input)),
        1 => ("HS384", sign::<Hmac<sha2::Sha384>>(input)),
        _ => ("HS512", sign::<Hmac<sha2::Sha512>>(input)),
    }
}

fn object(entries: &[(Key, Json)]) -> Value {
    Value::Object(entries.iter().map(|(k, v)| (k.name().to_owned(), v.value())).collect::<Map<_, _>>())
}

fn verify(token: &str, now_ms: u64) {
    for verifier in verifiers() {
        let _ = verifier.verify_connect(token, now_ms);
        if let Ok(claims) = verifier.verify_subscribe(token, now_ms) {
            assert!(!claims.channel.is_empty());
        }
    }
}

fuzz_target!(|input: (u64, Input)| {
    let (now_ms, input) = input;
    match input {
        Input::Token(token) => verify(&token, now_ms),
        Input::Signed { alg, header, claims } => {
            let (name, _) = hmac_sign(alg, "");
            // Half the time a plain header, so the claims get past header parsing.
            let header = if header.first().is_some_and(|b| b & 1 == 0) {
                format!(r#"{{"alg":"{name}","typ":"JWT"}}"#).into_bytes()
            } else {
                header
            };
            let input = format!("{}.{}", URL_SAFE_NO_PAD.encode(&header), URL_SAFE_NO_PAD.encode(&claims));
            let (_, signature) = hmac_sign(alg, &input);
            verify(&assemble_token(&input, &signature), now_ms);
        }
        Input::Claims(entries) => {
            let claims = object(&entries);
            let token = issue_hs256(SECRET, &claims);
            verify(&token, now_ms);
            // The plain verifier reads `sub` as the user.
            if let (Ok(c), Some(Value::String(sub))) =
                (verifiers()[0].verify_connect(&token, now_ms), claims.get("sub"))
            {
                assert_eq!(&c.user, sub);
            }
        }
        Input::Forged { header, alg, claims, signature } => {
            let mut header = object(&header);
            if let Value::Object(h) = &mut header {
                h.insert("alg".into(), Value::String(alg));
            }
            let token = assemble_token(&signing_input(&header, &object(&claims)), &signature);
            verify(&token, now_ms);
        }
    }
});
