//! The server HTTP API at the edge (`POST /api/<method>` and the legacy `POST /api`), run by
//! the Worker.
//!
//! It runs a short-lived [`Hub`] per request, in the Worker: the hub checks and shapes the
//! command exactly as natively, its broker requests go straight to the channel objects, and
//! no node object is woken for a publish. Commands about connections go to every node object
//! and their answers merge ([`crate::api_route`]).

use std::sync::Arc;

use prost::Message as _;
use serde_json::Value;
use shared::api::{self, ApiCommand, ApiId};
use shared::broker::BrokerEvent;
use shared::http::ApiCall;
use shared::hub::{Hub, NodeInfo, Output};
use shared::protocol::Error;
use worker::{Env, Request, Response, Result};

use super::http::{self, read_body, text};
use super::{
    internal_request, now, random_u64, response_bytes, Loaded, BROKER_PATH, CHANNELS, CONNECTION_API_PATH, NODES,
};
use crate::api_route::{from_envelope, merge_results, node_route, Merge};
use crate::wire::{self, ReplyBatch, RequestBatch, WireRequest};

/// Runs an API call the endpoint layer authorized.
pub async fn serve(mut req: Request, env: &Env, loaded: &Loaded, call: ApiCall) -> Result<Response> {
    let body = match read_body(&mut req, call.body).await {
        Ok(b) => b,
        Err(a) => return http::answer(a),
    };
    let mut runner = ApiRunner::new(loaded, env)?;
    let (method, transport_errors) = (call.method, call.transport_errors);
    if method.is_empty() {
        return runner.legacy(&body).await;
    }
    let command = match api::parse(&method, &body) {
        Ok(Some(command)) => command,
        Ok(None) => return answer("", Err(api::not_found()), transport_errors),
        Err(e) => return text(400, &e.0),
    };
    let result = runner.execute(&method, &body, command).await;
    answer(&method, result, transport_errors)
}

/// Runs one parsed API command as `POST /api/<method>` would (the admin API's calls).
pub async fn run(
    env: &Env,
    loaded: &Loaded,
    method: &str,
    params: &[u8],
    command: ApiCommand,
) -> Result<std::result::Result<Value, Error>> {
    Ok(ApiRunner::new(loaded, env)?.execute(method, params, command).await)
}

fn answer(method: &str, result: std::result::Result<Value, Error>, transport_errors: bool) -> Result<Response> {
    if let Err(e) = &result {
        tracing::info!(method, code = e.code, message = %e.message, "api error");
    }
    let (status, body) = api::http_answer(method, &result, transport_errors);
    http::json(status, body.to_string())
}

/// A hub for one API request, driven to completion: its broker requests go to channel
/// objects and their replies come back in. Commands about connections go to the node objects.
struct ApiRunner {
    hub: Hub,
    channel_objects: worker::ObjectNamespace,
    node_objects: worker::ObjectNamespace,
    node_count: u32,
    next: u64,
}

impl ApiRunner {
    fn new(loaded: &Loaded, env: &Env) -> Result<Self> {
        let info =
            NodeInfo { id: Arc::from("api"), name: "rotor-edge-api".into(), version: shared::VERSION.to_string() };
        let hub = Hub::new(loaded.config.clone(), info, random_u64(), now())
            .map_err(|e| worker::Error::RustError(e.to_string()))?;
        Ok(ApiRunner {
            hub,
            channel_objects: env.durable_object(CHANNELS)?,
            node_objects: env.durable_object(NODES)?,
            node_count: loaded.edge.node_count,
            next: 1,
        })
    }

    /// Runs `command` (parsed from `params` of `method`) where it belongs.
    async fn execute(&mut self, method: &str, params: &[u8], command: ApiCommand) -> std::result::Result<Value, Error> {
        match command {
            ApiCommand::Batch(batch) if batch.commands.iter().flatten().any(|c| node_route(c).is_some()) => {
                Ok(self.batch(batch).await)
            }
            command => match node_route(&command) {
                Some(merge) => self.on_nodes(method, params, merge).await,
                None => self.run(command).await,
            },
        }
    }

