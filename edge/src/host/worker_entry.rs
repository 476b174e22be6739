//! The Worker's fetch handler: asks the endpoint layer what a request is, then forwards it:
//! client connections to a node object, emulation requests to the node named in them, API
//! calls to [`super::http_api`]. It keeps no state.

use prost::Message as _;
use shared::http::{Answer, Decision, EmulationCall};
use worker::{event, Context, Env, Request, Response, Result};

use super::http::{self, read_body, text};
use super::{admin, http_api, internal_request, load_config, random_u64, EMULATION_PATH, NODES};

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
        Decision::Health => text(200, "{}")?,
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
