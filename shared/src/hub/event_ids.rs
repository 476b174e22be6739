//! Uni SSE: stream positions in event ids, and resuming from `Last-Event-ID`.

use bytes::{BufMut, Bytes, BytesMut};

use super::session::Session;
use super::{Hub, Output, SessionId};
use crate::protocol::event_id::{self, Position};
use crate::protocol::StreamPosition;

impl Hub {
    /// The id for a session's next event: every recoverable channel's position.
    pub(crate) fn event_id(&self, s: &Session) -> Option<String> {
        let recoverable = s.subs.iter().filter(|(_, sub)| sub.recoverable);
        let digest = event_id::channels_digest(recoverable.clone().map(|(name, _)| &**name));
        let positions: Vec<Position> =
            recoverable.map(|(_, sub)| Position { offset: sub.offset, epoch: sub.epoch.to_string() }).collect();
        event_id::encode(&self.event_id_key, digest, &positions)
    }

    /// An SSE frame with the session's current event id in front.
    pub(crate) fn with_event_id(&self, s: &Session, frame: &Bytes) -> Bytes {
        match self.event_id(s) {
            Some(id) => {
                let mut out = BytesMut::with_capacity(id.len() + 5 + frame.len());
                out.put_slice(b"id: ");
                out.put_slice(id.as_bytes());
                out.put_u8(b'\n');
                out.put_slice(frame);
                out.freeze()
            }
            None => frame.clone(),
        }
    }

    /// Recovery positions from a `Last-Event-ID`, for the recoverable channels (in name order)
    /// a connect is about to subscribe. On a bad id the client gets an `resume_error` event
    /// and subscribes without recovery.
    pub(crate) fn positions_from_event_id(
        &mut self,
        session: SessionId,
        recoverable: &[&str],
    ) -> Option<Vec<StreamPosition>> {
        let s = self.sessions.get_mut(&session)?;
        let id = s.last_event_id.take()?;
        let digest = event_id::channels_digest(recoverable.iter().copied());
        match event_id::decode(&self.event_id_key, digest, &id) {
            Ok(positions) if positions.len() == recoverable.len() => {
                s.resuming = true;
                Some(positions.into_iter().map(|p| StreamPosition { offset: p.offset, epoch: p.epoch }).collect())
            }
            Ok(_) => self.resume_error(session, "event id does not match this connection's channels"),
            Err(e) => self.resume_error(session, &e.to_string()),
        }
    }

    fn resume_error(&mut self, session: SessionId, why: &str) -> Option<Vec<StreamPosition>> {
        let body = serde_json::json!({
            "code": 107,
            "message": format!("Last-Event-ID not used: {why}; subscribing without recovery"),
        });
        let data = Bytes::from(format!("event: resume_error\ndata: {body}\n\n"));
        self.outputs.push_back(Output::Send { session, data });
        None
    }
}
