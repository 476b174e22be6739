//! Carrying out the hub's outputs: writes to transports, closes, broker requests, API
//! answers; then the changes to store and the one alarm.

use std::rc::Rc;

use bytes::Bytes;
use shared::hub::{Output, SessionId};
use shared::Timestamp;
use worker::{wasm_bindgen, wasm_bindgen_futures};

use super::{NodeHost, Sink};
use crate::node_store::Attachment;

/// What became of a write.
enum Written {
    /// Taken; the transport now holds this many bytes the client has not read (streams
    /// only: WebSockets buffer inside the runtime, which does not say).
    Done(usize),
    /// The transport is gone.
    Gone,
}

impl NodeHost {
    /// The transport went away (peer closed, write failed).
    pub(super) fn closed(self: &Rc<Self>, session: SessionId, now: Timestamp) {
        self.sinks.borrow_mut().remove(&session);
        self.with_hub(|hub| hub.handle_closed(session, now));
        self.drain(now);
    }

    /// Carries out every output of the hub, in order, then re-arms the alarm if the hub's
    /// next deadline moved.
    pub(super) fn drain(self: &Rc<Self>, now: Timestamp) {
        loop {
            let Some(output) = self.with_hub(|hub| hub.poll_output()).flatten() else { break };
            match output {
                Output::Send { session, data } | Output::Ping { session, data } => match self.write(session, data) {
                    Written::Done(queued) => {
                        self.with_hub(|hub| hub.handle_backlog(session, queued, now));
                    }
                    Written::Gone => {
                        self.sinks.borrow_mut().remove(&session);
                        self.with_hub(|hub| hub.handle_closed(session, now));
                    }
                },
                Output::Close { session, disconnect } => {
                    match self.sinks.borrow_mut().remove(&session) {
                        Some(Sink::Socket { ws, .. }) => {
                            // Forget the session in the socket first: a wake-up during the
                            // close handshake must not bring it back.
                            let _ = ws.serialize_attachment(Attachment { session: session.0, ..Default::default() });
                            let (code, reason) = disconnect.websocket_close();
                            let _ = ws.close(Some(code), Some(reason));
                        }
                        // Dropping a stream's sender ends the response body after what it
                        // holds. A moment later, not at once: a client that gets the last
                        // push and the end of the body together may take the end first and
                        // miss the disconnect code in the push (centrifuge-js over SSE does).
                        Some(Sink::Stream { tx, .. }) => wasm_bindgen_futures::spawn_local(async move {
                            worker::Delay::from(std::time::Duration::from_millis(shared::http::STREAM_END_LINGER_MS))
                                .await;
                            drop(tx);
                        }),
                        None => {}
                    }
                }
                Output::Broker(request) => self.enqueue(request),
                Output::Api { id, result } => {
                    if let Some(waiter) = self.api_waiters.borrow_mut().remove(&id) {
                        let _ = waiter.send(result);
                    }
                }
                Output::Proxy(request) => self.proxy(request),
                Output::ProxyFailed { kind, endpoint, cause } => {
                    tracing::warn!(proxy = kind.name(), %endpoint, %cause, "{} proxy call to {endpoint} failed: {cause}", kind.name());
                }
            }
        }
        if let Some(changes) = self.with_hub(|hub| hub.take_changes()).flatten() {
            self.persist(changes);
        }
        self.rearm();
    }

    /// Writes to a session's transport.
    fn write(&self, session: SessionId, data: Bytes) -> Written {
        let sinks = self.sinks.borrow();
        let mut backlog = 0;
        let sent = match sinks.get(&session) {
            Some(Sink::Stream { tx, queued }) => {
                backlog = queued.get().saturating_add(data.len());
                queued.set(backlog);
                tx.unbounded_send(data.to_vec()).is_ok()
            }
            Some(Sink::Socket { ws, binary: true }) => ws.send_with_bytes(&data).is_ok(),
            Some(Sink::Socket { ws, binary: false }) => match std::str::from_utf8(&data) {
                Ok(t) => ws.send_with_str(t).is_ok(),
                Err(_) => true, // the hub never sends non-UTF-8 to JSON clients
            },
            None => true, // not ours (closed already); the hub learns through handle_closed
        };
        if sent {
            Written::Done(backlog)
        } else {
            Written::Gone
        }
    }

    fn rearm(&self) {
        let next = self.with_hub(|hub| hub.poll_timeout()).flatten();
        if self.alarm_known.get() && next == self.alarm.get() {
            return;
        }
        self.alarm.set(next);
        self.alarm_known.set(true);
        let storage = self.state.storage();
        wasm_bindgen_futures::spawn_local(async move {
            let result = match next {
                Some(at) => {
                    let date = js_sys::Date::new(&wasm_bindgen::JsValue::from(at.as_millis() as f64));
                    storage.set_alarm(worker::ScheduledTime::new(date)).await
                }
                None => storage.delete_alarm().await,
            };
            if let Err(e) = result {
                worker::console_error!("rotor: node alarm: {e}");
            }
        });
    }
}
