//! Each life of a node object: the hub is built on the first event, and what the hub reports
//! as changed is stored (sockets' attachments, SQLite) so that a later life can rebuild the
//! sessions of the WebSockets the runtime kept while the object hibernated.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::rc::Rc;

use shared::hub::{Changes, Hub, NodeInfo, SessionId};
use shared::protocol::Disconnect;
use shared::Timestamp;
use worker::{wasm_bindgen_futures, Result, WebSocket};

use super::{NodeHost, Sink};
use crate::channel_store::Param;
use crate::host::sql::{int, text as sql_text};
use crate::host::{load_config, now, random_u64, sql_exec};
use crate::node_store::{self, Attachment, NodeWrite};

/// Channel positions are written at most this often: a busy channel costs one row write per
/// second per node, not one per publication.
const POSITION_FLUSH_MS: u64 = 1_000;

impl NodeHost {
    /// Builds the hub on the first event of this life of the object. No server pings on
    /// WebSockets (an idle object must be free to hibernate; the runtime watches the
    /// sockets), and the hub reports what to store so the next life can rebuild it.
    pub(super) fn ensure_hub(self: &Rc<Self>) -> std::result::Result<(), String> {
        if self.hub.borrow().is_some() {
            return Ok(());
        }
        let loaded = load_config(&self.env)?;
        let info = NodeInfo {
            id: self.id.clone(),
            name: format!("rotor-edge-{}", &self.id[..8.min(self.id.len())]),
            version: shared::VERSION.to_string(),
        };
        let now = now();
        let hub = Hub::new(loaded.config, info, random_u64(), now).map_err(|e| e.to_string())?;
        *self.hub.borrow_mut() = Some(hub.without_websocket_pings().tracking_snapshots());
        if let Err(e) = self.wake_up(now) {
            // Sockets that cannot be rebuilt must not linger unpinged: clients reconnect.
            tracing::error!("node wake-up: {e}");
            let d = Disconnect::shutdown();
            for ws in self.state.get_websockets() {
                let (code, reason) = d.websocket_close();
                let _ = ws.close(Some(code), Some(reason));
            }
        }
        Ok(())
    }

    /// Rebuilds the sessions of WebSockets an earlier life of this object accepted: the
    /// runtime kept the sockets and their attachments, SQLite the rest. Each session is
    /// connected again with its subscriptions re-made from the last positions this node
    /// received; what was published meanwhile reaches the client before anything newer.
    /// Sockets that never connected are closed with 3001 (reconnect).
    fn wake_up(self: &Rc<Self>, now: Timestamp) -> Result<()> {
        let sockets = self.state.get_websockets();
        self.ensure_schema()?;
        if sockets.is_empty() {
            // Rows an earlier life left (its sockets closed while it was away) go.
            return self.store(NodeWrite::DeleteAll);
        }
        let mut table = HashMap::new();
        for row in sql_exec(&self.state, node_store::READ_SESSIONS, vec![])?.raw() {
            let row = row?;
            table.insert(int(&row[0]), sql_text(&row[1]));
        }
        let mut rows = Vec::new();
        for row in sql_exec(&self.state, node_store::READ_POSITIONS, vec![])?.raw() {
            let row = row?;
            rows.push((sql_text(&row[0]), sql_text(&row[1]), int(&row[2])));
        }
        let positions = node_store::positions(rows);
        let mut channels = BTreeSet::new();
        let mut restored = HashSet::new();
        let mut next = self.next_session.get();
        for ws in sockets {
            let attachment = ws.deserialize_attachment::<Attachment>().ok().flatten().unwrap_or_default();
            next = next.max(attachment.session + 1);
            let Some(snapshot) = node_store::snapshot_of(&attachment, &table) else {
                let d = Disconnect::shutdown();
                let (code, reason) = d.websocket_close();
                let _ = ws.close(Some(code), Some(reason));
                continue;
            };
            let session = SessionId(attachment.session);
            restored.insert(session.0);
            channels.extend(snapshot.subs.iter().map(|s| s.ch.clone()));
            self.sinks.borrow_mut().insert(session, Sink::Socket { ws, binary: snapshot.t == "wsp" });
            self.with_hub(|hub| hub.handle_restore(session, snapshot, &positions, now));
        }
        self.next_session.set(next);
        // Rows of sessions and channels nothing holds any more go.
        for id in table.keys().filter(|id| !restored.contains(id)) {
            self.store(NodeWrite::DeleteSession(*id))?;
        }
        *self.in_table.borrow_mut() = table.into_keys().filter(|id| restored.contains(id)).collect();
        for channel in positions.keys().filter(|c| !channels.contains(*c)) {
            self.store(NodeWrite::DeletePosition(channel.clone()))?;
        }
        self.drain(now);
        Ok(())
    }

