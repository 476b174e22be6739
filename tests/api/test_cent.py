"""Every server API method through the official Python client (`cent`, sync `Client`).

Needs: top-level channels with presence and history, a `plain` namespace with neither, and
uni_http_stream on (tests/config/api.json).
"""

import base64
import os
import time

import pytest
from cent import (
    BatchRequest,
    BroadcastRequest,
    ChannelsRequest,
    CentApiResponseError,
    DisconnectRequest,
    HistoryRemoveRequest,
    HistoryRequest,
    InfoRequest,
    PresenceRequest,
    PresenceStatsRequest,
    PublishRequest,
    RefreshRequest,
    SubscribeRequest,
    UnsubscribeRequest,
)
from cent.dto import Disconnect, StreamPosition

from conftest import unique


def api_error(excinfo):
    return excinfo.value.code


# ---- publish


def test_publish_returns_position(client):
    ch = unique()
    first = client.publish(PublishRequest(channel=ch, data={"n": 1}))
    second = client.publish(PublishRequest(channel=ch, data={"n": 2}, tags={"k": "v"}))
    assert first.offset == 1 and first.epoch
    assert second.offset == 2 and second.epoch == first.epoch
    history = client.history(HistoryRequest(channel=ch, limit=-1))
    assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}]
    assert history.publications[1].tags == {"k": "v"}


def test_publish_idempotency_key_returns_the_original_result(client):
    ch = unique()
    first = client.publish(PublishRequest(channel=ch, data={"once": True}, idempotency_key="key-1"))
    again = client.publish(PublishRequest(channel=ch, data={"once": True}, idempotency_key="key-1"))
    assert first.offset == 1
    assert again.offset == first.offset and again.epoch == first.epoch
    history = client.history(HistoryRequest(channel=ch, limit=-1))
    assert len(history.publications) == 1, "the repeat must not publish again"


def test_publish_skip_history(client):
    ch = unique()
    client.publish(PublishRequest(channel=ch, data={"kept": True}))
    skipped = client.publish(PublishRequest(channel=ch, data={"kept": False}, skip_history=True))
    assert skipped.offset == 0
    history = client.history(HistoryRequest(channel=ch, limit=-1))
    assert [p.data for p in history.publications] == [{"kept": True}]


def test_publish_b64data(client, raw):
    ch = unique()
    client.publish(PublishRequest(channel=ch, data=None, b64data=base64.b64encode(b'{"from":"b64"}').decode()))
    client.publish(PublishRequest(channel=ch, data=None, b64data=base64.b64encode(b"\x00\x01binary").decode()))
    status, body = raw.api("history", {"channel": ch, "limit": -1})
    assert status == 200
    pubs = body["result"]["publications"]
    assert pubs[0]["data"] == {"from": "b64"}
    assert base64.b64decode(pubs[1]["b64data"]) == b"\x00\x01binary"


def test_publish_without_history_answers_empty_result(client):
    result = client.publish(PublishRequest(channel="plain:" + unique(), data={"x": 1}))
    assert result.offset == 0 and result.epoch == ""


@pytest.mark.parametrize(
    "channel, data, code",
    [
        ("", {"x": 1}, 107),
        ("nosuchnamespace:" + unique(), {"x": 1}, 102),
        (unique(), None, 107),
    ],
    ids=["empty channel", "unknown namespace", "no data"],
)
def test_publish_errors(client, channel, data, code):
    with pytest.raises(CentApiResponseError) as e:
        client.publish(PublishRequest(channel=channel, data=data))
    assert api_error(e) == code


# ---- broadcast


def test_broadcast_answers_per_channel(client):
    a, b = unique(), "plain:" + unique()
    result = client.broadcast(BroadcastRequest(channels=[a, b, "nosuchnamespace:x", ""], data={"all": 1}))
    r = result.responses
    assert len(r) == 4
    assert r[0].error is None and r[0].result.offset == 1 and r[0].result.epoch
    assert r[1].error is None and r[1].result.offset == 0
    assert r[2].error.code == 102
    assert r[3].error.code == 107
    assert client.history(HistoryRequest(channel=a, limit=-1)).publications[0].data == {"all": 1}


