//! How a channel object keeps its broker state in SQLite: the schema, the rows, and the
//! smallest set of writes that brings the tables in line with a fresh
//! [`ChannelSnapshot`]. Pure: the host runs the statements.
//!
//! After every request the channel object takes a snapshot and writes only the difference
//! from what it last wrote ([`Persisted`]): a publish costs one row insert, one top update
//! and the deletion of what fell out of the history window.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use prost::Message;
use shared::broker::{ChannelSnapshot, StreamSnapshot};
use shared::protocol::{ClientInfo, Publication, StreamPosition};
use shared::Timestamp;

/// Tables of a channel object (one channel per object). `channel` has at most one row.
pub const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS channel (k INTEGER PRIMARY KEY CHECK (k = 0), name TEXT NOT NULL, \
     epoch TEXT, top INTEGER NOT NULL DEFAULT 0, meta_expires_at INTEGER NOT NULL DEFAULT 0)",
    "CREATE TABLE IF NOT EXISTS publications (seq INTEGER PRIMARY KEY, data BLOB NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS presence (client TEXT PRIMARY KEY, info BLOB NOT NULL, expires_at INTEGER NOT NULL)",
    "CREATE TABLE IF NOT EXISTS nodes (node TEXT PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS idempotency (key TEXT PRIMARY KEY, epoch TEXT NOT NULL, top INTEGER NOT NULL, \
     expires_at INTEGER NOT NULL)",
];

/// One statement to run, with its parameters.
#[derive(Clone, Debug, PartialEq)]
pub enum Write {
    /// The channel row: its name and stream (epoch `None`: no stream).
    Channel {
        name: String,
        epoch: Option<String>,
        top: u64,
        meta_expires_at: u64,
    },
    DeletePublicationsBelow(u64),
    DeleteAllPublications,
    InsertPublication {
        offset: u64,
        data: Vec<u8>,
        expires_at: u64,
    },
    UpsertPresence {
        client: String,
        info: Vec<u8>,
        expires_at: u64,
    },
    DeletePresence {
        client: String,
    },
    InsertNode(String),
    DeleteNode(String),
    /// An idempotency key with the position its publish answered.
    UpsertIdempotency {
        key: String,
        epoch: String,
        offset: u64,
        expires_at: u64,
    },
    DeleteIdempotency(String),
}

impl Write {
    /// The SQL text and its parameters (integers as i64: SQLite's and JavaScript's safe range).
    pub fn statement(&self) -> (&'static str, Vec<Param>) {
        use Param::*;
        match self {
            Write::Channel { name, epoch, top, meta_expires_at } => (
                "INSERT INTO channel (k, name, epoch, top, meta_expires_at) VALUES (0, ?, ?, ?, ?) \
                 ON CONFLICT (k) DO UPDATE SET name = excluded.name, epoch = excluded.epoch, top = excluded.top, \
                 meta_expires_at = excluded.meta_expires_at",
                vec![
                    Text(name.clone()),
                    epoch.clone().map(Text).unwrap_or(Null),
                    Int(*top as i64),
                    Int(*meta_expires_at as i64),
                ],
            ),
            Write::DeletePublicationsBelow(offset) => {
                ("DELETE FROM publications WHERE seq < ?", vec![Int(*offset as i64)])
            }
            Write::DeleteAllPublications => ("DELETE FROM publications", vec![]),
            Write::InsertPublication { offset, data, expires_at } => (
                "INSERT OR REPLACE INTO publications (seq, data, expires_at) VALUES (?, ?, ?)",
                vec![Int(*offset as i64), Blob(data.clone()), Int(*expires_at as i64)],
            ),
            Write::UpsertPresence { client, info, expires_at } => (
                "INSERT OR REPLACE INTO presence (client, info, expires_at) VALUES (?, ?, ?)",
                vec![Text(client.clone()), Blob(info.clone()), Int(*expires_at as i64)],
            ),
            Write::DeletePresence { client } => ("DELETE FROM presence WHERE client = ?", vec![Text(client.clone())]),
            Write::InsertNode(node) => ("INSERT OR IGNORE INTO nodes (node) VALUES (?)", vec![Text(node.clone())]),
            Write::DeleteNode(node) => ("DELETE FROM nodes WHERE node = ?", vec![Text(node.clone())]),
            Write::UpsertIdempotency { key, epoch, offset, expires_at } => (
                "INSERT OR REPLACE INTO idempotency (key, epoch, top, expires_at) VALUES (?, ?, ?, ?)",
                vec![Text(key.clone()), Text(epoch.clone()), Int(*offset as i64), Int(*expires_at as i64)],
            ),
            Write::DeleteIdempotency(key) => ("DELETE FROM idempotency WHERE key = ?", vec![Text(key.clone())]),
        }
    }
}