    /// A WebSocket closed or failed. The socket closing in the event that woke the object may
    /// be missing from the wake-up's `getWebSockets()`: its session is rebuilt from its
    /// attachment first, so that it leaves its channels (presence, leave) as any other does.
    pub(super) fn socket_gone(self: &Rc<Self>, ws: &WebSocket) -> Result<()> {
        self.ensure_hub().map_err(worker::Error::RustError)?;
        let Ok(Some(attachment)) = ws.deserialize_attachment::<Attachment>() else { return Ok(()) };
        let session = SessionId(attachment.session);
        let now = now();
        if self.with_hub(|hub| hub.transport(session)).flatten().is_none() {
            let mut table = HashMap::new();
            if attachment.in_table {
                let rows = sql_exec(&self.state, node_store::READ_SESSION, vec![Param::Int(session.0 as i64)]);
                for row in rows.into_iter().flat_map(|c| c.raw()).flatten() {
                    table.insert(session.0, sql_text(&row[0]));
                }
            }
            if let Some(snapshot) = node_store::snapshot_of(&attachment, &table) {
                self.with_hub(|hub| hub.handle_restore(session, snapshot, &BTreeMap::new(), now));
            }
        }
        self.closed(session, now);
        Ok(())
    }

    fn ensure_schema(&self) -> Result<()> {
        if !self.schema_ready.get() {
            for statement in node_store::SCHEMA {
                sql_exec(&self.state, statement, vec![])?;
            }
            self.schema_ready.set(true);
        }
        Ok(())
    }

    fn store(&self, write: NodeWrite) -> Result<()> {
        self.ensure_schema()?;
        for (query, params) in write.statements() {
            sql_exec(&self.state, query, params)?;
        }
        Ok(())
    }

    /// Writes what the hub says changed: snapshots to the sockets' attachments (or the
    /// `sessions` table) at once, positions to `positions` within [`POSITION_FLUSH_MS`]. The
    /// delay is safe: a pending timer keeps the object from hibernating until it fires.
    pub(super) fn persist(self: &Rc<Self>, changes: Changes) {
        let mut writes = Vec::new();
        for (session, snapshot) in changes.sessions {
            let in_table = self.in_table.borrow().contains(&session.0);
            let (attachment, write) = node_store::place(session.0, snapshot.as_ref(), in_table);
            if let Some(Sink::Socket { ws, .. }) = self.sinks.borrow().get(&session) {
                if let Err(e) = ws.serialize_attachment(&attachment) {
                    tracing::error!("attachment of session {}: {e}", session.0);
                }
            }
            match &write {
                Some(NodeWrite::UpsertSession { .. }) => self.in_table.borrow_mut().insert(session.0),
                Some(_) => self.in_table.borrow_mut().remove(&session.0),
                None => false,
            };
            writes.extend(write);
        }
        for write in writes {
            if let Err(e) = self.store(write) {
                tracing::error!("node storage: {e}");
            }
        }
        if changes.positions.is_empty() {
            return;
        }
        self.positions_due.borrow_mut().extend(changes.positions);
        if !self.flush_pending.replace(true) {
            let host = self.clone();
            wasm_bindgen_futures::spawn_local(async move {
                worker::Delay::from(std::time::Duration::from_millis(POSITION_FLUSH_MS)).await;
                host.flush_pending.set(false);
                let due = std::mem::take(&mut *host.positions_due.borrow_mut());
                for (channel, position) in due {
                    if let Err(e) = host.store(node_store::position_write(&channel, position.as_ref())) {
                        tracing::error!("node storage: {e}");
                    }
                }
            });
        }
    }
}