def test_broadcast_needs_channels(client):
    with pytest.raises(CentApiResponseError) as e:
        client.broadcast(BroadcastRequest(channels=[], data={"x": 1}))
    assert api_error(e) == 107


# ---- history


def test_history_limits_since_and_reverse(client):
    ch = unique()
    for n in range(1, 6):
        client.publish(PublishRequest(channel=ch, data={"n": n}))
    top = client.history(HistoryRequest(channel=ch))
    assert top.publications == [] and top.offset == 5 and top.epoch
    zero = client.history(HistoryRequest(channel=ch, limit=0))
    assert zero.publications == [] and zero.offset == 5
    every = client.history(HistoryRequest(channel=ch, limit=-1))
    assert [p.offset for p in every.publications] == [1, 2, 3, 4, 5]
    assert [p.data["n"] for p in every.publications] == [1, 2, 3, 4, 5]
    two = client.history(HistoryRequest(channel=ch, limit=2))
    assert [p.offset for p in two.publications] == [1, 2]
    since = client.history(HistoryRequest(channel=ch, limit=-1, since=StreamPosition(offset=3, epoch=top.epoch)))
    assert [p.offset for p in since.publications] == [4, 5]
    reverse = client.history(HistoryRequest(channel=ch, limit=2, reverse=True))
    assert [p.offset for p in reverse.publications] == [5, 4]
    before = client.history(
        HistoryRequest(channel=ch, limit=-1, reverse=True, since=StreamPosition(offset=3, epoch=top.epoch))
    )
    assert [p.offset for p in before.publications] == [2, 1]


def test_history_errors(client):
    ch = unique()
    client.publish(PublishRequest(channel=ch, data={"x": 1}))
    cases = [
        (HistoryRequest(channel=ch, limit=-1, since=StreamPosition(offset=1, epoch="wrongepoch")), 112),
        (HistoryRequest(channel=ch, reverse=True, since=StreamPosition(offset=0, epoch="")), 107),
        (HistoryRequest(channel="plain:" + unique()), 108),
        (HistoryRequest(channel=""), 107),
        (HistoryRequest(channel="nosuchnamespace:x"), 102),
    ]
    for request, code in cases:
        with pytest.raises(CentApiResponseError) as e:
            client.history(request)
        assert api_error(e) == code, request


def test_history_remove_keeps_position(client):
    ch = unique()
    client.publish(PublishRequest(channel=ch, data={"x": 1}))
    client.publish(PublishRequest(channel=ch, data={"x": 2}))
    client.history_remove(HistoryRemoveRequest(channel=ch))
    after = client.history(HistoryRequest(channel=ch, limit=-1))
    assert after.publications == [] and after.offset == 2
    with pytest.raises(CentApiResponseError) as e:
        client.history_remove(HistoryRemoveRequest(channel="plain:" + unique()))
    assert api_error(e) == 108


# ---- presence


def test_presence_of_an_empty_channel(client):
    ch = unique()
    assert client.presence(PresenceRequest(channel=ch)).presence == {}
    stats = client.presence_stats(PresenceStatsRequest(channel=ch))
    assert (stats.num_clients, stats.num_users) == (0, 0)


def test_presence_errors(client):
    for request, method in [
        (PresenceRequest(channel="plain:" + unique()), client.presence),
        (PresenceStatsRequest(channel="plain:" + unique()), client.presence_stats),
    ]:
        with pytest.raises(CentApiResponseError) as e:
            method(request)
        assert api_error(e) == 108
    with pytest.raises(CentApiResponseError) as e:
        client.presence(PresenceRequest(channel="nosuchnamespace:x"))
    assert api_error(e) == 102
    with pytest.raises(CentApiResponseError) as e:
        client.presence_stats(PresenceStatsRequest(channel=""))
    assert api_error(e) == 107


def test_presence_lists_subscribed_connections(client, streams):
    ch, user = unique(), unique("user")
    s = streams(user)
    client.subscribe(SubscribeRequest(user=user, channel=ch))
    s.next(lambda m: "subscribe" in m and m.get("channel") == ch)
    deadline = time.monotonic() + 5
    while True:
        presence = client.presence(PresenceRequest(channel=ch)).presence
        if presence or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert list(presence) == [s.client]
    assert presence[s.client].user == user and presence[s.client].client == s.client
    stats = client.presence_stats(PresenceStatsRequest(channel=ch))
    assert (stats.num_clients, stats.num_users) == (1, 1)