/// A statement parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum Param {
    Null,
    Int(i64),
    Text(String),
    Blob(Vec<u8>),
}

/// Queries that read the tables back, in the order [`Rows`] wants them.
pub const READ_CHANNEL: &str = "SELECT name, epoch, top, meta_expires_at FROM channel WHERE k = 0";
pub const READ_PUBLICATIONS: &str = "SELECT seq, data, expires_at FROM publications ORDER BY seq";
pub const READ_PRESENCE: &str = "SELECT client, info, expires_at FROM presence ORDER BY client";
pub const READ_NODES: &str = "SELECT node FROM nodes ORDER BY node";
pub const READ_IDEMPOTENCY: &str = "SELECT key, epoch, top, expires_at FROM idempotency ORDER BY key";

/// The stored rows of a channel object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rows {
    /// name, epoch, top, meta_expires_at
    pub channel: Option<(String, Option<String>, u64, u64)>,
    /// offset, encoded publication, expires_at
    pub publications: Vec<(u64, Vec<u8>, u64)>,
    /// client, encoded ClientInfo, expires_at
    pub presence: Vec<(String, Vec<u8>, u64)>,
    pub nodes: Vec<String>,
    /// key, epoch, offset, expires_at
    pub idempotency: Vec<(String, String, u64, u64)>,
}

/// What the tables hold, as last written: the base of the next diff.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Persisted {
    name: Option<String>,
    stream: Option<(String, u64, u64)>,
    /// Offsets of stored publications.
    offsets: BTreeSet<u64>,
    presence: BTreeMap<String, (ClientInfo, Timestamp)>,
    nodes: BTreeSet<String>,
    idempotent: BTreeMap<String, (StreamPosition, Timestamp)>,
}

impl Persisted {
    /// The channel name stored with the state, if any (an object woken by an alarm learns
    /// its channel here).
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }
}

/// Decodes stored rows into a snapshot for [`shared::broker::Broker::restore`], plus the
/// mirror of what is stored. Rows that do not decode are skipped (and rewritten or deleted
/// by the next diff).
pub fn load(rows: Rows) -> (ChannelSnapshot, Persisted) {
    let mut persisted = Persisted::default();
    let mut snapshot = ChannelSnapshot::default();
    if let Some((name, epoch, top, meta_expires_at)) = rows.channel {
        persisted.name = Some(name);
        if let Some(epoch) = epoch {
            let entries: Vec<(Arc<Publication>, Timestamp)> = rows
                .publications
                .iter()
                .filter_map(|(offset, data, expires)| {
                    let mut p = Publication::decode(data.as_slice()).ok()?;
                    p.offset = *offset;
                    Some((Arc::new(p), Timestamp(*expires)))
                })
                .collect();
            persisted.stream = Some((epoch.clone(), top, meta_expires_at));
            snapshot.stream = Some(StreamSnapshot {
                epoch: Arc::from(epoch),
                top,
                meta_expires_at: Timestamp(meta_expires_at),
                entries,
            });
        }
    }
    // Every stored publication row counts as stored, decodable or not, so a diff can delete it.
    persisted.offsets = rows.publications.iter().map(|(offset, _, _)| *offset).collect();
    for (client, info, expires) in rows.presence {
        if let Ok(info) = ClientInfo::decode(info.as_slice()) {
            persisted.presence.insert(client, (info.clone(), Timestamp(expires)));
            snapshot.presence.push((info, Timestamp(expires)));
        }
    }
    persisted.nodes = rows.nodes.iter().cloned().collect();
    snapshot.nodes = rows.nodes.into_iter().map(Arc::from).collect();
    for (key, epoch, offset, expires) in rows.idempotency {
        let position = StreamPosition { offset, epoch };
        persisted.idempotent.insert(key.clone(), (position.clone(), Timestamp(expires)));
        snapshot.idempotent.push((key, position, Timestamp(expires)));
    }
    (snapshot, persisted)
}

