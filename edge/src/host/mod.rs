//! The Workers host: everything that names `worker::`. Pure logic lives in the crate's other
//! modules (and in `shared`), tested natively.

mod admin;
mod channel;
mod http;
mod http_api;
mod logging;
mod node;
mod worker_entry;

use std::cell::RefCell;
use std::sync::Arc;

use shared::config::Config;
use shared::http::Endpoints;
use shared::Timestamp;
use wasm_bindgen::{JsCast, JsValue};
use worker::{Env, Method, Request, RequestInit, Response};

use crate::channel_store::Param;
use crate::config::{EdgeOptions, EnvValue};

pub use channel::ChannelObject;
pub use node::NodeObject;

/// Binding names (wrangler.toml `[durable_objects]`).
pub const NODES: &str = "NODES";
pub const CHANNELS: &str = "CHANNELS";

/// Internal paths between objects; the Worker never routes outside requests to them.
pub const BROKER_PATH: &str = "/_rotor/broker";
pub const EVENTS_PATH: &str = "/_rotor/events";
/// Server API commands about connections, from the Worker to every node object.
pub const CONNECTION_API_PATH: &str = "/_rotor/api";
/// An admin login, from the Worker to `node-0`, which keeps the failed-login table.
pub const ADMIN_LOGIN_PATH: &str = "/_rotor/admin_login";
/// An emulation request the Worker checked, for the node holding its session (Protobuf).
pub const EMULATION_PATH: &str = "/_rotor/emulation";
/// The node object's figures for `/metrics` (JSON of `shared::metrics::Snapshot`).
pub const METRICS_PATH: &str = "/_rotor/metrics";
/// A round trip through a node object, for `/health`.
pub const HEALTH_PATH: &str = "/_rotor/health";

/// Milliseconds since the Unix epoch. Time moves only between I/O on Workers: read it once
/// per event and pass it down.
pub fn now() -> Timestamp {
    Timestamp(js_sys::Date::now() as u64)
}

pub fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::getrandom(&mut b).is_err() {
        // crypto.getRandomValues is always there on Workers; keep going with weaker bits.
        return (js_sys::Math::random() * u64::MAX as f64) as u64 ^ js_sys::Date::now() as u64;
    }
    u64::from_le_bytes(b)
}

/// The configuration, parsed once per isolate (the environment does not change under it).
#[derive(Clone)]
pub struct Loaded {
    pub config: Arc<Config>,
    /// Which path is which endpoint (from `config`).
    pub endpoints: Arc<Endpoints>,
    pub edge: EdgeOptions,
}

thread_local! {
    static LOADED: RefCell<Option<Result<Loaded, String>>> = const { RefCell::new(None) };
}

pub fn load_config(env: &Env) -> Result<Loaded, String> {
    if let Some(cached) = LOADED.with(|l| l.borrow().clone()) {
        return cached;
    }
    let result = parse_env(env);
    match &result {
        Ok(loaded) => logging::init(loaded.config.log_filter()),
        Err(e) => worker::console_error!("rotor: configuration error: {e}"),
    }
    LOADED.with(|l| *l.borrow_mut() = Some(result.clone()));
    result
}

fn parse_env(env: &Env) -> Result<Loaded, String> {
    let object: &js_sys::Object = env.unchecked_ref();
    let mut entries = Vec::new();
    for pair in js_sys::Object::entries(object).iter() {
        let pair: js_sys::Array = pair.unchecked_into();
        let Some(name) = pair.get(0).as_string() else { continue };
        if let Some(value) = env_value(&pair.get(1)) {
            entries.push((name, value));
        }
    }
    let env_config = crate::config::from_env(entries)?;
    let loaded = Config::from_json_str(&env_config.json, env_config.overrides).map_err(|e| e.to_string())?;
    for w in &loaded.warnings {
        worker::console_warn!("rotor: config: {w}");
    }
    let endpoints = Arc::new(Endpoints::new(&loaded.config).map_err(|e| e.to_string())?);
    Ok(Loaded { config: Arc::new(loaded.config), endpoints, edge: env_config.edge })
}

/// A var or secret as a config value; `None` for bindings (Durable Object namespaces etc.).
fn env_value(v: &JsValue) -> Option<EnvValue> {
    if let Some(s) = v.as_string() {
        return Some(EnvValue::Text(s));
    }
    if v.as_bool().is_some() || v.as_f64().is_some() || js_sys::Array::is_array(v) || is_plain_object(v) {
        let text = js_sys::JSON::stringify(v).ok()?.as_string()?;
        return serde_json::from_str(&text).ok().map(EnvValue::Json);
    }
    None
}

fn is_plain_object(v: &JsValue) -> bool {
    if !v.is_object() {
        return false;
    }
    let proto = js_sys::Object::get_prototype_of(v);
    let plain = js_sys::Object::get_prototype_of(&js_sys::Object::new().into());
    proto.is_null() || JsValue::from(proto) == JsValue::from(plain)
}

/// A POST of `body` to another object (internal message).
pub fn internal_request(path: &str, body: Vec<u8>) -> worker::Result<Request> {
    let mut init = RequestInit::new();
    init.with_method(Method::Post);
    let array = js_sys::Uint8Array::from(body.as_slice());
    init.with_body(Some(array.into()));
    Request::new_with_init(&format!("https://rotor.internal{path}"), &init)
}

/// Runs one SQL statement on the object's storage.
pub fn sql_exec(state: &worker::State, query: &str, params: Vec<Param>) -> worker::Result<worker::SqlCursor> {
    use worker::SqlStorageValue;
    let values = params
        .into_iter()
        .map(|p| match p {
            Param::Null => SqlStorageValue::Null,
            Param::Int(i) => SqlStorageValue::Integer(i),
            Param::Text(t) => SqlStorageValue::String(t),
            Param::Blob(b) => SqlStorageValue::Blob(b),
        })
        .collect::<Vec<_>>();
    state.storage().sql().exec(query, values)
}

pub async fn response_bytes(mut r: Response) -> worker::Result<Vec<u8>> {
    if r.status_code() != 200 {
        let text = r.text().await.unwrap_or_default();
        return Err(worker::Error::RustError(format!("status {}: {text}", r.status_code())));
    }
    r.bytes().await
}

/// Values of SQL rows, read leniently (a wrong type reads as empty or zero).
pub mod sql {
    use worker::SqlStorageValue;

    pub fn text(v: &SqlStorageValue) -> String {
        match v {
            SqlStorageValue::String(s) => s.clone(),
            _ => String::new(),
        }
    }

    pub fn opt_text(v: &SqlStorageValue) -> Option<String> {
        match v {
            SqlStorageValue::String(s) => Some(s.clone()),
            _ => None,
        }
    }

    pub fn int(v: &SqlStorageValue) -> u64 {
        match v {
            SqlStorageValue::Integer(i) => *i as u64,
            SqlStorageValue::Float(f) => *f as u64,
            _ => 0,
        }
    }

    pub fn blob(v: &SqlStorageValue) -> Vec<u8> {
        match v {
            SqlStorageValue::Blob(b) => b.clone(),
            SqlStorageValue::String(s) => s.clone().into_bytes(),
            _ => Vec::new(),
        }
    }
}
