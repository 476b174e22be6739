//! JWT connection and subscription tokens (protocol reference §4).
//!
//! Signatures are checked with `jwt-compact`; the claims are then read a second time into our own
//! types so `info`, `data` and `meta` keep their raw JSON bytes. Time is an argument (`now_ms`),
//! never read from a clock, and no token input can make this module panic.
//!
//! Algorithm confusion is refused by construction: the header `alg` picks the key *type*
//! (HS* → HMAC secret, RS* → RSA key, ES256 → P-256 key), and a token whose algorithm has no
//! configured key is invalid. An RSA public key is never used as an HMAC secret.

use std::collections::BTreeMap;
use std::fmt;

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jwt_compact::alg::{Es256, Hs256, Hs256Key, Hs384, Hs384Key, Hs512, Hs512Key, Rsa};
use jwt_compact::{Algorithm, AlgorithmExt, AlgorithmSignature, Empty, ParseError, UntrustedToken, ValidationError};
use p256::pkcs8::DecodePublicKey as _;
use rsa::pkcs1::DecodeRsaPublicKey as _;
use rsa::RsaPublicKey;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// Verification keys. Each kind is optional; a token can only use an algorithm whose key is set.
#[derive(Clone, Default)]
pub struct KeySet {
    hmac: Option<HmacKeys>,
    rsa: Option<RsaPublicKey>,
    ecdsa: Option<p256::ecdsa::VerifyingKey>,
}

#[derive(Clone)]
struct HmacKeys {
    hs256: Hs256Key,
    hs384: Hs384Key,
    hs512: Hs512Key,
}

impl KeySet {
    /// Builds a key set from configuration strings; `""` leaves that key unconfigured.
    /// `rsa_public_pem` may be SPKI (`PUBLIC KEY`) or PKCS#1 (`RSA PUBLIC KEY`);
    /// `ecdsa_public_pem` must be an SPKI P-256 key.
    pub fn new(hmac_secret: &str, rsa_public_pem: &str, ecdsa_public_pem: &str) -> Result<KeySet, AuthConfigError> {
        let hmac = (!hmac_secret.is_empty()).then(|| {
            let secret = hmac_secret.as_bytes();
            HmacKeys { hs256: Hs256Key::new(secret), hs384: Hs384Key::new(secret), hs512: Hs512Key::new(secret) }
        });
        let rsa = match rsa_public_pem.trim() {
            "" => None,
            pem => Some(
                RsaPublicKey::from_public_key_pem(pem)
                    .or_else(|_| RsaPublicKey::from_pkcs1_pem(pem))
                    .map_err(|e| AuthConfigError::RsaPublicKey(e.to_string()))?,
            ),
        };
        let ecdsa = match ecdsa_public_pem.trim() {
            "" => None,
            pem => Some(
                p256::ecdsa::VerifyingKey::from_public_key_pem(pem)
                    .map_err(|e| AuthConfigError::EcdsaPublicKey(e.to_string()))?,
            ),
        };
        Ok(KeySet { hmac, rsa, ecdsa })
    }

    /// True when no key at all is configured: every token will be refused.
    pub fn is_empty(&self) -> bool {
        self.hmac.is_none() && self.rsa.is_none() && self.ecdsa.is_none()
    }
}

impl fmt::Debug for KeySet {
    // Never print the HMAC secret.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeySet")
            .field("hmac", &self.hmac.is_some())
            .field("rsa", &self.rsa.is_some())
            .field("ecdsa", &self.ecdsa.is_some())
            .finish()
    }
}

/// A key in the configuration could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthConfigError {
    RsaPublicKey(String),
    EcdsaPublicKey(String),
}

impl fmt::Display for AuthConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::RsaPublicKey(e) => write!(
                f,
                "rsa_public_key: not a PEM RSA public key (\"PUBLIC KEY\" or \"RSA PUBLIC KEY\" block expected): {e}"
            ),
            Self::EcdsaPublicKey(e) => write!(
                f,
                "ecdsa_public_key: not a PEM P-256 public key (\"PUBLIC KEY\" block on curve P-256 expected): {e}"
            ),
        }
    }
}

impl std::error::Error for AuthConfigError {}

/// Why a token was refused. `Expired` lets a client fetch a new token (error 109);
/// `Invalid` is final (disconnect 3500 / error 103).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    Expired,
    Invalid(String),
}

impl fmt::Display for TokenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Expired => f.write_str("token expired"),
            Self::Invalid(reason) => write!(f, "invalid token: {reason}"),
        }
    }
}

impl std::error::Error for TokenError {}

fn invalid(reason: impl Into<String>) -> TokenError {
    TokenError::Invalid(reason.into())
}

/// Per-channel options overridden by a token (`override` claim). `None` keeps the namespace value.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeOverrides {
    pub presence: Option<bool>,
    pub join_leave: Option<bool>,
    pub force_push_join_leave: Option<bool>,
    pub force_recovery: Option<bool>,
    pub force_positioning: Option<bool>,
}

/// One entry of a connection token's `subs` claim.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubClaimOptions {
    /// Channel info: raw JSON of `info`, or the decoded bytes of `b64info`.
    pub info: Option<Vec<u8>>,
    /// Raw JSON of `data`, or the decoded bytes of `b64data`.
    pub data: Option<Vec<u8>>,
    pub overrides: SubscribeOverrides,
}

/// A verified connection token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectClaims {
    /// `sub` (or the configured user id claim); `""` is anonymous.
    pub user: String,
    /// When the connection expires; `None` never. From `expire_at` if present, else `exp`.
    pub expires_at_ms: Option<u64>,
    /// Raw JSON of `info`, or the decoded bytes of `b64info`.
    pub info: Option<Vec<u8>>,
    /// Server-side subscriptions. Ignored by Centrifugo when `subs` is non-empty.
    pub channels: Vec<String>,
    pub subs: BTreeMap<String, SubClaimOptions>,
    /// Raw JSON of `meta`: server-side only, never sent to clients.
    pub meta: Option<Vec<u8>>,
}

