//! What a node object keeps so that its WebSocket sessions outlive the object's memory.
//!
//! The runtime evicts a node object that holds only hibernatable WebSockets once it is idle;
//! the sockets stay open, the hub goes. What the hub needs to rebuild them (see
//! [`shared::hub::SessionSnapshot`]) is kept as it changes, which is only on connect,
//! subscribe, unsubscribe and refresh, never per publication:
//!
//! - per socket, its [`Attachment`]: the session id and, when it fits, the snapshot itself;
//!   a larger snapshot (many channels, big `info`) goes to the `sessions` table;
//! - per channel, the last stream position this node received (`positions`), written when a
//!   publication or a subscribe reply moves it.
//!
//! Pure: the host runs the statements and reads the rows.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};
use shared::hub::SessionSnapshot;
use shared::protocol::StreamPosition;

use crate::channel_store::Param;

/// Tables of a node object.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS sessions (id INTEGER PRIMARY KEY, snapshot TEXT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS positions (channel TEXT PRIMARY KEY, epoch TEXT NOT NULL, top INTEGER NOT NULL)",
];

pub const READ_SESSIONS: &str = "SELECT id, snapshot FROM sessions";
pub const READ_SESSION: &str = "SELECT snapshot FROM sessions WHERE id = ?";
pub const READ_POSITIONS: &str = "SELECT channel, epoch, top FROM positions";

/// The runtime keeps at most 2,048 bytes per attachment; snapshots up to this many bytes of
/// JSON ride in it, with room to spare for the rest of the attachment.
pub const ATTACHMENT_SNAPSHOT_MAX: usize = 1536;

/// What a WebSocket carries through the object's eviction.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Attachment {
    /// The session's id in the hub (kept across lives of the object).
    pub session: u64,
    /// The session snapshot as JSON; None before connect, or when it is in `sessions`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    /// The snapshot is in the `sessions` table (too big for the attachment).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub in_table: bool,
}

/// One statement to run, with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum NodeWrite {
    UpsertSession {
        id: u64,
        snapshot: String,
    },
    DeleteSession(u64),
    UpsertPosition {
        channel: String,
        epoch: String,
        top: u64,
    },
    DeletePosition(String),
    /// A life that starts with no WebSockets needs none of the rows.
    DeleteAll,
}

impl NodeWrite {
    pub fn statements(&self) -> Vec<(&'static str, Vec<Param>)> {
        use Param::*;
        match self {
            NodeWrite::UpsertSession { id, snapshot } => vec![(
                "INSERT OR REPLACE INTO sessions (id, snapshot) VALUES (?, ?)",
                vec![Int(*id as i64), Text(snapshot.clone())],
            )],
            NodeWrite::DeleteSession(id) => vec![("DELETE FROM sessions WHERE id = ?", vec![Int(*id as i64)])],
            NodeWrite::UpsertPosition { channel, epoch, top } => vec![(
                "INSERT OR REPLACE INTO positions (channel, epoch, top) VALUES (?, ?, ?)",
                vec![Text(channel.clone()), Text(epoch.clone()), Int(*top as i64)],
            )],
            NodeWrite::DeletePosition(channel) => {
                vec![("DELETE FROM positions WHERE channel = ?", vec![Text(channel.clone())])]
            }
            NodeWrite::DeleteAll => vec![("DELETE FROM sessions", vec![]), ("DELETE FROM positions", vec![])],
        }
    }
}

/// Where a session's new snapshot goes: the socket's attachment, plus a write when the
/// `sessions` table must hold it or let go of it (`in_table`: it holds an older one now).
pub fn place(session: u64, snapshot: Option<&SessionSnapshot>, in_table: bool) -> (Attachment, Option<NodeWrite>) {
    let json = snapshot.and_then(|s| serde_json::to_string(s).ok());
    match json {
        Some(json) if json.len() > ATTACHMENT_SNAPSHOT_MAX => (
            Attachment { session, snapshot: None, in_table: true },
            Some(NodeWrite::UpsertSession { id: session, snapshot: json }),
        ),
        json => (
            Attachment { session, snapshot: json, in_table: false },
            in_table.then_some(NodeWrite::DeleteSession(session)),
        ),
    }
}