/// The writes that make the tables hold `snapshot` (of channel `name`), and the mirror
/// updated to match.
pub fn diff(persisted: &mut Persisted, name: &str, snapshot: &ChannelSnapshot) -> Vec<Write> {
    let mut writes = Vec::new();
    let stream = snapshot.stream.as_ref().map(|s| (s.epoch.to_string(), s.top, s.meta_expires_at.0));
    if persisted.name.as_deref() != Some(name) || persisted.stream != stream {
        let (epoch, top, meta_expires_at) = match &stream {
            Some((e, t, m)) => (Some(e.clone()), *t, *m),
            None => (None, 0, 0),
        };
        writes.push(Write::Channel { name: name.to_owned(), epoch, top, meta_expires_at });
    }
    // Publications: a new epoch (or no stream) starts over; otherwise drop what fell out of
    // the window and add what is new.
    let same_epoch = matches!((&persisted.stream, &stream), (Some(a), Some(b)) if a.0 == b.0);
    let entries: &[(Arc<Publication>, Timestamp)] =
        snapshot.stream.as_ref().map(|s| s.entries.as_slice()).unwrap_or(&[]);
    let first = entries.first().map(|(p, _)| p.offset);
    if !persisted.offsets.is_empty() {
        match first {
            Some(first) if same_epoch => {
                if persisted.offsets.first().is_some_and(|o| *o < first) {
                    writes.push(Write::DeletePublicationsBelow(first));
                    persisted.offsets = persisted.offsets.split_off(&first);
                }
            }
            _ => {
                writes.push(Write::DeleteAllPublications);
                persisted.offsets.clear();
            }
        }
    }
    for (publication, expires) in entries {
        if persisted.offsets.contains(&publication.offset) {
            continue;
        }
        let mut stored = Publication::clone(publication);
        stored.offset = 0; // the row key holds it
        writes.push(Write::InsertPublication {
            offset: publication.offset,
            data: stored.encode_to_vec(),
            expires_at: expires.0,
        });
        persisted.offsets.insert(publication.offset);
    }
    persisted.name = Some(name.to_owned());
    persisted.stream = stream;

    let mut present = BTreeSet::new();
    for (info, expires) in &snapshot.presence {
        present.insert(info.client.clone());
        if persisted.presence.get(&info.client) != Some(&(info.clone(), *expires)) {
            writes.push(Write::UpsertPresence {
                client: info.client.clone(),
                info: info.encode_to_vec(),
                expires_at: expires.0,
            });
            persisted.presence.insert(info.client.clone(), (info.clone(), *expires));
        }
    }
    let gone: Vec<String> = persisted.presence.keys().filter(|c| !present.contains(*c)).cloned().collect();
    for client in gone {
        persisted.presence.remove(&client);
        writes.push(Write::DeletePresence { client });
    }

    let nodes: BTreeSet<String> = snapshot.nodes.iter().map(|n| n.to_string()).collect();
    for node in nodes.difference(&persisted.nodes) {
        writes.push(Write::InsertNode(node.clone()));
    }
    for node in persisted.nodes.difference(&nodes) {
        writes.push(Write::DeleteNode(node.clone()));
    }
    persisted.nodes = nodes;

    let mut keys = BTreeSet::new();
    for (key, position, expires) in &snapshot.idempotent {
        keys.insert(key.as_str());
        let entry = (position.clone(), *expires);
        if persisted.idempotent.get(key) != Some(&entry) {
            writes.push(Write::UpsertIdempotency {
                key: key.clone(),
                epoch: position.epoch.clone(),
                offset: position.offset,
                expires_at: expires.0,
            });
            persisted.idempotent.insert(key.clone(), entry);
        }
    }
    let gone: Vec<String> = persisted.idempotent.keys().filter(|k| !keys.contains(k.as_str())).cloned().collect();
    for key in gone {
        persisted.idempotent.remove(&key);
        writes.push(Write::DeleteIdempotency(key));
    }
    writes
}

