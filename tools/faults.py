"""Fault injection for the reliability suite (tests/python/test_reliability_*.py).

- `Serve`: a real `neuralign serve` process with its own config, stream selectors and
  recording folder; status frames, word frames, SIGINT and SIGKILL.
- `NeuralSource`: a pylsl iEEG outlet at a fixed rate whose sample values encode their index
  (value = index * channels + channel, exact in float32), so that a recording can be checked
  sample by sample; it can jump its clock, send NaN/Inf and be closed and reopened.
- `TranscriptSource`: a pylsl string outlet for the transcript JSON contract (and garbage).
- Hostile WebSocket clients: `flood_connections`, `never_reads`.
- `python3 tools/faults.py neural --source-id ID ...` runs a `NeuralSource` in its own
  process, so that a test can SIGKILL a real outlet; it logs each pushed index and stamp.

Every LSL program here needs LSLAPICFG pointing at configs/lsl_api.cfg (set on import).
"""
from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Callable

REPO = pathlib.Path(__file__).resolve().parents[1]
os.environ.setdefault("LSLAPICFG", str(REPO / "configs" / "lsl_api.cfg"))

import pylsl  # noqa: E402  (after LSLAPICFG: liblsl reads it once, when loaded)
from websockets.sync.client import connect as ws_connect  # noqa: E402


def neuralign_bin() -> pathlib.Path:
    """The binary under test: NEURALIGN_BIN, else /work/bin/neuralign, else target/debug."""
    candidates = [os.environ.get("NEURALIGN_BIN"), "/work/bin/neuralign",
                  os.path.join(os.environ.get("CARGO_TARGET_DIR", str(REPO / "target")), "debug", "neuralign")]
    for c in candidates:
        if c and os.path.exists(c):
            return pathlib.Path(c)
    raise FileNotFoundError("neuralign binary not found: run `cargo build` or set NEURALIGN_BIN")