    /// A batch holding commands about connections: each command runs where it belongs (on
    /// every node object, or in this hub), one after another, with the replies in order.
    /// (`parallel` only changes timing; here the parts always run in sequence.)
    async fn batch(&mut self, batch: api::BatchRequest) -> Value {
        let methods = batch.methods();
        let mut results = Vec::with_capacity(methods.len());
        for (command, source) in batch.commands.into_iter().zip(batch.sources) {
            results.push(match (command, source) {
                (Some(command), Some((method, params))) => match node_route(&command) {
                    Some(merge) => self.on_nodes(&method, params.as_bytes(), merge).await,
                    None => self.run(command).await,
                },
                _ => Err(api::not_found()),
            });
        }
        api::batch_value(&methods, results)
    }

    async fn on_nodes(&self, method: &str, params: &[u8], merge: Merge) -> std::result::Result<Value, Error> {
        let calls = (0..self.node_count).map(|k| self.call_node(k, method, params));
        let answers = futures_util::future::join_all(calls).await;
        let mut results = Vec::with_capacity(answers.len());
        for answer in answers {
            match answer {
                Ok(r) => results.push(r),
                Err(e) => {
                    tracing::error!("api {method} on a node: {e}");
                    results.push(Err(Error::internal()));
                }
            }
        }
        merge_results(merge, results)
    }

    async fn call_node(&self, k: u32, method: &str, params: &[u8]) -> Result<std::result::Result<Value, Error>> {
        let stub = self.node_objects.id_from_name(&format!("node-{k}"))?.get_stub()?;
        let path = format!("{CONNECTION_API_PATH}?method={}", method.to_ascii_lowercase());
        let response = stub.fetch_with_request(internal_request(&path, params.to_vec())?).await?;
        let bytes = response_bytes(response).await?;
        let envelope: Value = serde_json::from_slice(&bytes).map_err(|e| worker::Error::RustError(e.to_string()))?;
        Ok(from_envelope(envelope))
    }

    async fn run(&mut self, command: ApiCommand) -> std::result::Result<Value, Error> {
        let id = ApiId(self.next);
        self.next += 1;
        self.hub.handle_api(id, command, now());
        loop {
            let mut requests = Vec::new();
            while let Some(output) = self.hub.poll_output() {
                match output {
                    Output::Api { id: got, result } if got == id => return result,
                    Output::Broker(request) => requests.push(request),
                    _ => {}
                }
            }
            if requests.is_empty() {
                return Err(Error::internal());
            }
            for request in requests {
                let channel = request.channel.clone();
                let body = RequestBatch { requests: vec![WireRequest::from(&request)] }.encode_to_vec();
                let replies = self.call(&channel, body).await;
                let now = now();
                match replies {
                    Ok(batch) if !batch.replies.is_empty() => {
                        for reply in batch.replies {
                            self.hub.handle_broker(wire::reply_from(reply), now);
                        }
                    }
                    other => {
                        if let Err(e) = other {
                            tracing::error!("api: channel {channel}: {e}");
                        }
                        let event = BrokerEvent::Reply { id: request.id, result: Err(Error::internal()) };
                        self.hub.handle_broker(event, now);
                    }
                }
            }
        }
    }

    async fn call(&self, channel: &str, body: Vec<u8>) -> Result<ReplyBatch> {
        let stub = self.channel_objects.id_from_name(channel)?.get_stub()?;
        let response = stub.fetch_with_request(internal_request(BROKER_PATH, body)?).await?;
        let bytes = response_bytes(response).await?;
        ReplyBatch::decode(bytes.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))
    }

    /// `POST /api` with newline-separated `{"method":…,"params":…}` commands; answers are
    /// newline-joined in the same order.
    async fn legacy(&mut self, body: &[u8]) -> Result<Response> {
        let commands = match api::parse_legacy(body) {
            Ok(c) => c,
            Err(e) => return text(400, &e.0),
        };
        let mut lines = Vec::with_capacity(commands.len());
        for command in commands {
            let result = match command.method_name() {
                None => Err(Error::new(api::METHOD_NOT_FOUND, "not found")),
                Some(name) => match api::parse(&name, command.params()) {
                    Ok(Some(parsed)) => self.execute(&name, command.params(), parsed).await,
                    Ok(None) => Err(Error::new(api::METHOD_NOT_FOUND, "not found")),
                    Err(_) => Err(Error::bad_request()),
                },
            };
            let mut line = api::envelope(&result);
            if !command.id.is_null() {
                line["id"] = command.id.clone();
            }
            lines.push(line.to_string());
        }
        http::json(200, lines.join("\n"))
    }
}
