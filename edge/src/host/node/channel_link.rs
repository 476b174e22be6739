//! The link to channel objects: the hub's broker requests go out in batches, one batch in
//! flight per channel so each channel object sees them in order; channel events (publications,
//! join/leave) come back in.

use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;

use prost::Message as _;
use shared::broker::{BrokerEvent, BrokerOp, BrokerRequest};
use shared::protocol::Error;
use worker::{wasm_bindgen_futures, Env, Request, Response, Result};

use super::NodeHost;
use crate::host::{internal_request, now, response_bytes, BROKER_PATH, CHANNELS};
use crate::wire::{self, EventAck, EventBatch, ReplyBatch, RequestBatch, WireRequest};

impl NodeHost {
    pub(super) fn enqueue(self: &Rc<Self>, request: BrokerRequest) {
        let channel = request.channel.clone();
        match &request.op {
            BrokerOp::Subscribe { .. } => {
                self.interest.borrow_mut().insert(channel.clone());
            }
            BrokerOp::Unsubscribe { .. } => {
                self.interest.borrow_mut().remove(&channel);
            }
            _ => {}
        }
        let start = self.to_channels.borrow_mut().push(&channel, request);
        if start {
            let host = self.clone();
            wasm_bindgen_futures::spawn_local(async move { host.pump(channel).await });
        }
    }

    /// Sends a channel's queued requests, one batch at a time so the channel object sees
    /// them in order, until the queue is empty.
    async fn pump(self: Rc<Self>, channel: String) {
        loop {
            let Some(batch) = self.to_channels.borrow_mut().take(&channel) else { return };
            let result = call_channel(&self.env, &channel, &batch).await;
            let now = now();
            let mut answered = HashSet::new();
            match result {
                Ok(replies) => {
                    for reply in replies.replies {
                        answered.insert(reply.id);
                        let event = wire::reply_from(reply);
                        self.with_hub(|hub| hub.handle_broker(event, now));
                    }
                }
                Err(e) => tracing::error!("channel {channel}: {e}"),
            }
            for request in &batch {
                if !answered.contains(&request.id.0) {
                    let event = BrokerEvent::Reply { id: request.id, result: Err(Error::internal()) };
                    self.with_hub(|hub| hub.handle_broker(event, now));
                }
            }
            self.drain(now);
        }
    }

    // ---- channel events: channel objects → node

    pub(super) async fn events(self: &Rc<Self>, mut req: Request) -> Result<Response> {
        let body = req.bytes().await?;
        let batch = EventBatch::decode(body.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))?;
        let interested = self.interest.borrow().contains(&batch.channel);
        if interested {
            let now = now();
            let channel: Arc<str> = Arc::from(batch.channel.as_str());
            for event in batch.events {
                if let Some(event) = wire::event_from(&channel, event) {
                    self.with_hub(|hub| hub.handle_broker(event, now));
                }
            }
            self.drain(now);
        }
        Response::from_bytes(EventAck { interested }.encode_to_vec())
    }
}

async fn call_channel(env: &Env, channel: &str, batch: &[BrokerRequest]) -> Result<ReplyBatch> {
    let body = RequestBatch { requests: batch.iter().map(WireRequest::from).collect() }.encode_to_vec();
    let stub = env.durable_object(CHANNELS)?.id_from_name(channel)?.get_stub()?;
    let response = stub.fetch_with_request(internal_request(BROKER_PATH, body)?).await?;
    let bytes = response_bytes(response).await?;
    ReplyBatch::decode(bytes.as_slice()).map_err(|e| worker::Error::RustError(e.to_string()))
}
