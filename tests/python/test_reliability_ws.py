"""Reliability: hostile and numerous WebSocket clients on a running `neuralign serve` with a
live pipeline. Other clients and ingest must not notice; every drop and refusal is counted."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

import faults


def metrics(srv, token: str | None = None) -> dict[str, float]:
    req = urllib.request.Request(f"http://{srv.addr}/metrics")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    text = urllib.request.urlopen(req, timeout=10).read().decode()
    return {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+) (\S+)$", text, re.M)}


@pytest.fixture
def live(serve):
    """A server on a live neural stream, with a well-behaved client collecting frames."""
    def start(**kwargs):
        srv = serve(**kwargs)
        src = faults.NeuralSource(srv.neural_id)
        src.wait_consumer()
        src.start()
        srv.wait_status(lambda s: s["horizon"] is not None, 20, "the session to start")
        started.append(src)
        return srv
    started = []
    yield start
    for src in started:
        src.close()


def test_200_clients_connecting_and_dropping(live, reliability_row):
    counts = {}
    reliability_row("load", "200 WebSocket clients connect, read `hello` and drop (half without a close "
                    "handshake), 20 at a time; then 70 held open at once with max_clients = 64",
                    "every client within the limit served; beyond it HTTP 503 (counted); a well-behaved "
                    "client loses nothing; the count returns to 1; ingest drops nothing", counts)
    srv = live(max_clients=64)
    good = faults.FrameCollector(srv.url())
    time.sleep(0.5)
    counts.update(faults.flood_connections(srv.url(), 200))
    assert counts["hello"] == 200 and counts["failed"] == 0, counts
    held, refused = [], 0
    for _ in range(70):
        try:
            ws = faults.open_ws(srv.url(), open_timeout=10)
            ws.recv(timeout=10)
            held.append(ws)
        except InvalidStatus as e:
            assert e.response.status_code == 503
            refused += 1
    counts["held_open"], counts["refused_503"] = len(held), refused
    assert len(held) == 63 and refused == 7  # 64 minus the well-behaved client
    for ws in held:
        ws.close()
    st = srv.wait_status(lambda s: s["clients"] == 2, 20, "the clients to be gone")  # good + probe
    m = metrics(srv)
    counts["rejected_client_limit"] = int(m['neuralign_ws_rejected_total{reason="client_limit"}'])
    assert counts["rejected_client_limit"] == 7
    aligned = len(good.of("alignment"))
    statuses = good.of("status")
    counts["good_client_frames"] = len(good.frames)
    counts["good_client_dropped"] = statuses[-1]["client"]["dropped"]
    assert aligned > 0 and statuses[-1]["client"]["dropped"] == 0
    assert st["drops"]["neural_chunks"] == 0
    good.close()
    assert srv.alive()


def test_client_that_never_reads(live, reliability_row):
    counts = {}
    reliability_row("load", "a client that never reads (4 KiB receive buffer) beside a normal one, 8 s, "
                    "queue_frames = 8",
                    "its frames are dropped and counted (`neuralign_ws_frames_dropped_total`); the normal "
                    "client drops nothing; ingest unaffected", counts)
    srv = live(queue_frames=8)
    good = faults.FrameCollector(srv.url())
    stuck = faults.never_reads(srv.addr)
    try:
        faults.wait_until(lambda: metrics(srv).get("neuralign_ws_frames_dropped_total", 0) > 20, 60,
                          "frames dropped for the stuck client")
        time.sleep(1.0)
        st = srv.status()
    finally:
        stuck.close()
    m = metrics(srv)
    statuses = good.of("status")
    counts.update(dropped_for_stuck_client=int(m["neuralign_ws_frames_dropped_total"]),
                  good_client_frames=len(good.frames), good_client_dropped=statuses[-1]["client"]["dropped"],
                  neural_chunks_dropped=st["drops"]["neural_chunks"])
    assert statuses[-1]["client"]["dropped"] == 0
    assert st["drops"]["neural_chunks"] == 0
    good.close()
    assert srv.alive()


def test_oversized_and_malformed_client_messages(live, reliability_row):
    counts = {}
    reliability_row("bad input", "client messages: not JSON, a binary frame, an unknown type, a subscribe to "
                    "unknown electrodes, 20 KB (over max_message_bytes), then 300 KB (over 16x)",
                    "an `error` frame for each (malformed, unsupported_binary, malformed, bad_subscription, "
                    "message_too_large), the connection kept; the 300 KB one closes it with 1009; others "
                    "unaffected", counts)
    srv = live()
    good = faults.FrameCollector(srv.url())
    ws = faults.open_ws(srv.url(), max_size=None)
    sent = ["not json at all", b"\x00\x01binary", json.dumps({"type": "dance"}),
            json.dumps({"type": "subscribe", "electrodes": ["nope", 999]}),
            json.dumps({"type": "subscribe", "electrodes": "all", "pad": "x" * 20_000})]
    expected = ["malformed", "unsupported_binary", "malformed", "bad_subscription", "message_too_large"]
    codes = []
    for message in sent:
        ws.send(message)
        while True:
            frame = json.loads(ws.recv(timeout=10))
            if frame["type"] == "error":
                codes.append(frame["code"])
                break
    counts["error_codes"] = "/".join(codes)
    assert codes == expected
    ws.send(json.dumps({"type": "subscribe", "rate": 2}))
    while json.loads(ws.recv(timeout=10))["type"] != "subscribed":
        pass
    ws.send("y" * 300_000)
    with pytest.raises(ConnectionClosed) as closed:
        while True:
            ws.recv(timeout=10)
    counts["close_code"] = closed.value.rcvd.code if closed.value.rcvd else None
    assert counts["close_code"] == 1009
    m = metrics(srv)
    counts["client_errors_total"] = int(sum(v for k, v in m.items() if k.startswith("neuralign_ws_client_errors_total")))
    time.sleep(0.5)
    assert good.of("status")[-1]["client"]["dropped"] == 0 and srv.alive()
    good.close()


def test_connection_without_the_token(live, reliability_row):
    counts = {}
    reliability_row("bad input", "a server with `token` set: WebSocket and /metrics without a token, with a "
                    "wrong one, then with the right one (query and Bearer header)",
                    "HTTP 401 without or with a wrong token; served with the right one", counts)
    srv = live(token="s3cret-Tok")
    statuses = []
    for url in [srv.url(token=""), srv.url(token="wrong")]:
        with pytest.raises(InvalidStatus) as refused:
            faults.open_ws(url, open_timeout=10)
        statuses.append(refused.value.response.status_code)
    with pytest.raises(urllib.error.HTTPError) as http:
        metrics(srv)
    statuses.append(http.value.code)
    counts["refused_statuses"] = "/".join(map(str, statuses))
    assert statuses == [401, 401, 401]
    with connect(srv.url(), open_timeout=10) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    with connect(srv.url(token=""), additional_headers={"Authorization": "Bearer s3cret-Tok"}) as ws:
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    m = metrics(srv, "s3cret-Tok")
    counts["rejected_unauthorized"] = int(m['neuralign_ws_rejected_total{reason="unauthorized"}'])
    assert counts["rejected_unauthorized"] == 3
    counts["served_with_token"] = 2
    assert srv.alive()
