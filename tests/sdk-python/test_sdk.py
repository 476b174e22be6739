"""The official Python SDK (PyPI centrifuge-python, unmodified) against rotor, over WebSocket
with JSON and with Protobuf: a delta-compressed stream decoded to the original documents, live
and through recovery; rpc without a handler answers 108; recovery from an empty epoch."""

import asyncio
import base64
import hashlib
import hmac
import json
import os
import secrets
import time
import urllib.request

import pytest
from centrifuge import (
    Client,
    DeltaType,
    PublicationContext,
    StreamPosition,
    SubscribedContext,
    SubscriptionEventHandler,
)
from centrifuge.exceptions import ReplyError

URL = os.environ.get("ROTOR_URL", "http://127.0.0.1:8000").rstrip("/")
WS = URL.replace("http", "ws", 1) + "/connection/websocket"
API_KEY = os.environ.get("ROTOR_API_KEY", "rotor-sdk-test-api-key")
SECRET = os.environ.get("ROTOR_HMAC_SECRET", "rotor-sdk-test-secret-0123456789abcdef")


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(user: str) -> str:
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64url(json.dumps({"sub": user, "exp": int(time.time()) + 3600}).encode())
    sig = hmac.new(SECRET.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(sig)}"


def publish(channel: str, data) -> None:
    req = urllib.request.Request(
        f"{URL}/api/publish",
        data=json.dumps({"channel": channel, "data": data}).encode(),
        headers={"X-API-Key": API_KEY, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as res:
        body = json.loads(res.read())
    assert "error" not in body, body


def doc(n: int) -> dict:
    """A realistic document (about 2 KB of JSON) whose version and one price change."""
    items = [
        {"id": i, "name": f"product {i}", "price": 100 + n if i == n % 24 else 100, "tags": ["a", "b"], "stock": i * 3}
        for i in range(24)
    ]
    return {"version": n, "updated": f"2026-11-30T18:00:{n % 60:02d}Z", "items": items}


class Events(SubscriptionEventHandler):
    def __init__(self):
        self.pubs = []
        self.subscribed = []

    async def on_publication(self, ctx: PublicationContext) -> None:
        self.pubs.append(ctx.pub)

    async def on_subscribed(self, ctx: SubscribedContext) -> None:
        self.subscribed.append(ctx)


async def until(cond, what: str, seconds: float = 8.0):
    deadline = time.monotonic() + seconds
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


def value(data, protobuf: bool):
    return json.loads(bytes(data)) if protobuf else data


def payload(data, protobuf: bool):
    return json.dumps(data).encode() if protobuf else data


def client(protobuf: bool) -> Client:
    user = "py-" + secrets.token_hex(4)
    return Client(WS, token=token(user), use_protobuf=protobuf, min_reconnect_delay=0.1, max_reconnect_delay=1.0)


MODES = [pytest.param(False, id="json"), pytest.param(True, id="protobuf")]


@pytest.mark.parametrize("protobuf", MODES)
def test_delta_stream_decodes_to_the_documents_live_and_after_recovery(protobuf):
    async def run():
        c = client(protobuf)
        channel = "delta:py-" + secrets.token_hex(4)
        events = Events()
        sub = c.new_subscription(channel, events, delta=DeltaType.FOSSIL)
        await c.connect()
        await sub.subscribe()
        await sub.ready(5)
        for n in range(1, 6):
            publish(channel, doc(n))
        await until(lambda: len(events.pubs) == 5, "five publications")
        assert [p.delta for p in events.pubs] == [False, True, True, True, True]
        assert [value(p.data, protobuf) for p in events.pubs] == [doc(n) for n in range(1, 6)]

        await c.disconnect()
        for n in range(6, 9):
            publish(channel, doc(n))
        await c.connect()
        await until(lambda: len(events.subscribed) == 2, "the resubscribe")
        assert events.subscribed[1].recovered is True
        await until(lambda: len(events.pubs) == 8, "three recovered publications")
        publish(channel, doc(9))
        await until(lambda: len(events.pubs) == 9, "a live publication after recovery")
        assert [value(p.data, protobuf) for p in events.pubs] == [doc(n) for n in range(1, 10)]
        assert events.pubs[-1].delta is True
        await c.disconnect()

    asyncio.run(run())


@pytest.mark.parametrize("protobuf", MODES)
def test_rpc_without_a_handler_is_108(protobuf):
    async def run():
        c = client(protobuf)
        await c.connect()
        with pytest.raises(ReplyError) as err:
            await c.rpc("getUser", payload({}, protobuf))
        assert err.value.code == 108
        await c.disconnect()

    asyncio.run(run())


@pytest.mark.parametrize("protobuf", MODES)
def test_recovery_from_an_empty_epoch(protobuf):
    async def run():
        c = client(protobuf)
        channel = "delta:py-state-" + secrets.token_hex(4)
        for n in range(1, 4):
            publish(channel, {"n": n})
        calls = []

        async def get_state(ch: str) -> StreamPosition:
            calls.append(ch)
            return StreamPosition(offset=1, epoch="")

        events = Events()
        sub = c.new_subscription(channel, events, get_state=get_state)
        await c.connect()
        await sub.subscribe()
        await until(lambda: len(events.pubs) == 2, "publications after offset 1")
        assert events.subscribed[0].recovered is True
        assert [value(p.data, protobuf) for p in events.pubs] == [{"n": 2}, {"n": 3}]
        assert len(calls) == 1
        await c.disconnect()

    asyncio.run(run())
