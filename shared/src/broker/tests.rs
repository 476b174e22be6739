//! Broker unit tests.
use super::*;

#[test]
fn first_offset_is_one() {
    let mut b = Broker::new(1);
    let h = HistoryOptions { size: 10, ttl_ms: 1000, meta_ttl_ms: 0 };
    b.handle_request(BrokerRequest { id: RequestId(1), channel: "a".into(), op: BrokerOp::Publish(PublishOp { data: "{}".into(), history: h, ..Default::default() }) }, Timestamp(0));
    match b.poll_output() {
        Some(BrokerEvent::Reply { result: Ok(BrokerReply::Published(p)), .. }) => assert_eq!(p.offset, 1),
        other => panic!("{other:?}"),
    }
}