/// A verified subscription token.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubscribeClaims {
    pub user: String,
    pub channel: String,
    /// Legacy `client` claim; `""` when absent, otherwise it must equal the client id.
    pub client: String,
    pub expires_at_ms: Option<u64>,
    pub info: Option<Vec<u8>>,
    pub data: Option<Vec<u8>>,
    pub overrides: SubscribeOverrides,
}

/// Checks tokens against a key set and the optional `aud`/`iss` expectations.
#[derive(Debug, Clone)]
pub struct TokenVerifier {
    keys: KeySet,
    audience: String,
    issuer: String,
    user_id_claim: String,
}

impl TokenVerifier {
    /// `audience`/`issuer` of `""` disable those checks; `user_id_claim` of `""` reads `sub`.
    pub fn new(keys: KeySet, audience: &str, issuer: &str, user_id_claim: &str) -> Self {
        TokenVerifier {
            keys,
            audience: audience.to_owned(),
            issuer: issuer.to_owned(),
            user_id_claim: user_id_claim.to_owned(),
        }
    }

    pub fn keys(&self) -> &KeySet {
        &self.keys
    }

    pub fn verify_connect(&self, token: &str, now_ms: u64) -> Result<ConnectClaims, TokenError> {
        let (claims, payload) = self.verify_common(token)?;
        if claims.channel.as_deref().is_some_and(|c| !c.is_empty()) {
            return Err(invalid("connection token must not have channel claim (only subscription tokens carry one)"));
        }
        check_time(&claims, now_ms)?;
        let user = self.user(&claims, &payload);
        let expires_at_ms = expires_at_ms(&claims);
        let subs = claims
            .subs
            .unwrap_or_default()
            .into_iter()
            .map(|(channel, opts)| {
                let opts = opts.unwrap_or_default();
                let info = pick_bytes(opts.info, opts.b64info, &format!("subs[{channel:?}].b64info"))?;
                let data = pick_bytes(opts.data, opts.b64data, &format!("subs[{channel:?}].b64data"))?;
                let overrides = opts.override_.map(OverrideClaim::into_overrides).unwrap_or_default();
                Ok((channel, SubClaimOptions { info, data, overrides }))
            })
            .collect::<Result<_, TokenError>>()?;
        Ok(ConnectClaims {
            user,
            expires_at_ms,
            info: pick_bytes(claims.info, claims.b64info, "b64info")?,
            channels: claims.channels.unwrap_or_default(),
            subs,
            meta: claims.meta.map(|m| m.get().as_bytes().to_vec()),
        })
    }

    pub fn verify_subscribe(&self, token: &str, now_ms: u64) -> Result<SubscribeClaims, TokenError> {
        let (claims, payload) = self.verify_common(token)?;
        check_time(&claims, now_ms)?;
        let channel = match claims.channel.as_deref() {
            Some(c) if !c.is_empty() => c.to_owned(),
            _ => return Err(invalid("subscription token needs channel claim")),
        };
        let user = self.user(&claims, &payload);
        let expires_at_ms = expires_at_ms(&claims);
        Ok(SubscribeClaims {
            user,
            channel,
            client: claims.client.unwrap_or_default(),
            expires_at_ms,
            info: pick_bytes(claims.info, claims.b64info, "b64info")?,
            data: pick_bytes(claims.data, claims.b64data, "b64data")?,
            overrides: claims.override_.map(OverrideClaim::into_overrides).unwrap_or_default(),
        })
    }

    /// Signature, then `aud` and `iss`. Returns the claims and the decoded payload JSON.
    fn verify_common(&self, token: &str) -> Result<(TokenClaims, Vec<u8>), TokenError> {
        let untrusted = UntrustedToken::new(token).map_err(parse_error)?;
        self.check_signature(&untrusted)?;
        // jwt-compact decoded this segment already but keeps it private; decode it again.
        let payload_b64 = token.split('.').nth(1).unwrap_or_default();
        let payload = URL_SAFE_NO_PAD
            .decode(payload_b64)
            .map_err(|e| invalid(format!("malformed token: payload is not base64url: {e}")))?;
        let claims: TokenClaims =
            serde_json::from_slice(&payload).map_err(|e| invalid(format!("malformed claims: {e}")))?;
        if !self.audience.is_empty() {
            let auds = audiences(claims.aud.as_ref())?;
            if !auds.iter().any(|a| *a == self.audience) {
                return Err(invalid(format!("audience mismatch: aud does not include {:?}", self.audience)));
            }
        }
        if !self.issuer.is_empty() && claims.iss.as_deref() != Some(self.issuer.as_str()) {
            return Err(invalid(format!(
                "issuer mismatch: iss is \"{}\", expected {:?}",
                shorten(claims.iss.as_deref().unwrap_or("")),
                self.issuer
            )));
        }
        Ok((claims, payload))
    }

    fn check_signature(&self, token: &UntrustedToken<'_>) -> Result<(), TokenError> {
        let alg = token.algorithm();
        let no_key = |kind: &str| invalid(format!("{} token but no {kind} key configured", shorten(alg)));
        let result = match alg {
            "HS256" | "HS384" | "HS512" => {
                let keys = self.keys.hmac.as_ref().ok_or_else(|| no_key("HMAC"))?;
                match alg {
                    "HS256" => Hs256.validator::<Empty>(&keys.hs256).validate(token).map(drop),
                    "HS384" => Hs384.validator::<Empty>(&keys.hs384).validate(token).map(drop),
                    _ => Hs512.validator::<Empty>(&keys.hs512).validate(token).map(drop),
                }
            }
            "RS256" | "RS384" | "RS512" => {
                let key = self.keys.rsa.as_ref().ok_or_else(|| no_key("RSA"))?;
                let rsa = match alg {
                    "RS256" => Rsa::rs256(),
                    "RS384" => Rsa::rs384(),
                    _ => Rsa::rs512(),
                };
                rsa.validator::<Empty>(key).validate(token).map(drop)
            }
            "ES256" => {
                let key = self.keys.ecdsa.as_ref().ok_or_else(|| no_key("ECDSA"))?;
                Es256.validator::<Empty>(key).validate(token).map(drop)
            }
            a if a.eq_ignore_ascii_case("none") => return Err(invalid("algorithm none is not allowed")),
            "ES384" | "ES512" | "PS256" | "PS384" | "PS512" | "EdDSA" => {
                return Err(invalid(format!(
                    "unsupported algorithm {alg} (supported: HS256, HS384, HS512, RS256, RS384, RS512, ES256)"
                )))
            }
            other => return Err(invalid(format!("unknown algorithm {}", shorten(other)))),
        };
        result.map_err(|e| match e {
            ValidationError::MalformedClaims(e) => invalid(format!("malformed claims: {e}")),
            ValidationError::InvalidSignature
            | ValidationError::InvalidSignatureLen { .. }
            | ValidationError::MalformedSignature(_) => invalid("bad signature"),
            other => invalid(other.to_string()),
        })
    }

