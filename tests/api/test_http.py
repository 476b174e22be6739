"""The HTTP side of the server API, black-box: methods, keys, bodies, error modes, and the
legacy `POST /api` form."""

import json

import pytest
from cent import CentTransportError, CentUnauthorizedError, Client, InfoRequest

from conftest import ROTOR_API_KEY, ROTOR_URL, unique


def test_non_post_is_405_before_auth(raw):
    for method in ["GET", "PUT", "DELETE"]:
        status, headers, _ = raw.request(method, "/api/info", key=False)
        assert status == 405, method
        assert "POST" in headers.get("allow", "")


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/api/info", {}),
        ("/api/info", {"X-API-Key": "wrong"}),
        ("/api/info", {"Authorization": "apikey wrong"}),
        ("/api/info", {"Authorization": "bearer " + ROTOR_API_KEY}),
        ("/api/info?api_key=wrong", {}),
        ("/api", {}),
    ],
    ids=["no key", "wrong header", "wrong apikey", "bearer scheme", "wrong query", "legacy no key"],
)
def test_401_without_a_valid_key(raw, path, headers):
    status, _, body = raw.request("POST", path, "{}", headers=headers, key=False)
    assert status == 401
    assert body == b""


@pytest.mark.parametrize(
    "path, headers",
    [
        ("/api/info", {"X-API-Key": ROTOR_API_KEY}),
        ("/api/info", {"Authorization": "apikey " + ROTOR_API_KEY}),
        ("/api/info", {"Authorization": "ApiKey " + ROTOR_API_KEY}),
        (f"/api/info?api_key={ROTOR_API_KEY}", {}),
    ],
    ids=["header", "authorization", "authorization any case", "query"],
)
def test_each_way_of_giving_the_key(raw, path, headers):
    status, _, body = raw.request("POST", path, "{}", headers=headers, key=False)
    assert status == 200
    assert json.loads(body)["result"]["nodes"]


def test_cent_raises_unauthorized_on_a_wrong_key():
    with pytest.raises(CentUnauthorizedError):
        Client(ROTOR_URL + "/api", "wrong-key").info(InfoRequest())


def test_400_for_a_body_that_is_not_json(raw):
    status, headers, body = raw.request("POST", "/api/publish", "this is not json")
    assert status == 400
    assert headers["content-type"].startswith("text/plain")
    assert b"JSON" in body