# ---- subscribe, unsubscribe


def test_subscribe_pushes_and_delivers_then_unsubscribe_stops(client, streams):
    ch, user = unique(), unique("user")
    s = streams(user)
    client.subscribe(SubscribeRequest(user=user, channel=ch, data={"welcome": True}))
    sub = s.next(lambda m: "subscribe" in m)
    assert sub["channel"] == ch
    assert sub["subscribe"]["data"] == {"welcome": True}
    assert sub["subscribe"].get("recoverable") is True and sub["subscribe"].get("epoch")
    client.publish(PublishRequest(channel=ch, data={"hello": 1}))
    pub = s.next(lambda m: "pub" in m)
    assert pub["channel"] == ch and pub["pub"]["data"] == {"hello": 1}
    client.unsubscribe(UnsubscribeRequest(user=user, channel=ch))
    unsub = s.next(lambda m: "unsubscribe" in m)
    assert unsub == {"channel": ch, "unsubscribe": {"code": 2000, "reason": "server unsubscribe"}}
    client.publish(PublishRequest(channel=ch, data={"hello": 2}))
    s.quiet(lambda m: "pub" in m)


def test_subscribe_by_client_and_by_session(client, streams):
    ch, user = unique(), unique("user")
    one, two = streams(user), streams(user)
    client.subscribe(SubscribeRequest(user=user, channel=ch, client=one.client))
    one.next(lambda m: "subscribe" in m)
    two.quiet(lambda m: "subscribe" in m)
    other = unique()
    client.subscribe(SubscribeRequest(user=user, channel=other, session=two.session))
    assert two.next(lambda m: "subscribe" in m)["channel"] == other
    one.quiet(lambda m: "subscribe" in m)


def test_subscribe_recovers_since(client, streams):
    ch, user = unique(), unique("user")
    first = client.publish(PublishRequest(channel=ch, data={"n": 1}))
    client.publish(PublishRequest(channel=ch, data={"n": 2}))
    client.publish(PublishRequest(channel=ch, data={"n": 3}))
    s = streams(user)
    client.subscribe(
        SubscribeRequest(user=user, channel=ch, recover_since=StreamPosition(offset=1, epoch=first.epoch))
    )
    s.next(lambda m: "subscribe" in m)
    assert s.next(lambda m: "pub" in m)["pub"]["data"] == {"n": 2}
    assert s.next(lambda m: "pub" in m)["pub"]["data"] == {"n": 3}


def test_subscribe_errors(client):
    with pytest.raises(CentApiResponseError) as e:
        client.subscribe(SubscribeRequest(user="u", channel=""))
    assert api_error(e) == 107
    with pytest.raises(CentApiResponseError) as e:
        client.subscribe(SubscribeRequest(user="u", channel="nosuchnamespace:x"))
    assert api_error(e) == 102
    with pytest.raises(CentApiResponseError) as e:
        client.unsubscribe(UnsubscribeRequest(user="u", channel="nosuchnamespace:x"))
    assert api_error(e) == 102


# ---- disconnect, refresh


def test_disconnect_default_code(client, streams):
    user = unique("user")
    s = streams(user)
    client.disconnect(DisconnectRequest(user=user))
    message = s.next(lambda m: "disconnect" in m)
    assert message["disconnect"]["code"] == 3503
    assert message["disconnect"]["reason"] == "force disconnect"
    s.wait_closed()


def test_disconnect_custom_code_and_whitelist(client, streams):
    user = unique("user")
    spared, gone = streams(user), streams(user)
    client.disconnect(
        DisconnectRequest(user=user, whitelist=[spared.client], disconnect=Disconnect(code=4001, reason="bye"))
    )
    assert gone.next(lambda m: "disconnect" in m)["disconnect"] == {"code": 4001, "reason": "bye"}
    gone.wait_closed()
    spared.quiet(lambda m: "disconnect" in m)
    assert not spared.closed.is_set()


