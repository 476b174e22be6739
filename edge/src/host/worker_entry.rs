//! The Worker's fetch handler: asks the endpoint layer what a request is, then forwards it:
//! client connections to a node object, emulation requests to the node named in them, API
//! calls to [`super::http_api`]. It keeps no state.

use prost::Message as _;
use shared::http::{Answer, Decision, EmulationCall};
use shared::metrics::Snapshot;
use worker::{event, Context, Env, Request, Response, Result};

use super::http::{self, read_body, text};
use super::{
    admin, http_api, internal_request, load_config, random_u64, response_bytes, Loaded, EMULATION_PATH, HEALTH_PATH,
    METRICS_PATH, NODES,
};

#[event(fetch)]
pub async fn fetch(req: Request, env: Env, _ctx: Context) -> Result<Response> {
    let loaded = match load_config(&env) {
        Ok(l) => l,
        Err(e) => return text(500, &format!("rotor: configuration error: {e}")),
    };
    let routed = http::decide(&req, &loaded)?;
    let cors = routed.cors();
    let response = match routed.decision {
        Decision::Api(call) => http_api::serve(req, &env, &loaded, call).await?,
        Decision::AdminLogin(login) => admin::login(req, &env, login).await?,
        Decision::AdminApi(call) => admin::api(req, &env, &loaded, call).await?,
        Decision::Emulation(call) => emulation(req, &env, call).await?,
        Decision::Health => health(&env).await?,
        Decision::Metrics { authorized: false } => http::answer(Answer::empty(401))?,
        Decision::Metrics { authorized: true } => metrics(&env, &loaded).await?,
        Decision::Answer(a) => http::answer(a)?,
        // The node object takes the same decision and serves it (CORS included).
        Decision::Stream(_) | Decision::Upgrade(_) => {
            // Connections spread over a fixed set of node objects (see the crate docs).
            let k = (random_u64() % u64::from(loaded.edge.node_count)) as u32;
            let stub = env.durable_object(NODES)?.id_from_name(&format!("node-{k}"))?.get_stub()?;
            return stub.fetch_with_request(req).await;
        }
    };
    http::with_cors(response, &cors)
}

/// An emulation request: to the node object named by its `node` field (its hex id).
async fn emulation(mut req: Request, env: &Env, call: EmulationCall) -> Result<Response> {
    let body = match read_body(&mut req, call.body).await {
        Ok(b) => b,
        Err(a) => return http::answer(a),
    };
    let request = match call.decode(&body) {
        Ok(r) => r,
        Err(a) => return http::answer(a),
    };
    let namespace = env.durable_object(NODES)?;
    let Ok(id) = namespace.id_from_string(&request.node) else {
        return http::answer(Answer::unknown_node());
    };
    let forward = internal_request(EMULATION_PATH, request.encode_to_vec())?;
    id.get_stub()?.fetch_with_request(forward).await
}

/// Healthy when a node object answers a round trip within a second (503 naming the problem
/// otherwise): the Worker itself answering proves little.
async fn health(env: &Env) -> Result<Response> {
    let stub = env.durable_object(NODES)?.id_from_name("node-0")?.get_stub()?;
    let ask = stub.fetch_with_request(internal_request(HEALTH_PATH, Vec::new())?);
    let limit = worker::Delay::from(std::time::Duration::from_secs(1));
    let outcome = match futures_util::future::select(Box::pin(ask), limit).await {
        futures_util::future::Either::Left((answer, _)) => Some(answer),
        futures_util::future::Either::Right(_) => None,
    };
    match outcome {
        Some(Ok(r)) if r.status_code() == 200 => text(200, "{}"),
        Some(answer) => {
            let why = match answer {
                Ok(r) => format!("status {}", r.status_code()),
                Err(e) => e.to_string(),
            };
            tracing::error!("health check: node object failed: {why}");
            text(503, &format!("node object failed: {why}"))
        }
        None => {
            tracing::error!("health check: node object did not answer within 1 s");
            text(503, "node object did not answer within 1 s")
        }
    }
}

/// `/metrics`: every node object's figures, added up (as `info` lists every node object).
async fn metrics(env: &Env, loaded: &Loaded) -> Result<Response> {
    let namespace = env.durable_object(NODES)?;
    let mut asks = Vec::new();
    for k in 0..loaded.edge.node_count {
        let stub = namespace.id_from_name(&format!("node-{k}"))?.get_stub()?;
        let ask = async move {
            let r = stub.fetch_with_request(internal_request(METRICS_PATH, Vec::new())?).await?;
            let bytes = response_bytes(r).await?;
            serde_json::from_slice::<Snapshot>(&bytes).map_err(|e| worker::Error::RustError(e.to_string()))
        };
        // Within a second, as `/health`: a node object that does not answer must not hang
        // the scrape; its figures are left out.
        let limit = worker::Delay::from(std::time::Duration::from_secs(1));
        asks.push(async move {
            match futures_util::future::select(Box::pin(ask), limit).await {
                futures_util::future::Either::Left((answer, _)) => answer,
                futures_util::future::Either::Right(_) => {
                    Err(worker::Error::RustError("no answer within 1 s".to_owned()))
                }
            }
        });
    }
    let mut total = Snapshot::default();
    for (k, answer) in futures_util::future::join_all(asks).await.into_iter().enumerate() {
        match answer {
            Ok(snapshot) => total.merge(&snapshot),
            Err(e) => tracing::error!("metrics: node-{k} did not answer: {e}"),
        }
    }
    let mut body = String::new();
    total.render(&mut body);
    let r = Response::ok(body)?;
    r.headers().set("content-type", "text/plain; version=0.0.4; charset=utf-8")?;
    Ok(r)
}