def test_400_for_an_oversized_body():
    """A body over the limit (10 MiB) is refused from its Content-Length. The client goes on
    sending while it waits, as a real one would: the native server answers before the body is
    in, a host whose proxy takes the whole body first (`wrangler dev`) after."""
    import socket
    import threading
    import urllib.parse

    url = urllib.parse.urlsplit(ROTOR_URL)
    size = 11 * 1024 * 1024
    with socket.create_connection((url.hostname, url.port), timeout=30) as sock:
        head = (
            f"POST /api/publish HTTP/1.1\r\nHost: {url.netloc}\r\nX-API-Key: {ROTOR_API_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {size}\r\n\r\n"
        )
        start = b'{"channel":"x","data":"'
        sock.sendall(head.encode() + start)

        def send_rest():
            rest = size - len(start)
            try:
                while rest > 0:
                    n = min(rest, 1 << 20)
                    sock.sendall(b"a" * n)
                    rest -= n
            except OSError:
                pass  # the server answered and closed first

        sender = threading.Thread(target=send_rest, daemon=True)
        sender.start()
        response = b""
        while b"\r\n\r\n" not in response or not response.rstrip().endswith(b"bytes"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
    sender.join(timeout=5)
    assert response.startswith(b"HTTP/1.1 400"), response[:200]
    assert b"larger than the limit" in response


def test_400_for_an_oversized_chunked_body(raw):
    """Without a Content-Length the limit applies while reading."""
    import http.client
    import urllib.parse

    url = urllib.parse.urlsplit(ROTOR_URL)
    conn = http.client.HTTPConnection(url.hostname, url.port, timeout=30)
    piece = b"a" * (1024 * 1024)

    def body():
        yield b'{"channel":"x","data":"'
        for _ in range(11):
            yield piece

    try:
        conn.request("POST", "/api/publish", body=body(), headers={"X-API-Key": ROTOR_API_KEY}, encode_chunked=True)
    except (BrokenPipeError, ConnectionResetError):
        pass  # the server answered and closed before the whole body went out
    resp = conn.getresponse()
    assert resp.status == 400
    assert b"larger than the limit" in resp.read()
    conn.close()


def test_unknown_method_is_104_with_http_200(raw):
    status, body = raw.api("nosuchmethod", {})
    assert status == 200
    assert body == {"error": {"code": 104, "message": "not found"}}


def test_method_errors_are_200_with_an_error_object(raw):
    status, body = raw.api("publish", {"channel": "", "data": {}})
    assert status == 200 and body == {"error": {"code": 107, "message": "bad request"}}


TRANSPORT = {"X-Centrifugo-Error-Mode": "transport"}


@pytest.mark.parametrize(
    "method, params, status, code",
    [
        ("nosuchmethod", {}, 404, 104),
        ("publish", {"channel": "nosuchnamespace:x", "data": {}}, 404, 102),
        ("publish", {"channel": "", "data": {}}, 400, 107),
        ("history", {"channel": "plain:x"}, 400, 108),
        ("history", {"channel": "x", "since": {"offset": 1, "epoch": "wrongepoch"}}, 416, 112),
    ],
    ids=["104", "102", "107", "108", "112"],
)
def test_transport_error_mode(raw, method, params, status, code):
    if code == 112:  # make sure the channel has a stream
        raw.api("publish", {"channel": "x", "data": {"x": 1}})
    got, body = raw.api(method, params, headers=TRANSPORT)
    assert got == status
    assert body["code"] == code and body["message"]
    assert "error" not in body


def test_transport_error_mode_success_keeps_result(raw):
    status, body = raw.api("publish", {"channel": unique(), "data": {"x": 1}}, headers=TRANSPORT)
    assert status == 200 and body["result"]["offset"] == 1


def test_cent_raises_transport_error_in_transport_mode():
    import requests

    session = requests.Session()
    session.headers["X-Centrifugo-Error-Mode"] = "transport"
    with pytest.raises(CentTransportError) as e:
        from cent import PresenceRequest

        Client(ROTOR_URL + "/api", ROTOR_API_KEY, session=session).presence(PresenceRequest(channel="plain:x"))
    assert e.value.status_code == 400


# ---- legacy POST /api


def legacy(raw, *commands):
    body = "\n".join(json.dumps(c) for c in commands)
    status, _, data = raw.request("POST", "/api", body)
    assert status == 200
    return [json.loads(line) for line in data.decode().split("\n")]


def test_legacy_form_by_name_number_and_case(raw):
    ch = unique()
    replies = legacy(
        raw,
        {"id": 1, "method": "publish", "params": {"channel": ch, "data": {"n": 1}}},
        {"id": 2, "method": "PUBLISH", "params": {"channel": ch, "data": {"n": 2}}},
        {"id": 3, "method": 0, "params": {"channel": ch, "data": {"n": 3}}},
        {"id": 4, "method": 6, "params": {"channel": ch, "limit": -1}},
        {"id": 5, "method": "Presence_Stats", "params": {"channel": ch}},
        {"id": "six", "method": "nosuchmethod", "params": {}},
        {"method": "info", "params": {}},
        {"id": 8, "params": {"channel": ch, "data": {"n": 4}}},
    )
    assert [r.get("id") for r in replies] == [1, 2, 3, 4, 5, "six", None, 8]
    assert [r["result"]["offset"] for r in replies[:3]] == [1, 2, 3]
    assert [p["data"]["n"] for p in replies[3]["result"]["publications"]] == [1, 2, 3]
    assert replies[4]["result"] == {"num_clients": 0, "num_users": 0}
    assert replies[5]["error"] == {"code": 104, "message": "not found"}
    assert replies[6]["result"]["nodes"]
    assert replies[7]["result"]["offset"] == 4, "a missing method means publish"


def test_legacy_errors_per_command(raw):
    replies = legacy(
        raw,
        {"id": 1, "method": "publish", "params": {"channel": "nosuchnamespace:x", "data": {}}},
        {"id": 2, "method": "history", "params": {"channel": "plain:x"}},
    )
    assert replies[0] == {"id": 1, "error": {"code": 102, "message": "unknown channel"}}
    assert replies[1]["error"]["code"] == 108


def test_legacy_bad_bodies_are_400(raw):
    assert raw.request("POST", "/api", "")[0] == 400
    assert raw.request("POST", "/api", "not json")[0] == 400