    fn user(&self, claims: &TokenClaims, payload: &[u8]) -> String {
        if self.user_id_claim.is_empty() {
            return claims.sub.clone().unwrap_or_default();
        }
        let Ok(root) = serde_json::from_slice::<Value>(payload) else {
            return String::new();
        };
        // Like Centrifugo's gjson lookup: a dotted path descends into objects.
        let found = root
            .get(&self.user_id_claim)
            .or_else(|| self.user_id_claim.split('.').try_fold(&root, |v, key| v.get(key)));
        match found {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        }
    }
}

fn parse_error(e: ParseError) -> TokenError {
    invalid(match e {
        ParseError::InvalidTokenStructure => {
            "malformed token: expected 3 dot-separated base64url segments (header.payload.signature)".to_owned()
        }
        ParseError::InvalidBase64Encoding => "malformed token: a segment is not valid base64url".to_owned(),
        ParseError::MalformedHeader(e) => format!("malformed token header: {e}"),
        ParseError::UnsupportedContentType(cty) => format!("unsupported token content type {}", shorten(&cty)),
        other => format!("malformed token: {other}"),
    })
}

/// Keeps attacker-chosen strings short in error messages.
fn shorten(s: &str) -> String {
    const MAX: usize = 32;
    if s.chars().count() <= MAX {
        format!("{s:?}").trim_matches('"').to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{}...", format!("{head:?}").trim_matches('"'))
    }
}

/// Seconds (possibly fractional, as NumericDate allows) to milliseconds, saturating.
fn secs_to_ms(secs: f64) -> u64 {
    if secs.is_nan() || secs <= 0.0 {
        0
    } else {
        (secs * 1000.0) as u64 // `as` saturates at u64::MAX
    }
}

fn check_time(claims: &TokenClaims, now_ms: u64) -> Result<(), TokenError> {
    if let Some(exp) = claims.exp {
        if now_ms >= secs_to_ms(exp) {
            return Err(TokenError::Expired);
        }
    }
    if let Some(nbf) = claims.nbf {
        if secs_to_ms(nbf) > now_ms {
            return Err(invalid("not yet valid (nbf)"));
        }
    }
    Ok(())
}

/// `expire_at` overrides `exp` (0 or negative = never); without it `exp` decides.
fn expires_at_ms(claims: &TokenClaims) -> Option<u64> {
    match claims.expire_at {
        Some(at) if at > 0 => Some((at as u64).saturating_mul(1000)),
        Some(_) => None,
        None => claims.exp.map(secs_to_ms),
    }
}

fn audiences(aud: Option<&Value>) -> Result<Vec<&str>, TokenError> {
    match aud {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.as_str()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().ok_or_else(|| invalid("aud must be a string or an array of strings")))
            .collect(),
        Some(_) => Err(invalid("aud must be a string or an array of strings")),
    }
}

/// `b64*` (standard base64 of raw bytes) wins when non-empty, else the raw JSON value.
pub(crate) fn pick_bytes(
    json: Option<Box<RawValue>>,
    b64: Option<String>,
    field: &str,
) -> Result<Option<Vec<u8>>, TokenError> {
    match b64.filter(|s| !s.is_empty()) {
        Some(s) => {
            STANDARD.decode(s).map(Some).map_err(|e| invalid(format!("{field} is not valid standard base64: {e}")))
        }
        None => Ok(json.map(|raw| raw.get().as_bytes().to_vec())),
    }
}

#[derive(Deserialize)]
struct TokenClaims {
    sub: Option<String>,
    exp: Option<f64>,
    nbf: Option<f64>,
    aud: Option<Value>,
    iss: Option<String>,
    expire_at: Option<i64>,
    info: Option<Box<RawValue>>,
    b64info: Option<String>,
    data: Option<Box<RawValue>>,
    b64data: Option<String>,
    channels: Option<Vec<String>>,
    subs: Option<BTreeMap<String, Option<SubClaim>>>,
    meta: Option<Box<RawValue>>,
    channel: Option<String>,
    client: Option<String>,
    #[serde(rename = "override")]
    override_: Option<OverrideClaim>,
}

#[derive(Deserialize, Default)]
pub(crate) struct SubClaim {
    pub(crate) info: Option<Box<RawValue>>,
    pub(crate) b64info: Option<String>,
    pub(crate) data: Option<Box<RawValue>>,
    pub(crate) b64data: Option<String>,
    #[serde(rename = "override")]
    pub(crate) override_: Option<OverrideClaim>,
}

#[derive(Deserialize)]
pub(crate) struct OverrideClaim {
    presence: Option<BoolValue>,
    join_leave: Option<BoolValue>,
    force_push_join_leave: Option<BoolValue>,
    force_recovery: Option<BoolValue>,
    force_positioning: Option<BoolValue>,
}

#[derive(Deserialize)]
struct BoolValue {
    #[serde(default)]
    value: bool,
}

impl OverrideClaim {
    pub(crate) fn into_overrides(self) -> SubscribeOverrides {
        let v = |b: Option<BoolValue>| b.map(|b| b.value);
        SubscribeOverrides {
            presence: v(self.presence),
            join_leave: v(self.join_leave),
            force_push_join_leave: v(self.force_push_join_leave),
            force_recovery: v(self.force_recovery),
            force_positioning: v(self.force_positioning),
        }
    }
}

/// HMAC algorithm for [`issue_hmac`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HmacAlgorithm {
    Hs256,
    Hs384,
    Hs512,
}

