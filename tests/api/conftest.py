"""Shared helpers for the server API suite: the `cent` client, raw HTTP calls, connection
tokens, and unidirectional HTTP-stream clients that collect their pushes.

Environment: ROTOR_URL (e.g. http://127.0.0.1:8000), ROTOR_API_KEY, and ROTOR_HMAC_SECRET
(the server's token_hmac_secret_key; defaults to the one in tests/config/api.json).
"""

import base64
import hashlib
import hmac
import http.client
import json
import os
import pathlib
import queue
import socket
import threading
import time
import urllib.parse
import uuid

import pytest
from cent import Client

CONFIG = pathlib.Path(__file__).resolve().parent.parent / "config" / "api.json"


def _env(name, default=None):
    value = os.environ.get(name, default)
    if not value:
        pytest.exit(f"{name} is not set: run tests/api/run.sh, or export it", returncode=2)
    return value


ROTOR_URL = _env("ROTOR_URL").rstrip("/")
ROTOR_API_KEY = _env("ROTOR_API_KEY")
ROTOR_HMAC_SECRET = os.environ.get("ROTOR_HMAC_SECRET") or json.loads(CONFIG.read_text())["token_hmac_secret_key"]


def unique(prefix="apitest"):
    """A channel or user name no other test (or earlier run) uses."""
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def token(user: str, ttl: int = 3600, **claims) -> str:
    """An HS256 connection token, signed by hand (no JWT library needed)."""
    header = {"alg": "HS256", "typ": "JWT"}
    payload = {"sub": user, "exp": int(time.time()) + ttl, **claims}
    signing_input = b64url(json.dumps(header).encode()) + "." + b64url(json.dumps(payload).encode())
    signature = hmac.new(ROTOR_HMAC_SECRET.encode(), signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + b64url(signature)


class Raw:
    """Plain HTTP to the server, for what the `cent` client does not expose."""

    def __init__(self, base: str, key: str):
        self.base = base
        self.key = key

    def request(self, method, path, body=b"", headers=None, key=True):
        url = urllib.parse.urlsplit(self.base + path)
        conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        h = {"Content-Type": "application/json"}
        if key:
            h["X-API-Key"] = self.key
        h.update(headers or {})
        if isinstance(body, (dict, list)):
            body = json.dumps(body).encode()
        elif isinstance(body, str):
            body = body.encode()
        target = url.path + (f"?{url.query}" if url.query else "")
        conn.request(method, target, body=body, headers=h)
        resp = conn.getresponse()
        data = resp.read()
        conn.close()
        return resp.status, dict((k.lower(), v) for k, v in resp.getheaders()), data

    def api(self, method, params, headers=None):
        """POST /api/<method>: (status, decoded JSON)."""
        status, _, data = self.request("POST", f"/api/{method}", params, headers)
        return status, json.loads(data)


class UniStream:
    """A unidirectional HTTP-stream connection. A thread reads its NDJSON lines into a queue."""

    def __init__(self, base: str, user: str, ttl: int = 3600):
        url = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
        body = json.dumps({"token": token(user, ttl)})
        self.conn.request("POST", "/connection/uni_http_stream", body=body, headers={"Content-Type": "application/json"})
        # Keep the socket: http.client hands it to the response (and forgets it) when the
        # server says `Connection: close`, which streams do.
        self.sock = self.conn.sock
        self.resp = self.conn.getresponse()
        assert self.resp.status == 200, f"uni_http_stream answered {self.resp.status}: {self.resp.read()!r}"
        self.messages = queue.Queue()
        self.closed = threading.Event()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()
        first = self.next(lambda m: "connect" in m)
        self.connect = first["connect"]
        self.client = self.connect["client"]
        self.session = self.connect.get("session", "")

    def _read(self):
        try:
            while True:
                line = self.resp.readline()
                if not line:
                    break
                line = line.strip()
                if line:
                    self.messages.put(json.loads(line))
        except Exception:  # the socket was shut down under the reader, or the stream broke
            pass
        finally:
            self.closed.set()

    def next(self, predicate=lambda m: True, timeout=5.0):
        """The next message matching `predicate` (pings `{}` and others are skipped)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no matching message in time")
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                raise AssertionError("no matching message in time") from None
            if message and predicate(message):
                return message

    def quiet(self, predicate, wait=0.5):
        """Asserts no message matching `predicate` arrives within `wait` seconds."""
        try:
            message = self.next(predicate, timeout=wait)
        except AssertionError:
            return
        raise AssertionError(f"unexpected message: {message}")

    def wait_closed(self, timeout=5.0):
        assert self.closed.wait(timeout), "the stream did not end"

    def close(self):
        try:
            if self.sock is not None:
                self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.conn.close()
        self.thread.join(timeout=5)


@pytest.fixture(scope="session")
def client():
    return Client(ROTOR_URL + "/api", ROTOR_API_KEY, timeout=10)


@pytest.fixture(scope="session")
def raw():
    return Raw(ROTOR_URL, ROTOR_API_KEY)


@pytest.fixture
def streams():
    """Opens uni HTTP-stream connections: `streams(user)`; all are closed after the test."""
    opened = []

    def open_stream(user, ttl=3600):
        s = UniStream(ROTOR_URL, user, ttl)
        opened.append(s)
        return s

    yield open_stream
    for s in opened:
        s.close()
