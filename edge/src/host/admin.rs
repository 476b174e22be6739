//! The admin web UI's requests at the edge (`shared::admin` decides): the Worker runs admin
//! API calls with the API runner, and hands logins to `node-0`, which keeps the table of
//! failed logins for every isolate (a Worker isolate's memory is not shared, so a table there
//! would slow nobody down).

use std::cell::RefCell;

use shared::admin::{self, LoginGuard, Step};
use shared::http::{AdminCall, AdminLogin, Answer};
use worker::{Env, Request, Response, Result};

use super::http::{self, query_param, read_body};
use super::{http_api, internal_request, load_config, now, Loaded, ADMIN_LOGIN_PATH, NODES};

fn encode(s: &str) -> String {
    String::from(js_sys::encode_uri_component(s))
}

/// `POST <prefix>/admin/auth`, in the Worker: to `node-0` with the client's address.
pub async fn login(mut req: Request, env: &Env, login: AdminLogin) -> Result<Response> {
    let header = |name: &str| req.headers().get(name).ok().flatten().unwrap_or_default();
    let who = header("cf-connecting-ip");
    let content_type = header("content-type");
    let body = match read_body(&mut req, login.body).await {
        Ok(b) => b,
        Err(a) => return http::answer(a),
    };
    let path = format!("{ADMIN_LOGIN_PATH}?who={}&ct={}", encode(&who), encode(&content_type));
    let stub = env.durable_object(NODES)?.id_from_name("node-0")?.get_stub()?;
    let mut reply = stub.fetch_with_request(internal_request(&path, body)?).await?;
    // A fresh response: the Worker adds CORS headers to it.
    let mut answer = Answer::text(reply.status_code(), reply.text().await?);
    for name in ["content-type", "retry-after"] {
        if let Some(value) = reply.headers().get(name)? {
            answer.headers.retain(|(n, _)| *n != name);
            answer.headers.push((name, value));
        }
    }
    http::answer(answer)
}

/// A login, in `node-0`.
pub async fn check_login(mut req: Request, env: &Env, guard: &RefCell<LoginGuard>) -> Result<Response> {
    let loaded = load_config(env).map_err(worker::Error::RustError)?;
    let who = query_param(&req, "who").filter(|w| !w.is_empty()).unwrap_or_else(|| "unknown".to_owned());
    let content_type = query_param(&req, "ct").filter(|c| !c.is_empty());
    let body = req.bytes().await?;
    let answer = guard.borrow_mut().login(&loaded.config, &who, content_type.as_deref(), &body, now());
    if answer.status != 200 {
        worker::console_warn!("rotor: admin login from {who} refused: {} {}", answer.status, answer.body);
    }
    http::answer(answer)
}

/// `POST <prefix>/admin/api`, in the Worker.
pub async fn api(mut req: Request, env: &Env, loaded: &Loaded, call: AdminCall) -> Result<Response> {
    let body = match read_body(&mut req, call.body).await {
        Ok(b) => b,
        Err(a) => return http::answer(a),
    };
    match admin::command(&loaded.config, &loaded.endpoints, call.token.as_deref(), &body, now()) {
        Ok(Step::Run { method, params, command }) => {
            let result = http_api::run(env, loaded, &method, &params, *command).await?;
            http::answer(admin::api_answer(&result))
        }
        Ok(Step::Done(answer)) => http::answer(answer),
        Err(refused) => {
            worker::console_warn!("rotor: admin api call refused: {} {}", refused.status, refused.body);
            http::answer(refused)
        }
    }
}