/// Signs `claims` (any JSON value, normally an object) with HS256 — for `rotor gentoken` and tests.
/// Whether a secret given by a client (API key, admin password) is the configured one, in
/// constant time whatever either's length: the digests are compared, not the bytes, since
/// `subtle`'s slice comparison returns early on a length mismatch.
pub fn same_secret(given: &str, secret: &str) -> bool {
    use sha2::Digest as _;
    use subtle::ConstantTimeEq as _;
    bool::from(sha2::Sha256::digest(given.as_bytes()).ct_eq(&sha2::Sha256::digest(secret.as_bytes())))
}

pub fn issue_hs256(secret: &str, claims_json: &Value) -> String {
    issue_hmac(HmacAlgorithm::Hs256, secret, claims_json)
}

/// Signs `claims` with an HMAC algorithm; the header is `{"alg":..,"typ":"JWT"}`.
pub fn issue_hmac(alg: HmacAlgorithm, secret: &str, claims_json: &Value) -> String {
    let key = secret.as_bytes();
    let name = match alg {
        HmacAlgorithm::Hs256 => "HS256",
        HmacAlgorithm::Hs384 => "HS384",
        HmacAlgorithm::Hs512 => "HS512",
    };
    let input = signing_input(&serde_json::json!({ "alg": name, "typ": "JWT" }), claims_json);
    let message = input.as_bytes();
    let signature = match alg {
        HmacAlgorithm::Hs256 => Hs256.sign(&Hs256Key::new(key), message).as_bytes().into_owned(),
        HmacAlgorithm::Hs384 => Hs384.sign(&Hs384Key::new(key), message).as_bytes().into_owned(),
        HmacAlgorithm::Hs512 => Hs512.sign(&Hs512Key::new(key), message).as_bytes().into_owned(),
    };
    assemble_token(&input, &signature)
}

/// `base64url(header).base64url(claims)`: the part of a JWT that is signed. With
/// [`assemble_token`], lets tests and tools build tokens with arbitrary (even forged) headers.
pub fn signing_input(header_json: &Value, claims_json: &Value) -> String {
    format!("{}.{}", URL_SAFE_NO_PAD.encode(header_json.to_string()), URL_SAFE_NO_PAD.encode(claims_json.to_string()))
}