/// The write for a channel's moved position (None: the node left the channel).
pub fn position_write(channel: &str, position: Option<&StreamPosition>) -> NodeWrite {
    match position {
        Some(p) => NodeWrite::UpsertPosition { channel: channel.to_owned(), epoch: p.epoch.clone(), top: p.offset },
        None => NodeWrite::DeletePosition(channel.to_owned()),
    }
}

/// A socket's snapshot after a wake-up, from its attachment or, when the attachment says so,
/// the `sessions` table (None: the session never connected, or what is stored does not decode).
pub fn snapshot_of(attachment: &Attachment, table: &HashMap<u64, String>) -> Option<SessionSnapshot> {
    let json = match &attachment.snapshot {
        Some(json) => json,
        None if attachment.in_table => table.get(&attachment.session)?,
        None => return None,
    };
    serde_json::from_str(json).ok()
}

/// Positions from their rows (channel, epoch, top).
pub fn positions(rows: impl IntoIterator<Item = (String, String, u64)>) -> BTreeMap<String, StreamPosition> {
    rows.into_iter().map(|(channel, epoch, top)| (channel, StreamPosition { offset: top, epoch })).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use shared::hub::SubscriptionSnapshot;

    fn snapshot(channels: usize) -> SessionSnapshot {
        SessionSnapshot {
            t: "ws".into(),
            client: "5de9bc1b-b4cb-4a9f-9cf9-91a32230d014".into(),
            token: "tok".into(),
            user: "42".into(),
            info: String::new(),
            exp: Some(1_800_000_000_000),
            subs: (0..channels)
                .map(|i| SubscriptionSnapshot { ch: format!("chat:room-{i}"), f: 2, info: String::new(), exp: None })
                .collect(),
            px: None,
        }
    }

    #[test]
    fn small_snapshots_ride_in_the_attachment_and_large_ones_in_the_table() {
        let small = snapshot(3);
        let (a, write) = place(7, Some(&small), false);
        assert_eq!(write, None);
        assert_eq!(snapshot_of(&a, &HashMap::new()), Some(small.clone()));
        // The attachment as the runtime stores it stays far below its 2,048-byte limit.
        assert!(serde_json::to_string(&a).unwrap().len() < 2048);

        let large = snapshot(60);
        let (a, write) = place(7, Some(&large), false);
        assert_eq!(a, Attachment { session: 7, snapshot: None, in_table: true });
        let Some(NodeWrite::UpsertSession { id: 7, snapshot: json }) = write else { panic!("{write:?}") };
        let table = HashMap::from([(7, json)]);
        assert_eq!(snapshot_of(&a, &table), Some(large));
        // A socket that never connected is not taken for the row's session.
        assert_eq!(snapshot_of(&Attachment { session: 7, snapshot: None, in_table: false }, &table), None);

        // Shrinking back below the limit frees the row.
        let (a, write) = place(7, Some(&small), true);
        assert_eq!(write, Some(NodeWrite::DeleteSession(7)));
        assert!(a.snapshot.is_some());
        // A session that is gone, or never connected: nothing to restore.
        let (a, write) = place(7, None, true);
        assert_eq!((a.snapshot, write), (None, Some(NodeWrite::DeleteSession(7))));
        assert_eq!(snapshot_of(&Attachment { session: 8, ..Default::default() }, &HashMap::new()), None);
    }

    #[test]
    fn positions_round_trip_through_their_rows() {
        let p = StreamPosition { offset: 12, epoch: "abcd".into() };
        let NodeWrite::UpsertPosition { channel, epoch, top } = position_write("news", Some(&p)) else { panic!() };
        assert_eq!(positions([(channel, epoch, top)])["news"], p);
        assert_eq!(position_write("news", None), NodeWrite::DeletePosition("news".into()));
        assert_eq!(NodeWrite::DeleteAll.statements().len(), 2);
    }

    #[test]
    fn older_attachments_without_a_snapshot_still_decode() {
        let a: Attachment = serde_json::from_str(r#"{"incarnation": 5, "session": 3}"#).unwrap();
        assert_eq!(a, Attachment { session: 3, ..Default::default() });
    }
}
