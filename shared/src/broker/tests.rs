//! Broker unit tests: streams, history windows, idempotency, presence, node interest.

use super::*;

const H: HistoryOptions = HistoryOptions { size: 10, ttl_ms: 60_000, meta_ttl_ms: 3_600_000 };
const NO_HISTORY: HistoryOptions = HistoryOptions { size: 0, ttl_ms: 0, meta_ttl_ms: 0 };

struct Driver {
    broker: Broker,
    next: u64,
    /// Non-reply events seen, in order.
    events: Vec<BrokerEvent>,
}

impl Driver {
    fn new() -> Self {
        Driver { broker: Broker::new(1), next: 1, events: Vec::new() }
    }

    fn request(&mut self, channel: &str, op: BrokerOp, now: u64) -> Result<BrokerReply, Error> {
        let id = RequestId(self.next);
        self.next += 1;
        self.broker.handle_request(BrokerRequest { id, channel: channel.into(), op }, Timestamp(now));
        let mut reply = None;
        while let Some(event) = self.broker.poll_output() {
            match event {
                BrokerEvent::Reply { id: got, result } => {
                    assert_eq!(got, id);
                    assert!(reply.replace(result).is_none(), "one reply per request");
                }
                other => {
                    assert!(reply.is_none(), "events come before the reply: {other:?}");
                    self.events.push(other);
                }
            }
        }
        reply.expect("every request is answered")
    }

    fn publish_with(&mut self, channel: &str, op: PublishOp, now: u64) -> StreamPosition {
        match self.request(channel, BrokerOp::Publish(op), now) {
            Ok(BrokerReply::Published(p)) => p,
            other => panic!("{other:?}"),
        }
    }

    fn publish(&mut self, channel: &str, history: HistoryOptions, now: u64) -> StreamPosition {
        let op = PublishOp { data: Bytes::from(format!("{{\"at\":{now}}}")), history, ..Default::default() };
        self.publish_with(channel, op, now)
    }