def test_disconnect_by_client_and_session(client, streams):
    user = unique("user")
    a, b, c = streams(user), streams(user), streams(user)
    client.disconnect(DisconnectRequest(user=user, client=a.client))
    a.next(lambda m: "disconnect" in m)
    client.disconnect(DisconnectRequest(user=user, session=b.session))
    b.next(lambda m: "disconnect" in m)
    c.quiet(lambda m: "disconnect" in m)


def test_refresh_pushes_new_expiry(client, streams):
    user = unique("user")
    s = streams(user, ttl=60)
    client.refresh(RefreshRequest(user=user, expire_at=int(time.time()) + 600))
    refresh = s.next(lambda m: "refresh" in m)["refresh"]
    assert refresh["expires"] is True and 590 <= refresh["ttl"] <= 600


def test_refresh_expired_closes_with_3005(client, streams):
    user = unique("user")
    s = streams(user)
    client.refresh(RefreshRequest(user=user, expired=True))
    assert s.next(lambda m: "disconnect" in m)["disconnect"]["code"] == 3005
    s.wait_closed()


# ---- channels, info


def test_channels_lists_active_channels(client, streams):
    prefix = unique("chans")
    user = unique("user")
    s = streams(user)
    client.subscribe(SubscribeRequest(user=user, channel=prefix + "_a"))
    client.subscribe(SubscribeRequest(user=user, channel=prefix + "_b"))
    s.next(lambda m: m.get("channel") == prefix + "_a" and "subscribe" in m)
    s.next(lambda m: m.get("channel") == prefix + "_b" and "subscribe" in m)
    channels = client.channels(ChannelsRequest(pattern=prefix + "_*")).channels
    assert sorted(channels) == [prefix + "_a", prefix + "_b"]
    assert channels[prefix + "_a"].num_clients == 1
    assert list(client.channels(ChannelsRequest(pattern=prefix + "_[b]")).channels) == [prefix + "_b"]
    assert prefix + "_a" in client.channels(ChannelsRequest()).channels


def test_info(client, streams):
    s = streams(unique("user"))
    nodes = client.info(InfoRequest()).nodes
    # One node natively; at the edge, one per node object (edge_node_count).
    assert len(nodes) == int(os.environ.get("TEST_NODE_COUNT", "1"))
    node = max(nodes, key=lambda n: n.num_clients)
    assert node.uid and node.name and node.version
    assert node.num_clients >= 1 and node.num_users >= 1
    assert node.uptime >= 0
    assert s.client


# ---- batch, rpc


def test_batch(client):
    ch = unique()
    result = client.batch(
        BatchRequest(
            requests=[
                PublishRequest(channel=ch, data={"n": 1}),
                PublishRequest(channel=ch, data={"n": 2}),
                HistoryRequest(channel=ch, limit=-1),
                PresenceStatsRequest(channel=ch),
                InfoRequest(),
            ]
        )
    )
    publish1, publish2, history, stats, info = result.replies
    assert (publish1.offset, publish2.offset) == (1, 2)
    assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}], "sequential: history sees both"
    assert stats.num_clients == 0
    assert info.nodes[0].uid


def test_batch_parallel_and_errors(client, raw):
    ch = unique()
    result = client.batch(
        BatchRequest(requests=[PublishRequest(channel=ch, data={"n": n}) for n in range(5)], parallel=True)
    )
    assert sorted(r.offset for r in result.replies) == [1, 2, 3, 4, 5]
    status, body = raw.api(
        "batch",
        {"commands": [{"publish": {"channel": "nosuchnamespace:x", "data": {}}}, {"nosuchmethod": {}}, {"info": {}}]},
    )
    assert status == 200
    assert body["replies"][0] == {"error": {"code": 102, "message": "unknown channel"}}
    assert body["replies"][1]["error"]["code"] == 104
    assert "info" in body["replies"][2]


def test_rpc_without_handler_is_not_found(raw):
    status, body = raw.api("rpc", {"method": "getUser", "params": {"id": 1}})
    assert status == 200 and body == {"error": {"code": 104, "message": "not found"}}
    status, body = raw.api("rpc", {"method": ""})
    assert body["error"]["code"] == 107


def test_unknown_namespace_is_102(client):
    with pytest.raises(CentApiResponseError) as e:
        client.publish(PublishRequest(channel="nosuchnamespace:chat", data={"x": 1}))
    assert e.value.code == 102 and e.value.message == "unknown channel"