/// Applies writes to in-memory rows the way SQLite would: lets tests check that a diff and
/// a load give back the snapshot.
pub fn apply(rows: &mut Rows, writes: &[Write]) {
    for w in writes {
        match w {
            Write::Channel { name, epoch, top, meta_expires_at } => {
                rows.channel = Some((name.clone(), epoch.clone(), *top, *meta_expires_at))
            }
            Write::DeletePublicationsBelow(first) => rows.publications.retain(|(o, _, _)| o >= first),
            Write::DeleteAllPublications => rows.publications.clear(),
            Write::InsertPublication { offset, data, expires_at } => {
                rows.publications.retain(|(o, _, _)| o != offset);
                rows.publications.push((*offset, data.clone(), *expires_at));
                rows.publications.sort_by_key(|(o, _, _)| *o);
            }
            Write::UpsertPresence { client, info, expires_at } => {
                rows.presence.retain(|(c, _, _)| c != client);
                rows.presence.push((client.clone(), info.clone(), *expires_at));
                rows.presence.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Write::DeletePresence { client } => rows.presence.retain(|(c, _, _)| c != client),
            Write::InsertNode(node) => {
                if !rows.nodes.contains(node) {
                    rows.nodes.push(node.clone());
                    rows.nodes.sort();
                }
            }
            Write::DeleteNode(node) => rows.nodes.retain(|n| n != node),
            Write::UpsertIdempotency { key, epoch, offset, expires_at } => {
                rows.idempotency.retain(|(k, ..)| k != key);
                rows.idempotency.push((key.clone(), epoch.clone(), *offset, *expires_at));
                rows.idempotency.sort_by(|a, b| a.0.cmp(&b.0));
            }
            Write::DeleteIdempotency(key) => rows.idempotency.retain(|(k, ..)| k != key),
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use shared::broker::{Broker, BrokerOp, BrokerRequest, HistoryOptions, PublishOp, RequestId};

    use super::*;

    const H: HistoryOptions = HistoryOptions { size: 3, ttl_ms: 10_000, meta_ttl_ms: 0 };

    fn publish(b: &mut Broker, n: u64, now: u64) {
        let op = BrokerOp::Publish(PublishOp {
            data: Bytes::from(format!("{{\"n\":{n}}}")),
            history: H,
            ..Default::default()
        });
        b.handle_request(BrokerRequest { id: RequestId(n), channel: "c".into(), op }, Timestamp(now));
        while b.poll_output().is_some() {}
    }

    fn request(b: &mut Broker, op: BrokerOp, now: u64) {
        b.handle_request(BrokerRequest { id: RequestId(0), channel: "c".into(), op }, Timestamp(now));
        while b.poll_output().is_some() {}
    }

    fn info(client: &str) -> ClientInfo {
        ClientInfo { user: "u".into(), client: client.into(), ..Default::default() }
    }

    /// Writes the diff, reads the rows back, and checks a restored broker sees the same.
    fn sync(b: &Broker, persisted: &mut Persisted, rows: &mut Rows) -> Vec<Write> {
        let snapshot = b.snapshot("c");
        let writes = diff(persisted, "c", &snapshot);
        apply(rows, &writes);
        let (loaded, mirror) = load(rows.clone());
        assert_eq!(loaded, snapshot);
        assert_eq!(&mirror, persisted);
        let mut restored = Broker::new(99);
        restored.restore("c", loaded);
        assert_eq!(restored.snapshot("c"), snapshot);
        writes
    }

    #[test]
    fn a_publish_writes_one_row_and_trims_the_window() {
        let (mut b, mut p, mut rows) = (Broker::new(1), Persisted::default(), Rows::default());
        request(&mut b, BrokerOp::Subscribe { node: Arc::from("n1"), since: None, limit: 0, history: H }, 0);
        let writes = sync(&b, &mut p, &mut rows);
        assert!(writes.contains(&Write::InsertNode("n1".into())));
        for n in 1..=3 {
            publish(&mut b, n, n);
            let writes = sync(&b, &mut p, &mut rows);
            assert_eq!(writes.iter().filter(|w| matches!(w, Write::InsertPublication { .. })).count(), 1);
        }
        publish(&mut b, 4, 4);
        let writes = sync(&b, &mut p, &mut rows);
        assert!(writes.contains(&Write::DeletePublicationsBelow(2)));
        assert_eq!(rows.publications.iter().map(|r| r.0).collect::<Vec<_>>(), vec![2, 3, 4]);
        assert!(sync(&b, &mut p, &mut rows).is_empty(), "nothing changed, nothing written");
    }

    #[test]
    fn history_remove_expiry_and_presence_reach_storage() {
        let (mut b, mut p, mut rows) = (Broker::new(1), Persisted::default(), Rows::default());
        publish(&mut b, 1, 0);
        publish(&mut b, 2, 0);
        sync(&b, &mut p, &mut rows);
        request(&mut b, BrokerOp::HistoryRemove, 1);
        let writes = sync(&b, &mut p, &mut rows);
        assert!(writes.contains(&Write::DeleteAllPublications));
        assert_eq!(rows.channel.as_ref().unwrap().2, 2, "the top offset survives history removal");
        publish(&mut b, 3, 2);
        sync(&b, &mut p, &mut rows);
        b.handle_timeout(Timestamp(20_000));
        sync(&b, &mut p, &mut rows);
        assert!(rows.publications.is_empty());

        request(&mut b, BrokerOp::PresenceAdd { info: info("a"), ttl_ms: 1000 }, 30_000);
        request(&mut b, BrokerOp::PresenceAdd { info: info("b"), ttl_ms: 1000 }, 30_000);
        sync(&b, &mut p, &mut rows);
        assert_eq!(rows.presence.len(), 2);
        request(&mut b, BrokerOp::PresenceRemove { client: "a".into() }, 30_001);
        let writes = sync(&b, &mut p, &mut rows);
        assert_eq!(writes, vec![Write::DeletePresence { client: "a".into() }]);
    }

    #[test]
    fn a_new_epoch_starts_the_table_over() {
        let (mut b, mut p, mut rows) = (Broker::new(1), Persisted::default(), Rows::default());
        publish(&mut b, 1, 0);
        sync(&b, &mut p, &mut rows);
        let epoch = rows.channel.as_ref().unwrap().1.clone();
        // The stream's meta TTL (30 days by default) runs out: the next publish gets a new epoch.
        publish(&mut b, 2, 31 * 24 * 3600 * 1000);
        let writes = sync(&b, &mut p, &mut rows);
        assert!(writes.contains(&Write::DeleteAllPublications));
        assert_ne!(rows.channel.as_ref().unwrap().1, epoch);
        assert_eq!(rows.publications.len(), 1);
        assert_eq!(rows.publications[0].0, 1);
    }

    #[test]
    fn idempotency_keys_outlive_the_object_and_expire() {
        let (mut b, mut p, mut rows) = (Broker::new(1), Persisted::default(), Rows::default());
        let keyed = |n: u64| {
            BrokerOp::Publish(PublishOp {
                data: Bytes::from(format!("{{\"n\":{n}}}")),
                history: H,
                idempotency_key: Some("k1".into()),
                ..Default::default()
            })
        };
        request(&mut b, keyed(1), 0);
        let writes = sync(&b, &mut p, &mut rows);
        assert_eq!(writes.iter().filter(|w| matches!(w, Write::UpsertIdempotency { .. })).count(), 1);
        assert_eq!(rows.idempotency.len(), 1);

        // The object is evicted; a new one loads the rows and still knows the key.
        let (loaded, mut p2) = load(rows.clone());
        let mut b2 = Broker::new(2);
        b2.restore("c", loaded);
        b2.handle_request(BrokerRequest { id: RequestId(7), channel: "c".into(), op: keyed(2) }, Timestamp(1_000));
        let replies: Vec<_> = std::iter::from_fn(|| b2.poll_output()).collect();
        assert!(
            matches!(&replies[..], [shared::broker::BrokerEvent::Reply { result: Ok(shared::broker::BrokerReply::Published(pos)), .. }] if pos.offset == 1),
            "the repeated publish is answered, not published again: {replies:?}"
        );
        assert!(sync(&b2, &mut p2, &mut rows).is_empty());
        // Five minutes on, the key is gone, from memory and from the table.
        b2.handle_timeout(Timestamp(5 * 60 * 1000 + 1));
        let writes = sync(&b2, &mut p2, &mut rows);
        assert!(writes.contains(&Write::DeleteIdempotency("k1".into())), "{writes:?}");
        assert!(rows.idempotency.is_empty());
    }
}