def wait_until(predicate: Callable[[], object], timeout: float, what: str, every: float = 0.1):
    """Polls `predicate` until it returns something truthy; fails with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(every)


def open_ws(url: str, **kwargs):
    """A sync WebSocket connection kept open beyond one `with` block (close it yourself)."""
    return ws_connect(url, **kwargs).__enter__()


# --------------------------------------------------------------------------- LSL outlets

class NeuralSource:
    """A regular-rate float32 iEEG outlet pushed in real time from a thread.

    `pushed` holds (index, stamp) of every sample pushed; `value(index, channel)` is what the
    sample carried unless `poison` replaced it (then `poisoned` lists the indices)."""

    def __init__(self, source_id: str, channels: int = 4, rate: float = 100.0, first_index: int = 0,
                 labels: list[str] | None = None, log: pathlib.Path | None = None):
        self.source_id, self.channels, self.rate = source_id, channels, rate
        self.labels = labels or [f"e{c + 1:03d}" for c in range(channels)]
        self.next_index = first_index
        self.clock_offset = 0.0          # added to every stamp (a clock jump)
        self.poison: list[float] = []    # values for the next samples (NaN, Inf)
        self.poisoned: list[int] = []
        self.pushed: list[tuple[int, float]] = []
        self.log = open(log, "a", buffering=1) if log else None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.outlet = self._open()

    def _open(self) -> pylsl.StreamOutlet:
        info = pylsl.StreamInfo(self.source_id, "iEEG", self.channels, self.rate, "float32", self.source_id)
        chans = info.desc().append_child("channels")
        for label in self.labels:
            chans.append_child("channel").append_child_value("label", label)
        return pylsl.StreamOutlet(info)

    def value(self, index: int, channel: int) -> float:
        return float(index * self.channels + channel)

    def wait_consumer(self, timeout: float = 40.0):
        wait_until(self.outlet.have_consumers, timeout, f"a consumer of {self.source_id}")

    def start(self):
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"neural-{self.source_id}", daemon=True)
        self._thread.start()
        return self

    def _run(self):
        t0 = pylsl.local_clock()
        k0 = self.next_index
        while not self._stop.is_set():
            due = k0 + int((pylsl.local_clock() - t0) * self.rate) + 1
            rows, stamps = [], []
            while self.next_index < due:
                k = self.next_index
                row = [self.value(k, c) for c in range(self.channels)]
                if self.poison:
                    row[k % self.channels] = self.poison.pop(0)
                    self.poisoned.append(k)
                stamp = t0 + (k - k0) / self.rate + self.clock_offset
                self.outlet.push_sample(row, stamp)
                rows.append(k)
                stamps.append(stamp)
                self.next_index += 1
            self.pushed.extend(zip(rows, stamps))
            if self.log and rows:
                self.log.write("".join(f"{k} {s!r}\n" for k, s in zip(rows, stamps)))
            time.sleep(0.01)

    def pause(self):
        """Stops pushing (the outlet stays open)."""
        self._stop.set()
        if self._thread:
            self._thread.join()

    def close(self):
        """Stops pushing and destroys the outlet: the stream disappears."""
        self.pause()
        del self.outlet
        self.outlet = None

    def reopen(self):
        """A new outlet with the same source_id (a restarted amplifier app)."""
        self.outlet = self._open()
        return self


class TranscriptSource:
    """A transcript outlet: one string channel, irregular rate."""

    def __init__(self, source_id: str):
        self.source_id = source_id
        self.sent: list[str] = []
        self.outlet = self._open()

    def _open(self):
        return pylsl.StreamOutlet(pylsl.StreamInfo(self.source_id, "Transcript", 1, 0, "string", self.source_id))

    def wait_consumer(self, timeout: float = 40.0):
        wait_until(self.outlet.have_consumers, timeout, f"a consumer of {self.source_id}")

    def send(self, message: str):
        self.outlet.push_sample([message])
        self.sent.append(message)

    def word(self, id: int, text: str, start: float | None = None, dur: float = 0.2, **extra):
        start = pylsl.local_clock() if start is None else start
        self.send(json.dumps({"kind": "word", "id": id, "text": text, "start": start,
                              "end": start + dur, "final": True, **extra}))

    def close(self):
        del self.outlet
        self.outlet = None

    def reopen(self):
        self.outlet = self._open()
        return self


# --------------------------------------------------------------------------- the server

CONFIG = """\
[lsl]
api_config = "{lsl_cfg}"
resolve_timeout_s = 2.0
[neural]
stream = {{ source_id = "{neural}" }}
mode = "high_gamma"
lost_after_s = 1.0
[transcript]
stream = {{ source_id = "{transcript}" }}
silence_timeout_s = 1.0
forget_after_s = {forget_after_s}
[server]
bind = "{bind}"
status_interval_ms = 200
max_clients = {max_clients}
queue_frames = {queue_frames}
{token}
[encoders]
path = "{encoders}"
[recording]
directory = "recordings"
[pipeline]
status_hz = 5.0
[align]
max_wait_s = {max_wait_s}
"""


class Serve:
    """`neuralign serve` on its own config in `workdir` (recordings in workdir/recordings)."""

    def __init__(self, workdir: pathlib.Path, encoders: pathlib.Path, name: str, *,
                 bind: str = "127.0.0.1:0", token: str | None = None, max_clients: int = 32,
                 queue_frames: int = 64, max_wait_s: float = 30.0,
                 forget_after_s: float = 600.0):
        self.workdir = pathlib.Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.neural_id, self.transcript_id = f"{name}-neural", f"{name}-words"
        self.token = token
        self.config = self.workdir / "serve.toml"
        self.config.write_text(CONFIG.format(
            lsl_cfg=REPO / "configs" / "lsl_api.cfg", neural=self.neural_id, transcript=self.transcript_id,
            bind=bind, max_clients=max_clients, queue_frames=queue_frames, encoders=encoders,
            max_wait_s=max_wait_s, forget_after_s=forget_after_s,
            token=f'token = "{token}"' if token else ""))
        self.stderr_path = self.workdir / "serve.stderr"
        self.proc: subprocess.Popen | None = None
        self.addr = ""
        self.stdout_rest = ""

    def start(self) -> "Serve":
        env = dict(os.environ, NO_COLOR="1")
        env.setdefault("RUST_LOG", "info")
        env.pop("NEURALIGN_TOKEN", None)
        self.proc = subprocess.Popen([str(neuralign_bin()), "serve", "--config", str(self.config)],
                                     cwd=self.workdir, stdout=subprocess.PIPE, stderr=open(self.stderr_path, "ab"),
                                     text=True, env=env)
        line = self.proc.stdout.readline()
        m = re.match(r"dashboard: http://(\S+?)/", line)
        if not m:
            raise RuntimeError(f"serve did not start: {line!r}\n{self.stderr()[-3000:]}")
        self.addr = m.group(1)
        return self

    def url(self, token: str | None = None) -> str:
        token = self.token if token is None else token
        return f"ws://{self.addr}/ws" + (f"?token={token}" if token else "")

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self, timeout: float = 10.0) -> dict:
        """A fresh `status` frame (the second one a new client gets, so it is current)."""
        with ws_connect(self.url(), open_timeout=timeout, max_size=None) as ws:
            seen = 0
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                frame = json.loads(ws.recv(timeout=timeout))
                if frame["type"] == "status":
                    seen += 1
                    if seen == 2:
                        return frame
        raise TimeoutError("no status frame")

    def wait_status(self, predicate: Callable[[dict], bool], timeout: float, what: str) -> dict:
        last: dict = {}

        def check():
            nonlocal last
            last = self.status()
            return predicate(last)
        try:
            wait_until(check, timeout, what, every=0.2)
        except TimeoutError as e:
            raise TimeoutError(f"{e}; last status: {json.dumps(last)}") from None
        return last

    def stop(self, timeout: float = 30.0) -> dict:
        """SIGINT; returns the final report the server prints (JSON), with `returncode`."""
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=timeout)
        report = {}
        for line in out.splitlines():
            if line.startswith("{"):
                report = json.loads(line)
        report["returncode"] = self.proc.returncode
        return report

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def recordings(self) -> list[pathlib.Path]:
        return sorted((self.workdir / "recordings").rglob("*.xdf"))

    def close(self):
        if self.alive():
            self.kill()


class FrameCollector:
    """A well-behaved client on its own thread that keeps every frame it receives."""

    def __init__(self, url: str):
        self.frames: list[dict] = []
        self._ws = open_ws(url, max_size=None)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            for message in self._ws:
                self.frames.append(json.loads(message))
        except Exception:  # noqa: BLE001 - the connection ends when the server stops
            pass

    def of(self, kind: str) -> list[dict]:
        return [f for f in list(self.frames) if f["type"] == kind]

    def close(self):
        self._ws.close()
        self._thread.join(timeout=5)


# --------------------------------------------------------------------------- hostile clients

def flood_connections(url: str, clients: int, threads: int = 20) -> dict:
    """`clients` connections, each reading its `hello` and dropping (half close cleanly, half
    just reset the TCP connection). Returns counts of hellos, refusals and other failures."""
    counts = {"hello": 0, "refused": 0, "failed": 0}
    lock = threading.Lock()
    todo = list(range(clients))

    def one(i: int):
        try:
            ws = open_ws(url, open_timeout=20, max_size=None)
            frame = json.loads(ws.recv(timeout=20))
            key = "hello" if frame["type"] == "hello" else "failed"
            if i % 2:
                ws.close()
            else:  # drop without a close handshake
                ws.socket.shutdown(socket.SHUT_RDWR)
                ws.socket.close()
        except Exception as e:  # noqa: BLE001
            key = "refused" if "503" in str(e) else "failed"
        with lock:
            counts[key] += 1

    def worker():
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop()
            one(i)
    pool = [threading.Thread(target=worker) for _ in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return counts


def never_reads(addr: str, path: str = "/ws") -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads. Its receive
    buffer and its segment size are kept tiny (the server's send buffer grows with the segment
    size), so that the server's frames back up into its queue within seconds."""
    host, port = addr.rsplit(":", 1)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    s.connect((host, int(port)))
    s.sendall((f"GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += s.recv(1)
    assert head.startswith(b"HTTP/1.1 101"), head
    return s


# --------------------------------------------------------------------------- subprocess outlet

def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    n = sub.add_parser("neural", help="push a NeuralSource until killed; log 'index stamp' lines")
    n.add_argument("--source-id", required=True)
    n.add_argument("--channels", type=int, default=4)
    n.add_argument("--rate", type=float, default=100.0)
    n.add_argument("--first-index", type=int, default=0)
    n.add_argument("--log", type=pathlib.Path, required=True)
    args = p.parse_args()
    src = NeuralSource(args.source_id, args.channels, args.rate, args.first_index, log=args.log)
    src.wait_consumer(60)
    print("consumer", flush=True)
    src.start()
    while True:  # until a test kills this process
        time.sleep(1)


if __name__ == "__main__":
    sys.exit(main())


def start_sources(srv):
    """A neural outlet and a transcript outlet for `srv`, both connected, the neural one
    streaming: the start of most attacks."""
    src = NeuralSource(srv.neural_id)
    words = TranscriptSource(srv.transcript_id)
    src.wait_consumer()
    words.wait_consumer()
    src.start()
    return src, words