    fn history(
        &mut self,
        channel: &str,
        since: Option<StreamPosition>,
        limit: i64,
        reverse: bool,
        now: u64,
    ) -> Result<(StreamPosition, Vec<u64>), Error> {
        match self.request(channel, BrokerOp::History { since, limit, reverse, history: H }, now) {
            Ok(BrokerReply::History { top, publications }) => {
                Ok((top, publications.iter().map(|p| p.offset).collect()))
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => Err(e),
        }
    }

    fn subscribe(
        &mut self,
        channel: &str,
        node: &str,
        since: Option<StreamPosition>,
        limit: usize,
        now: u64,
    ) -> (StreamPosition, Vec<u64>) {
        let op = BrokerOp::Subscribe { node: Arc::from(node), since, limit, history: H };
        match self.request(channel, op, now) {
            Ok(BrokerReply::Subscribed { top, publications }) => (top, publications.iter().map(|p| p.offset).collect()),
            other => panic!("{other:?}"),
        }
    }

    fn stats(&mut self, channel: &str, now: u64) -> (u32, u32) {
        match self.request(channel, BrokerOp::PresenceStats, now) {
            Ok(BrokerReply::PresenceStats { clients, users }) => (clients, users),
            other => panic!("{other:?}"),
        }
    }

    fn presence(&mut self, channel: &str, now: u64) -> Vec<String> {
        match self.request(channel, BrokerOp::Presence, now) {
            Ok(BrokerReply::Presence(map)) => map.keys().cloned().collect(),
            other => panic!("{other:?}"),
        }
    }

    /// Fires every broker deadline up to `now`, as a host would.
    fn run_timers(&mut self, now: u64) {
        while let Some(at) = self.broker.poll_timeout() {
            if at > Timestamp(now) {
                break;
            }
            self.broker.handle_timeout(at);
        }
        self.broker.handle_timeout(Timestamp(now));
        assert!(self.broker.poll_output().is_none(), "timeouts produce no events");
    }

    fn publications(&mut self) -> Vec<(String, u64)> {
        std::mem::take(&mut self.events)
            .into_iter()
            .filter_map(|e| match e {
                BrokerEvent::Publication { channel, publication, .. } => {
                    Some((channel.to_string(), publication.offset))
                }
                _ => None,
            })
            .collect()
    }
}

fn info(user: &str, client: &str) -> ClientInfo {
    ClientInfo { user: user.into(), client: client.into(), ..Default::default() }
}

#[test]
fn offsets_start_at_one_and_epoch_is_stable() {
    let mut d = Driver::new();
    let first = d.publish("a", H, 0);
    assert_eq!(first.offset, 1);
    assert_eq!(first.epoch.len(), 8);
    assert!(first.epoch.chars().all(|c| c.is_ascii_alphabetic()));
    for n in 2..=5 {
        let p = d.publish("a", H, n);
        assert_eq!(p, StreamPosition { offset: n, epoch: first.epoch.clone() });
    }
    assert_eq!(d.broker.position("a"), Some(StreamPosition { offset: 5, epoch: first.epoch.clone() }));
}

#[test]
fn channels_have_their_own_streams() {
    let mut d = Driver::new();
    let a = d.publish("a", H, 0);
    d.publish("a", H, 0);
    let b = d.publish("b", H, 0);
    assert_eq!(b.offset, 1);
    assert_ne!(a.epoch, b.epoch);
}

#[test]
fn empty_stream_top_is_zero() {
    let mut d = Driver::new();
    let (top, pubs) = d.history("a", None, -1, false, 0).unwrap();
    assert_eq!(top.offset, 0);
    assert_eq!(top.epoch.len(), 8, "a stream (and its epoch) exists from first use");
    assert!(pubs.is_empty());
    assert_eq!(d.publish("a", H, 1).epoch, top.epoch);
}

#[test]
fn history_is_trimmed_to_size() {
    let mut d = Driver::new();
    for _ in 0..25 {
        d.publish("a", H, 0);
    }
    let (top, pubs) = d.history("a", None, -1, false, 0).unwrap();
    assert_eq!(top.offset, 25);
    assert_eq!(pubs, (16..=25).collect::<Vec<_>>());
}

#[test]
fn history_is_trimmed_by_ttl() {
    let mut d = Driver::new();
    let epoch = d.publish("a", H, 0).epoch;
    d.publish("a", H, 30_000);
    assert_eq!(d.broker.poll_timeout(), Some(Timestamp(60_000)), "the first entry's expiry is the next deadline");
    assert_eq!(d.history("a", None, -1, false, 59_999).unwrap().1, vec![1, 2]);
    assert_eq!(d.history("a", None, -1, false, 60_000).unwrap().1, vec![2], "expired at exactly ttl");
    d.run_timers(90_000);
    let (top, pubs) = d.history("a", None, -1, false, 90_000).unwrap();
    assert!(pubs.is_empty());
    assert_eq!(top, StreamPosition { offset: 2, epoch: epoch.clone() }, "position outlives the publications");
    assert_eq!(d.publish("a", H, 90_001).offset, 3);
}

#[test]
fn stream_meta_expires_after_meta_ttl_and_gets_a_new_epoch() {
    let mut d = Driver::new();
    let h = HistoryOptions { size: 10, ttl_ms: 1_000, meta_ttl_ms: 10_000 };
    let first = d.publish_with("a", PublishOp { data: "1".into(), history: h, ..Default::default() }, 0);
    // Touching the stream within meta TTL keeps it.
    let op = BrokerOp::History { since: None, limit: 0, reverse: false, history: h };
    let Ok(BrokerReply::History { top, .. }) = d.request("a", op.clone(), 9_000) else { panic!() };
    assert_eq!(top, first);
    d.run_timers(18_000);
    let Ok(BrokerReply::History { top, .. }) = d.request("a", op.clone(), 18_000) else { panic!() };
    assert_eq!(top, first, "meta TTL counts from the last use");
    // Idle past meta TTL: the stream is gone, a new one starts with a new epoch.
    d.run_timers(40_000);
    let Ok(BrokerReply::History { top, .. }) = d.request("a", op, 40_000) else { panic!() };
    assert_eq!(top.offset, 0);
    assert_ne!(top.epoch, first.epoch);
}

#[test]
fn idempotency_key_returns_the_original_position_without_publishing_again() {
    let mut d = Driver::new();
    d.subscribe("a", "n1", None, 0, 0);
    let op = |key: &str| PublishOp {
        data: "{}".into(),
        history: H,
        idempotency_key: Some(key.into()),
        ..Default::default()
    };
    let first = d.publish_with("a", op("k"), 0);
    let again = d.publish_with("a", op("k"), 1_000);
    assert_eq!(first, again);
    assert_eq!(d.publications(), vec![("a".into(), 1)], "one publication event");
    assert_eq!(d.publish_with("a", op("k2"), 1_000).offset, 2);
    assert_eq!(d.publish_with("b", op("k"), 1_000).offset, 1, "keys are per channel");
    d.run_timers(5 * 60_000 + 1);
    assert_eq!(d.publish_with("a", op("k"), 5 * 60_000 + 1).offset, 3, "remembered for 5 minutes");
}

#[test]
fn idempotency_without_history_returns_empty_position() {
    let mut d = Driver::new();
    let op =
        PublishOp { data: "{}".into(), history: NO_HISTORY, idempotency_key: Some("k".into()), ..Default::default() };
    assert_eq!(d.publish_with("a", op.clone(), 0), StreamPosition::default());
    assert_eq!(d.publish_with("a", op, 0), StreamPosition::default());
}

#[test]
fn history_since_limit_reverse() {
    let mut d = Driver::new();
    let epoch = d.publish("a", H, 0).epoch;
    for _ in 0..7 {
        d.publish("a", H, 0);
    }
    let at = |offset| Some(StreamPosition { offset, epoch: epoch.clone() });
    assert_eq!(d.history("a", None, 0, false, 0).unwrap().1, Vec::<u64>::new(), "limit 0: position only");
    assert_eq!(d.history("a", None, 3, false, 0).unwrap().1, vec![1, 2, 3]);
    assert_eq!(d.history("a", at(5), -1, false, 0).unwrap().1, vec![6, 7, 8]);
    assert_eq!(d.history("a", at(5), 2, false, 0).unwrap().1, vec![6, 7]);
    assert_eq!(d.history("a", at(8), -1, false, 0).unwrap().1, Vec::<u64>::new());
    assert_eq!(d.history("a", None, 3, true, 0).unwrap().1, vec![8, 7, 6]);
    assert_eq!(d.history("a", at(4), -1, true, 0).unwrap().1, vec![3, 2, 1]);
    assert_eq!(d.history("a", at(4), 2, true, 0).unwrap().1, vec![3, 2]);
    let no_epoch = Some(StreamPosition { offset: 6, epoch: String::new() });
    assert_eq!(d.history("a", no_epoch, -1, false, 0).unwrap().1, vec![7, 8], "no epoch: not checked");
}

#[test]
fn history_since_after_trim_starts_at_the_oldest_kept() {
    let mut d = Driver::new();
    let epoch = d.publish("a", H, 0).epoch;
    for _ in 0..14 {
        d.publish("a", H, 0);
    } // keeps 6..=15
    let since = Some(StreamPosition { offset: 2, epoch });
    assert_eq!(d.history("a", since, 3, false, 0).unwrap().1, vec![6, 7, 8]);
}

#[test]
fn history_epoch_mismatch_is_112_and_disabled_history_is_108() {
    let mut d = Driver::new();
    d.publish("a", H, 0);
    let err = d.history("a", Some(StreamPosition { offset: 0, epoch: "wrong".into() }), 10, false, 0).unwrap_err();
    assert_eq!(err.code, 112);
    let op = BrokerOp::History { since: None, limit: 10, reverse: false, history: NO_HISTORY };
    assert_eq!(d.request("a", op, 0).unwrap_err().code, 108);
}

#[test]
fn skip_history_and_history_less_publications_have_no_offset() {
    let mut d = Driver::new();
    d.subscribe("a", "n1", None, 0, 0);
    d.publish("a", H, 0);
    let skipped =
        d.publish_with("a", PublishOp { data: "{}".into(), history: H, skip_history: true, ..Default::default() }, 0);
    assert_eq!(skipped.offset, 0);
    assert_eq!(d.publish("a", H, 0).offset, 2, "skipped publications take no offset");
    assert_eq!(d.history("a", None, -1, false, 0).unwrap().1, vec![1, 2]);
    assert_eq!(d.publications(), vec![("a".into(), 1), ("a".into(), 0), ("a".into(), 2)], "all delivered live");
    assert_eq!(d.publish("nohist", NO_HISTORY, 0), StreamPosition::default());
}

#[test]
fn history_remove_keeps_the_position() {
    let mut d = Driver::new();
    let epoch = d.publish("a", H, 0).epoch;
    d.publish("a", H, 0);
    assert_eq!(d.request("a", BrokerOp::HistoryRemove, 0), Ok(BrokerReply::Done));
    let (top, pubs) = d.history("a", None, -1, false, 0).unwrap();
    assert!(pubs.is_empty());
    assert_eq!(top, StreamPosition { offset: 2, epoch });
    assert_eq!(d.publish("a", H, 0).offset, 3);
}

#[test]
fn subscribe_returns_top_and_publications_since() {
    let mut d = Driver::new();
    let epoch = d.publish("a", H, 0).epoch;
    for _ in 0..5 {
        d.publish("a", H, 0);
    }
    let (top, pubs) = d.subscribe("a", "n1", None, 100, 0);
    assert_eq!(top, StreamPosition { offset: 6, epoch: epoch.clone() });
    assert!(pubs.is_empty(), "no position, no publications");
    let (_, pubs) = d.subscribe("a", "n1", Some(StreamPosition { offset: 2, epoch: epoch.clone() }), 100, 0);
    assert_eq!(pubs, vec![3, 4, 5, 6]);
    let (_, pubs) = d.subscribe("a", "n1", Some(StreamPosition { offset: 2, epoch: epoch.clone() }), 2, 0);
    assert_eq!(pubs, vec![3, 4], "at most `limit`: the hub sees it is not the top");
    let (_, pubs) = d.subscribe("a", "n1", Some(StreamPosition { offset: 2, epoch: "other".into() }), 100, 0);
    assert!(pubs.is_empty(), "wrong epoch: nothing to recover");
}

#[test]
fn publication_events_only_for_channels_with_interested_nodes() {
    let mut d = Driver::new();
    d.publish("a", H, 0);
    d.publish("nohist", NO_HISTORY, 0);
    assert!(d.publications().is_empty(), "no node subscribed: no events");
    d.subscribe("a", "n1", None, 0, 0);
    d.subscribe("a", "n2", None, 0, 0);
    let mut nodes: Vec<String> = d.broker.nodes("a").map(|n| n.to_string()).collect();
    nodes.sort();
    assert_eq!(nodes, vec!["n1", "n2"]);
    d.publish("a", H, 0);
    assert_eq!(d.publications(), vec![("a".into(), 2)], "one event; hosts fan it out to `nodes()`");
    d.request("a", BrokerOp::Unsubscribe { node: Arc::from("n1") }, 0).unwrap();
    d.publish("a", H, 0);
    assert_eq!(d.publications().len(), 1, "n2 still listens");
    d.request("a", BrokerOp::Unsubscribe { node: Arc::from("n2") }, 0).unwrap();
    assert_eq!(d.broker.nodes("a").count(), 0);
    d.publish("a", H, 0);
    assert!(d.publications().is_empty());
    assert_eq!(d.history("a", None, -1, false, 0).unwrap().1, vec![1, 2, 3, 4], "history is kept regardless");
}

#[test]
fn publication_event_carries_data_info_tags_and_epoch() {
    let mut d = Driver::new();
    d.subscribe("a", "n1", None, 0, 0);
    let mut tags = BTreeMap::new();
    tags.insert("k".to_string(), "v".to_string());
    let op = PublishOp {
        data: "{\"x\":1}".into(),
        info: Some(info("42", "c1")),
        tags: tags.clone(),
        history: H,
        ..Default::default()
    };
    let position = d.publish_with("a", op, 0);
    match &d.events[..] {
        [BrokerEvent::Publication { channel, epoch, publication, .. }] => {
            assert_eq!(&**channel, "a");
            assert_eq!(**epoch, *position.epoch);
            assert_eq!(&publication.data[..], b"{\"x\":1}");
            assert_eq!(publication.info, Some(info("42", "c1")));
            assert_eq!(publication.tags, tags);
            assert_eq!(publication.offset, 1);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn presence_add_remove_stats() {
    let mut d = Driver::new();
    assert_eq!(d.stats("a", 0), (0, 0));
    for (user, client) in [("42", "c1"), ("42", "c2"), ("43", "c3")] {
        d.request("a", BrokerOp::PresenceAdd { info: info(user, client), ttl_ms: 60_000 }, 0).unwrap();
    }
    assert_eq!(d.stats("a", 0), (3, 2));
    assert_eq!(d.presence("a", 0), vec!["c1", "c2", "c3"]);
    assert_eq!(d.stats("b", 0), (0, 0), "per channel");
    d.request("a", BrokerOp::PresenceAdd { info: info("42", "c1"), ttl_ms: 60_000 }, 0).unwrap();
    assert_eq!(d.stats("a", 0), (3, 2), "adding again updates, not duplicates");
    d.request("a", BrokerOp::PresenceRemove { client: "c1".into() }, 0).unwrap();
    assert_eq!(d.stats("a", 0), (2, 2));
    d.request("a", BrokerOp::PresenceRemove { client: "c2".into() }, 0).unwrap();
    assert_eq!(d.stats("a", 0), (1, 1));
    d.request("a", BrokerOp::PresenceRemove { client: "unknown".into() }, 0).unwrap();
    assert_eq!(d.presence("a", 0), vec!["c3"]);
}

#[test]
fn presence_entries_expire_unless_refreshed() {
    let mut d = Driver::new();
    d.request("a", BrokerOp::PresenceAdd { info: info("1", "c1"), ttl_ms: 60_000 }, 0).unwrap();
    d.request("a", BrokerOp::PresenceAdd { info: info("2", "c2"), ttl_ms: 60_000 }, 0).unwrap();
    d.request("a", BrokerOp::PresenceAdd { info: info("2", "c2"), ttl_ms: 60_000 }, 30_000).unwrap();
    assert_eq!(d.stats("a", 59_999), (2, 2));
    assert_eq!(d.presence("a", 60_000), vec!["c2"], "expired entries are not reported, even before a timer ran");
    d.run_timers(100_000);
    assert_eq!(d.presence("a", 100_000), Vec::<String>::new());
    assert_eq!(d.broker.poll_timeout(), None, "nothing left to expire");
}

#[test]
fn join_and_leave_become_events() {
    let mut d = Driver::new();
    d.subscribe("a", "n1", None, 0, 0);
    d.request("a", BrokerOp::Join { info: info("1", "c1") }, 0).unwrap();
    d.request("a", BrokerOp::Leave { info: info("1", "c1") }, 0).unwrap();
    assert_eq!(
        d.events,
        vec![
            BrokerEvent::Join { channel: Arc::from("a"), info: info("1", "c1") },
            BrokerEvent::Leave { channel: Arc::from("a"), info: info("1", "c1") },
        ]
    );
}

#[test]
fn same_seed_same_epochs() {
    let mut a = Driver::new();
    let mut b = Driver::new();
    assert_eq!(a.publish("x", H, 0), b.publish("x", H, 0), "deterministic from the seed");
}

#[test]
fn subscribing_to_a_channel_without_history_keeps_no_stream() {
    let mut d = Driver::new();
    let op = BrokerOp::Subscribe { node: Arc::from("n1"), since: None, limit: 0, history: NO_HISTORY };
    let reply = d.request("live", op, 0);
    assert_eq!(reply, Ok(BrokerReply::Subscribed { top: StreamPosition::default(), publications: Vec::new() }));
    assert_eq!(d.broker.position("live"), None, "nothing to remember for a history-less channel");
    assert_eq!(d.broker.nodes("live").count(), 1, "interest is still registered");
    d.publish("live", NO_HISTORY, 0);
    assert_eq!(d.publications(), vec![("live".into(), 0)]);
}

#[test]
fn an_idle_stream_is_dropped_from_memory_when_its_meta_ttl_runs_out() {
    let mut d = Driver::new();
    let h = HistoryOptions { size: 10, ttl_ms: 1_000, meta_ttl_ms: 10_000 };
    d.publish_with("a", PublishOp { data: "1".into(), history: h, ..Default::default() }, 0);
    d.run_timers(2_000); // the publication expired; the position stays for the meta TTL
    assert!(d.broker.streams.contains_key("a"));
    assert_eq!(d.broker.poll_timeout(), Some(Timestamp(10_000)), "a deadline at the meta TTL");
    d.run_timers(10_000);
    assert!(d.broker.streams.is_empty(), "nothing left in memory for an idle channel");
    assert_eq!(d.broker.poll_timeout(), None);
}

#[test]
fn a_stream_only_subscribed_to_is_dropped_when_its_meta_ttl_runs_out() {
    // Found by the property tests: one stream per channel ever subscribed stayed for good.
    let mut broker = Broker::new(1);
    let history = HistoryOptions { size: 10, ttl_ms: 60_000, meta_ttl_ms: 120_000 };
    let op = BrokerOp::Subscribe { node: "n".into(), since: None, limit: 10, history };
    broker.handle_request(BrokerRequest { id: RequestId(1), channel: "quiet".into(), op }, Timestamp(1_000));
    while broker.poll_output().is_some() {}
    assert!(broker.position("quiet").is_some());
    let at = broker.poll_timeout().expect("a deadline for the stream");
    broker.handle_timeout(at);
    assert!(broker.position("quiet").is_none());
}

#[test]
fn never_published_streams_nobody_listens_to_are_bounded() {
    // Found by an adversarial run: a client cycling through unique channels of a namespace
    // with history left one stream each for the whole meta TTL (720 h).
    let mut broker = Broker::new(1);
    let history = HistoryOptions { size: 10, ttl_ms: 60_000, meta_ttl_ms: 3_600_000 };
    let now = Timestamp(1_000);
    let subscribe = |broker: &mut Broker, channel: &str| {
        let op = BrokerOp::Subscribe { node: "n".into(), since: None, limit: 10, history };
        broker.handle_request(BrokerRequest { id: RequestId(1), channel: channel.into(), op }, now);
    };
    let leave = |broker: &mut Broker, channel: &str| {
        broker.handle_request(
            BrokerRequest { id: RequestId(2), channel: channel.into(), op: BrokerOp::Unsubscribe { node: "n".into() } },
            now,
        );
    };
    subscribe(&mut broker, "kept");
    let epoch = broker.position("kept").unwrap().epoch;
    leave(&mut broker, "kept");
    assert_eq!(broker.position("kept").unwrap().epoch, epoch, "a position handed out stays valid");
    subscribe(&mut broker, "listened");
    for i in 0..MAX_UNPUBLISHED_STREAMS + 10 {
        let channel = format!("churn{i}");
        subscribe(&mut broker, &channel);
        leave(&mut broker, &channel);
    }
    while broker.poll_output().is_some() {}
    assert!(broker.position("kept").is_none(), "the oldest idle one went");
    assert!(broker.position("listened").is_some(), "one still listened to stays");
    assert!(broker.streams.len() <= MAX_UNPUBLISHED_STREAMS + 1, "{}", broker.streams.len());
}