/// Appends a base64url signature to a signing input.
pub fn assemble_token(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use jwt_compact::alg::Rsa;
    use p256::pkcs8::EncodePublicKey as _;
    use rsa::pkcs1::EncodeRsaPublicKey as _;
    use rsa::pkcs8::DecodePrivateKey as _;
    use serde_json::json;

    const SECRET: &str = "secret";
    const NOW_MS: u64 = 1_700_000_000_000;
    const NOW_S: u64 = NOW_MS / 1000;

    // Test-only 2048-bit key (generated with openssl; never used anywhere else).
    const RSA_PRIVATE_PEM: &str = "-----BEGIN PRIVATE KEY-----
MIIEvgIBADANBgkqhkiG9w0BAQEFAASCBKgwggSkAgEAAoIBAQCTzmlQWsdBZ5Gd
cXwgWICI3BBt192HGEHDpc9ksnX/bWs4oIVJEz6l35rSlXxqBYGNhTXXmYzO1cXe
34Z0/6AQPvXCRFIiUAfzbHQ1T8sYJ5pDFDL/cF4shetlXTuc1hT4hfMEjVRezPQm
+AjqT6eGTcXJMUnr6I+3O5OwUFsGtNACWSIeHtJGuaEejbtct3z3Hi4o0ROdZAJu
V2IhfEdtuZUuPGaVViD7KZWO5nbd0JSGD0XJV63/wg/f0zEZhTvPN70ffHxyV1Dq
S+uRonTvtecpJYS/rZt6KSLThwg0VT8KBRWQJdLACE6BFedtnybVGKVLuj9Ey66Z
CbVzGBexAgMBAAECggEAFhjTBkwYA2duLd1QOw64Ip3Rx/YwfHisJkmE7K9AdFAh
qjzXSFI7+LTp8scd60TI9kUexE2Er0xm0VfWBGpN/ffHqoQnylDwK1yAsBKukH0l
MxeTOzyLm7jmtQf/+EXKK1BtQTY20Zhu/N9yh8MiTrIUWmyHumDRkYly3jZZMXJ/
BxiZ3YaDP5DWims1GDMfhhz6bWHJwDQCIpdS7UCTreBYxt4CwTjtnTBGhG43ftWT
wDYkXIrre4Qpb4g8ph0vZKLpZKJ8zffwL76SZh1B+uTB23NTsz6O2mZgNIJQgywS
6oV+h7vakedrxpvuw5T96Xcf/bTFGu81c5oL3OWb5QKBgQDEmFZ0Q/3VnrzlyU3J
1OisqenLWHWZOgATsaQF4k1+diBzyc2SDeRU9HD6s4cacqPWfEhmCKYVs7yjivKU
oywOpY5eAHn2YIYnKF/XkJ0BwA3ciUaXgSy+MUet1WP9zFN6ZKq/WY3bOm66jHXk
fQGB9fWfWrit1DFIDIxZWhOhPQKBgQDAeAFjAqaWbTWDPCxNEu38ULgGzmRfEIzE
3sXv7DznGDFWdB9AuIxUAjrbO2bIjnI/kadz4hQa43vpEE4oEF+T5DKcR7OVsGQK
RkTijrzm31gsYIR/r4qWkbODj/WQQz3u4Us7sYZDccTG0gGFBsrLTRjwUxXjTtmb
t/YAk+nPhQKBgQCdyMJCiDtW0xM6vckf/zBLPAf3e2TO+N0M8Vr6mfmmULqVE9dY
rKugf5uZqrL5SB80ywT0V2atLldtTtyI7Tkz/C36Rhmc4zVogiACC//nYrP9V3P/
rt4xO64S15xsGyy4o8ji0MZouEockRUhsC6glr5vCkoEwbRX5jJSmFf+5QKBgQCd
P26inf/M1tzpo7fuIJEfnDM+HFIU+UiJcBj3tGLty+5DXAxMrHq6CDhd9WI8aWUe
WrodC5CxhzotaIzyXq43/jD7TfmDSuHxIwgUsdnUJpW7a//U8m6gJdosmulePBHV
oWv+EURIxiKm7d0f+jSldQ/zCW7QkBNqDhqGzlIwoQKBgDjYJ/6pmXJkws++oMVG
rOUrJLDLkVioxhMwka9vMpSzwUsEbv6CQncwhfiHZz+VGW4Dj4MgR8XRbXcFXK9n
+bXsdsk4HZVaXukzbHQ23zVcyBWTmTomEUXgIeB0qrGMrvMR0YRXoJs3r5dSP9FU
msrLUo3it8PtOqrDSF+Mrww0
-----END PRIVATE KEY-----";

    const P384_PUBLIC_PEM: &str = "-----BEGIN PUBLIC KEY-----
MHYwEAYHKoZIzj0CAQYFK4EEACIDYgAEW1OR87GqkFa9NjDVGOTQlv6HpUTIY0ZD
Gqyo3niWuUmN5DWRCRVpbG4qaaA3Fu+xZhIX0n1xOnrsaL/SpNcvN1EPTjE80R0P
IeAF0qRs5pA+0UnkScB8cTlRBRZV8DJK
-----END PUBLIC KEY-----";

    fn rsa_private() -> rsa::RsaPrivateKey {
        rsa::RsaPrivateKey::from_pkcs8_pem(RSA_PRIVATE_PEM).unwrap()
    }

    fn rsa_public_pem() -> String {
        rsa_private().to_public_key().to_public_key_pem(rsa::pkcs8::LineEnding::LF).unwrap()
    }

    fn ec_private() -> p256::ecdsa::SigningKey {
        p256::ecdsa::SigningKey::from_slice(&[7u8; 32]).unwrap()
    }

    fn ec_public_pem() -> String {
        ec_private().verifying_key().to_public_key_pem(p256::pkcs8::LineEnding::LF).unwrap()
    }

    /// Signs `claims` under a header naming `alg`, with algorithm `a` (may differ: forgeries).
    fn sign<A: Algorithm>(a: &A, key: &A::SigningKey, alg: &str, claims: Value) -> String {
        let input = signing_input(&json!({ "alg": alg, "typ": "JWT" }), &claims);
        let sig = a.sign(key, input.as_bytes());
        assemble_token(&input, &sig.as_bytes())
    }

    fn hmac_verifier() -> TokenVerifier {
        TokenVerifier::new(KeySet::new(SECRET, "", "").unwrap(), "", "", "")
    }

    fn all_keys_verifier() -> TokenVerifier {
        TokenVerifier::new(KeySet::new(SECRET, &rsa_public_pem(), &ec_public_pem()).unwrap(), "", "", "")
    }

    fn invalid_reason(r: Result<impl fmt::Debug, TokenError>) -> String {
        match r {
            Err(TokenError::Invalid(reason)) => reason,
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn hmac_algorithms_verify() {
        let v = hmac_verifier();
        for alg in [HmacAlgorithm::Hs256, HmacAlgorithm::Hs384, HmacAlgorithm::Hs512] {
            let token = issue_hmac(alg, SECRET, &json!({ "sub": "42", "exp": NOW_S + 60 }));
            let claims = v.verify_connect(&token, NOW_MS).unwrap();
            assert_eq!(claims.user, "42");
            assert_eq!(claims.expires_at_ms, Some((NOW_S + 60) * 1000));
        }
    }

    #[test]
    fn issue_hs256_round_trips() {
        let token = issue_hs256(SECRET, &json!({ "sub": "alice", "info": { "name": "Alice" } }));
        let claims = hmac_verifier().verify_connect(&token, NOW_MS).unwrap();
        assert_eq!(claims.user, "alice");
        assert_eq!(claims.expires_at_ms, None);
        assert_eq!(claims.info.as_deref(), Some(&br#"{"name":"Alice"}"#[..]));
        assert!(claims.channels.is_empty() && claims.subs.is_empty() && claims.meta.is_none());
    }

    #[test]
    fn rsa_algorithms_verify_with_spki_and_pkcs1_keys() {
        let private = rsa_private();
        let pkcs1 = private.to_public_key().to_pkcs1_pem(rsa::pkcs8::LineEnding::LF).unwrap();
        assert!(pkcs1.contains("BEGIN RSA PUBLIC KEY"));
        for pem in [rsa_public_pem(), pkcs1] {
            let v = TokenVerifier::new(KeySet::new("", &pem, "").unwrap(), "", "", "");
            for (alg, name) in [(Rsa::rs256(), "RS256"), (Rsa::rs384(), "RS384"), (Rsa::rs512(), "RS512")] {
                let token = sign(&alg, &private, name, json!({ "sub": "r" }));
                assert_eq!(v.verify_connect(&token, NOW_MS).unwrap().user, "r", "{name}");
            }
        }
    }

    #[test]
    fn es256_verifies() {
        let v = TokenVerifier::new(KeySet::new("", "", &ec_public_pem()).unwrap(), "", "", "");
        let token = sign(&Es256, &ec_private(), "ES256", json!({ "sub": "e", "exp": NOW_S + 1 }));
        assert_eq!(v.verify_connect(&token, NOW_MS).unwrap().user, "e");
        let other = p256::ecdsa::SigningKey::from_slice(&[9u8; 32]).unwrap();
        let forged = sign(&Es256, &other, "ES256", json!({ "sub": "e" }));
        assert_eq!(invalid_reason(v.verify_connect(&forged, NOW_MS)), "bad signature");
    }

    #[test]
    fn key_set_reports_which_key_is_bad() {
        assert!(KeySet::new("", "", "").unwrap().is_empty());
        assert!(!KeySet::new("s", "", "").unwrap().is_empty());
        let e = KeySet::new("", "not a pem", "").unwrap_err();
        assert!(matches!(e, AuthConfigError::RsaPublicKey(_)));
        assert!(e.to_string().starts_with("rsa_public_key:"), "{e}");
        let e = KeySet::new("", "", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----").unwrap_err();
        assert!(e.to_string().starts_with("ecdsa_public_key:"), "{e}");
        // A P-384 key is refused for ES256, and an EC key is not an RSA key.
        assert!(matches!(KeySet::new("", "", P384_PUBLIC_PEM), Err(AuthConfigError::EcdsaPublicKey(_))));
        assert!(matches!(KeySet::new("", &ec_public_pem(), ""), Err(AuthConfigError::RsaPublicKey(_))));
        assert!(!format!("{:?}", KeySet::new("topsecret", "", "").unwrap()).contains("topsecret"));
    }

    #[test]
    fn expiry_is_checked_against_now() {
        let v = hmac_verifier();
        let token = issue_hs256(SECRET, &json!({ "sub": "1", "exp": NOW_S }));
        assert_eq!(v.verify_connect(&token, NOW_MS), Err(TokenError::Expired));
        assert_eq!(v.verify_connect(&token, NOW_MS - 1).unwrap().expires_at_ms, Some(NOW_MS));
        assert_eq!(TokenError::Expired.to_string(), "token expired");
        let sub = issue_hs256(SECRET, &json!({ "channel": "c", "exp": NOW_S - 10 }));
        assert_eq!(v.verify_subscribe(&sub, NOW_MS), Err(TokenError::Expired));
    }

    #[test]
    fn not_before_in_future_is_invalid() {
        let v = hmac_verifier();
        let token = issue_hs256(SECRET, &json!({ "sub": "1", "nbf": NOW_S + 5 }));
        let err = v.verify_connect(&token, NOW_MS).unwrap_err();
        assert_eq!(err.to_string(), "invalid token: not yet valid (nbf)");
        assert!(v.verify_connect(&token, (NOW_S + 5) * 1000).is_ok());
    }

    #[test]
    fn bad_signature_is_invalid() {
        let v = hmac_verifier();
        let token = issue_hs256("other-secret", &json!({ "sub": "1" }));
        assert_eq!(v.verify_connect(&token, NOW_MS).unwrap_err().to_string(), "invalid token: bad signature");
        // Payload swapped under a valid signature.
        let good = issue_hs256(SECRET, &json!({ "sub": "1" }));
        let parts: Vec<&str> = good.split('.').collect();
        let tampered = format!("{}.{}.{}", parts[0], URL_SAFE_NO_PAD.encode(r#"{"sub":"admin"}"#), parts[2]);
        assert_eq!(invalid_reason(v.verify_connect(&tampered, NOW_MS)), "bad signature");
        // Truncated and empty signatures.
        assert_eq!(invalid_reason(v.verify_connect(&good[..good.len() - 3], NOW_MS)), "bad signature");
        let unsigned = format!("{}.{}.", parts[0], parts[1]);
        assert_eq!(invalid_reason(v.verify_connect(&unsigned, NOW_MS)), "bad signature");
    }

    #[test]
    fn alg_none_is_refused_in_any_case() {
        let v = all_keys_verifier();
        for alg in ["none", "None", "NONE", "nOnE"] {
            let input = signing_input(&json!({ "alg": alg }), &json!({ "sub": "admin" }));
            for token in [format!("{input}."), assemble_token(&input, b"x")] {
                let err = v.verify_connect(&token, NOW_MS).unwrap_err();
                assert_eq!(err.to_string(), "invalid token: algorithm none is not allowed");
            }
        }
    }

    #[test]
    fn algorithm_must_match_a_configured_key_type() {
        let rsa_pem = rsa_public_pem();
        let rsa_only = TokenVerifier::new(KeySet::new("", &rsa_pem, "").unwrap(), "", "", "");
        // Classic confusion: HS256 signed with the RSA public key PEM text as the secret.
        let forged = issue_hs256(&rsa_pem, &json!({ "sub": "admin" }));
        assert_eq!(
            rsa_only.verify_connect(&forged, NOW_MS).unwrap_err().to_string(),
            "invalid token: HS256 token but no HMAC key configured"
        );
        let both = TokenVerifier::new(KeySet::new(SECRET, &rsa_pem, "").unwrap(), "", "", "");
        assert_eq!(invalid_reason(both.verify_connect(&forged, NOW_MS)), "bad signature");

        let hmac_only = hmac_verifier();
        let rs = sign(&Rsa::rs256(), &rsa_private(), "RS256", json!({ "sub": "x" }));
        assert_eq!(invalid_reason(hmac_only.verify_connect(&rs, NOW_MS)), "RS256 token but no RSA key configured");
        // RS256 header over an HMAC signature made with the configured secret: never accepted.
        let rs_header_hmac_sig = sign(&Hs256, &Hs256Key::new(SECRET), "RS256", json!({ "sub": "x" }));
        assert!(matches!(hmac_only.verify_connect(&rs_header_hmac_sig, NOW_MS), Err(TokenError::Invalid(_))));
        assert!(matches!(both.verify_connect(&rs_header_hmac_sig, NOW_MS), Err(TokenError::Invalid(_))));
        let es = sign(&Es256, &ec_private(), "ES256", json!({}));
        assert_eq!(invalid_reason(hmac_only.verify_connect(&es, NOW_MS)), "ES256 token but no ECDSA key configured");
    }

    #[test]
    fn unsupported_and_unknown_algorithms() {
        let v = all_keys_verifier();
        for alg in ["ES384", "ES512", "PS256", "EdDSA"] {
            let token = sign(&Hs256, &Hs256Key::new(SECRET), alg, json!({}));
            assert!(invalid_reason(v.verify_connect(&token, NOW_MS)).starts_with("unsupported algorithm"), "{alg}");
        }
        let token = sign(&Hs256, &Hs256Key::new(SECRET), "hs256", json!({}));
        assert_eq!(invalid_reason(v.verify_connect(&token, NOW_MS)), "unknown algorithm hs256");
        let long = "X".repeat(10_000);
        let token = sign(&Hs256, &Hs256Key::new(SECRET), &long, json!({}));
        assert!(invalid_reason(v.verify_connect(&token, NOW_MS)).len() < 100);
    }

    #[test]
    fn audience_and_issuer_are_checked_only_when_configured() {
        let keys = KeySet::new(SECRET, "", "").unwrap();
        let v = TokenVerifier::new(keys.clone(), "rotor", "https://auth", "");
        let ok =
            [json!({ "aud": "rotor", "iss": "https://auth" }), json!({ "aud": ["x", "rotor"], "iss": "https://auth" })];
        for claims in ok {
            assert!(v.verify_connect(&issue_hs256(SECRET, &claims), NOW_MS).is_ok(), "{claims}");
        }
        let bad_aud = [json!({ "aud": "other", "iss": "https://auth" }), json!({ "iss": "https://auth" })];
        for claims in bad_aud {
            let reason = invalid_reason(v.verify_connect(&issue_hs256(SECRET, &claims), NOW_MS));
            assert!(reason.starts_with("audience mismatch"), "{reason}");
        }
        let reason = invalid_reason(v.verify_connect(&issue_hs256(SECRET, &json!({ "aud": 5 })), NOW_MS));
        assert!(reason.contains("aud must be"), "{reason}");
        for claims in [json!({ "aud": "rotor", "iss": "evil" }), json!({ "aud": "rotor" })] {
            let reason = invalid_reason(v.verify_subscribe(&issue_hs256(SECRET, &claims), NOW_MS));
            assert!(reason.starts_with("issuer mismatch"), "{reason}");
        }
        let open = TokenVerifier::new(keys, "", "", "");
        let token = issue_hs256(SECRET, &json!({ "aud": "other", "iss": "evil" }));
        assert!(open.verify_connect(&token, NOW_MS).is_ok());
    }

    #[test]
    fn user_id_claim_replaces_sub() {
        let v = TokenVerifier::new(KeySet::new(SECRET, "", "").unwrap(), "", "", "user_id");
        let cases = [
            (json!({ "sub": "s", "user_id": "u1" }), "u1"),
            (json!({ "sub": "s", "user_id": 12345 }), "12345"),
            (json!({ "sub": "s" }), ""),
        ];
        for (claims, user) in cases {
            assert_eq!(v.verify_connect(&issue_hs256(SECRET, &claims), NOW_MS).unwrap().user, user);
        }
        let nested = TokenVerifier::new(KeySet::new(SECRET, "", "").unwrap(), "", "", "ext.uid");
        let token = issue_hs256(SECRET, &json!({ "ext": { "uid": "deep" }, "channel": "c" }));
        assert_eq!(nested.verify_subscribe(&token, NOW_MS).unwrap().user, "deep");
        // Missing sub is anonymous.
        assert_eq!(hmac_verifier().verify_connect(&issue_hs256(SECRET, &json!({})), NOW_MS).unwrap().user, "");
    }

    #[test]
    fn expire_at_overrides_exp() {
        let v = hmac_verifier();
        let never = issue_hs256(SECRET, &json!({ "exp": NOW_S + 10, "expire_at": 0 }));
        assert_eq!(v.verify_connect(&never, NOW_MS).unwrap().expires_at_ms, None);
        let later = issue_hs256(SECRET, &json!({ "exp": NOW_S + 10, "expire_at": NOW_S + 3600 }));
        assert_eq!(v.verify_connect(&later, NOW_MS).unwrap().expires_at_ms, Some((NOW_S + 3600) * 1000));
        // exp is still validated.
        let expired = issue_hs256(SECRET, &json!({ "exp": NOW_S - 1, "expire_at": 0 }));
        assert_eq!(v.verify_connect(&expired, NOW_MS), Err(TokenError::Expired));
        let sub = issue_hs256(SECRET, &json!({ "channel": "c", "expire_at": NOW_S + 7 }));
        assert_eq!(v.verify_subscribe(&sub, NOW_MS).unwrap().expires_at_ms, Some((NOW_S + 7) * 1000));
    }

    #[test]
    fn connection_token_with_channel_claim_is_invalid() {
        let token = issue_hs256(SECRET, &json!({ "sub": "1", "channel": "news" }));
        let reason = invalid_reason(hmac_verifier().verify_connect(&token, NOW_MS));
        assert!(reason.starts_with("connection token must not have channel claim"), "{reason}");
        let empty = issue_hs256(SECRET, &json!({ "sub": "1", "channel": "" }));
        assert!(hmac_verifier().verify_connect(&empty, NOW_MS).is_ok());
    }

    #[test]
    fn subscription_token_needs_channel() {
        let v = hmac_verifier();
        for claims in [json!({ "sub": "1" }), json!({ "sub": "1", "channel": "" })] {
            let reason = invalid_reason(v.verify_subscribe(&issue_hs256(SECRET, &claims), NOW_MS));
            assert_eq!(reason, "subscription token needs channel claim");
        }
        let token = issue_hs256(
            SECRET,
            &json!({
                "sub": "1", "channel": "$private", "client": "c-1", "exp": NOW_S + 60,
                "info": [1, 2], "b64data": STANDARD.encode([0u8, 255]),
                "override": { "presence": { "value": true }, "force_recovery": {} }
            }),
        );
        let claims = v.verify_subscribe(&token, NOW_MS).unwrap();
        assert_eq!(claims.user, "1");
        assert_eq!(claims.channel, "$private");
        assert_eq!(claims.client, "c-1");
        assert_eq!(claims.expires_at_ms, Some((NOW_S + 60) * 1000));
        assert_eq!(claims.info.as_deref(), Some(&b"[1,2]"[..]));
        assert_eq!(claims.data.as_deref(), Some(&[0u8, 255][..]));
        assert_eq!(
            claims.overrides,
            SubscribeOverrides { presence: Some(true), force_recovery: Some(false), ..Default::default() }
        );
    }

    #[test]
    fn info_b64info_channels_subs_and_meta() {
        let v = hmac_verifier();
        let token = issue_hs256(
            SECRET,
            &json!({
                "sub": "1",
                "b64info": STANDARD.encode(b"\x00raw"),
                "info": { "ignored": true },
                "channels": ["a", "b"],
                "subs": {
                    "news": { "info": "x", "data": { "d": 1 }, "override": { "join_leave": { "value": false } } },
                    "bin": { "b64info": STANDARD.encode(b"i"), "b64data": STANDARD.encode(b"d") },
                    "plain": null
                },
                "meta": { "role": "admin" }
            }),
        );
        let c = v.verify_connect(&token, NOW_MS).unwrap();
        assert_eq!(c.info.as_deref(), Some(&b"\x00raw"[..]));
        assert_eq!(c.channels, ["a", "b"]);
        assert_eq!(c.meta.as_deref(), Some(&br#"{"role":"admin"}"#[..]));
        assert_eq!(c.subs.keys().collect::<Vec<_>>(), ["bin", "news", "plain"]);
        let news = &c.subs["news"];
        assert_eq!(news.info.as_deref(), Some(&br#""x""#[..]));
        assert_eq!(news.data.as_deref(), Some(&br#"{"d":1}"#[..]));
        assert_eq!(news.overrides.join_leave, Some(false));
        assert_eq!(c.subs["bin"].info.as_deref(), Some(&b"i"[..]));
        assert_eq!(c.subs["bin"].data.as_deref(), Some(&b"d"[..]));
        assert_eq!(c.subs["plain"], SubClaimOptions::default());

        // Raw bytes are kept exactly as the token had them (whitespace included).
        let input = signing_input(&json!({ "alg": "HS256" }), &json!(null));
        let header = input.split('.').next().unwrap();
        let payload = URL_SAFE_NO_PAD.encode(r#"{"info": { "a" : 1 }}"#);
        let input = format!("{header}.{payload}");
        let sig = Hs256.sign(&Hs256Key::new(SECRET), input.as_bytes());
        let token = assemble_token(&input, &sig.as_bytes());
        assert_eq!(v.verify_connect(&token, NOW_MS).unwrap().info.as_deref(), Some(&br#"{ "a" : 1 }"#[..]));

        let bad = issue_hs256(SECRET, &json!({ "b64info": "%%%" }));
        assert!(invalid_reason(v.verify_connect(&bad, NOW_MS)).starts_with("b64info is not valid"));
        let bad = issue_hs256(SECRET, &json!({ "subs": { "x": { "b64data": "!" } } }));
        assert!(invalid_reason(v.verify_connect(&bad, NOW_MS)).starts_with(r#"subs["x"].b64data"#));
    }

    #[test]
    fn malformed_claims_are_invalid() {
        let v = hmac_verifier();
        for claims in [
            json!({ "exp": "soon" }),
            json!({ "exp": 1e300 }),
            json!({ "sub": 5 }),
            json!({ "channels": "a" }),
            json!({ "expire_at": 1.5 }),
            json!([1, 2]),
            json!("str"),
            json!(null),
        ] {
            let reason = invalid_reason(v.verify_connect(&issue_hs256(SECRET, &claims), NOW_MS));
            assert!(reason.starts_with("malformed claims"), "{claims}: {reason}");
        }
        // Fractional NumericDate and a negative exp.
        let t = issue_hs256(SECRET, &json!({ "exp": NOW_S as f64 + 0.5 }));
        assert_eq!(v.verify_connect(&t, NOW_MS).unwrap().expires_at_ms, Some(NOW_MS + 500));
        let t = issue_hs256(SECRET, &json!({ "exp": -1 }));
        assert_eq!(v.verify_connect(&t, NOW_MS), Err(TokenError::Expired));
    }

    #[test]
    fn garbage_never_panics() {
        let v = all_keys_verifier();
        let huge = "a".repeat(1 << 20);
        let huge_dots = format!("{huge}.{huge}.{huge}");
        let valid = issue_hs256(SECRET, &json!({ "sub": "1" }));
        let mut inputs: Vec<String> = [
            "",
            ".",
            "..",
            "...",
            "a.b.c",
            "a.b",
            "a.b.c.d",
            "....",
            "ü.ö.ä",
            "\u{0}.\u{0}.\u{0}",
            "e30.e30.",
            "eyJhbGciOiJIUzI1NiJ9",
            "eyJhbGciOiJIUzI1NiJ9..",
            "eyJhbGciOiJIUzI1NiJ9.e30",
            "=.=.=",
            "\u{fffd}\u{fffd}",
            "eyJhbGciOiJIUzI1NiJ9.e30=.AAAA",
            "e30.e30.e30",
            "W10.W10.W10",
            "bnVsbA.bnVsbA.bnVsbA",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        inputs.push(huge);
        inputs.push(huge_dots);
        inputs.push(format!("{valid}.extra"));
        inputs.push(format!(" {valid}"));
        // Every prefix, and every single-byte corruption, of a valid token.
        for i in 0..valid.len() {
            inputs.push(valid[..i].to_string());
            let mut bytes = valid.clone().into_bytes();
            bytes[i] = if bytes[i] == b'A' { b'.' } else { b'A' };
            inputs.push(String::from_utf8(bytes).unwrap());
        }
        // Headers that are valid base64url but odd JSON.
        for header in [json!({}), json!({ "alg": 1 }), json!({ "alg": "HS256", "cty": "CBOR" }), json!([]), json!(null)]
        {
            inputs.push(assemble_token(&signing_input(&header, &json!({})), b"sig"));
        }
        for input in &inputs {
            let connect = v.verify_connect(input, NOW_MS);
            let subscribe = v.verify_subscribe(input, NOW_MS);
            if input != &valid {
                assert!(matches!(connect, Err(TokenError::Invalid(_))), "{:.80}: {connect:?}", input);
                assert!(matches!(subscribe, Err(TokenError::Invalid(_))), "{:.80}", input);
            }
        }
        let reason = invalid_reason(v.verify_connect("a.b", NOW_MS));
        assert!(reason.starts_with("malformed token: expected 3"), "{reason}");
        assert!(invalid_reason(v.verify_connect("e30.e30.", NOW_MS)).starts_with("malformed token header"));
    }

    #[test]
    fn empty_key_set_refuses_everything() {
        let v = TokenVerifier::new(KeySet::default(), "", "", "");
        let token = issue_hs256(SECRET, &json!({}));
        assert_eq!(invalid_reason(v.verify_connect(&token, NOW_MS)), "HS256 token but no HMAC key configured");
        let v = TokenVerifier::new(KeySet::new("", "", "").unwrap(), "", "", "");
        assert!(v.keys().is_empty());
        assert!(v.verify_connect(&issue_hs256("", &json!({})), NOW_MS).is_err());
    }
}
