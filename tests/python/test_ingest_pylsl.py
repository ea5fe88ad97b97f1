"""pylsl (an independent LSL implementation) streams neural data and a transcript into
`neuralign listen --json`; the report must account for every sample, word and malformed
message. Needs the built binary (cargo build) and pylsl; LSL stays on loopback."""
import json
import os
import pathlib
import subprocess
import threading
import time
import uuid

import pytest

import pylsl

REPO = pathlib.Path(__file__).resolve().parents[2]
os.environ["LSLAPICFG"] = str(REPO / "configs" / "lsl_api.cfg")


def neuralign_binary() -> pathlib.Path:
    candidates = [os.environ.get("NEURALIGN_BIN")]
    target = os.environ.get("CARGO_TARGET_DIR", str(REPO / "target"))
    candidates += [os.path.join(target, "debug", "neuralign"), os.path.join(target, "release", "neuralign")]
    for c in candidates:
        if c and os.path.exists(c):
            return pathlib.Path(c)
    pytest.fail("neuralign binary not found: run `cargo build` or set NEURALIGN_BIN")


def stream_neural(name: str, seconds: float, rate: float, started: threading.Event, pushed: list):
    info = pylsl.StreamInfo(name, "iEEG", 8, rate, "float32", name)
    outlet = pylsl.StreamOutlet(info)
    deadline = time.time() + 10
    while not outlet.have_consumers() and time.time() < deadline:
        time.sleep(0.01)
    started.set()
    t0 = pylsl.local_clock()
    n = int(seconds * rate)
    for k in range(n):
        while pylsl.local_clock() < t0 + k / rate:
            time.sleep(0.0005)
        outlet.push_sample([float(k)] * 8, t0 + k / rate)
        pushed.append(k)
    time.sleep(0.5)


def stream_words(name: str, started: threading.Event, messages: list):
    info = pylsl.StreamInfo(name, "Transcript", 1, 0, "string", name)
    outlet = pylsl.StreamOutlet(info)
    deadline = time.time() + 10
    while not outlet.have_consumers() and time.time() < deadline:
        time.sleep(0.01)
    started.set()
    time.sleep(0.3)
    for m in messages:
        outlet.push_sample([m])
        time.sleep(0.02)
    time.sleep(1.0)


def test_listen_reports_every_sample_word_and_rejection_from_pylsl():
    tag = uuid.uuid4().hex[:8]
    neural, words = f"py-neural-{tag}", f"py-words-{tag}"
    now = pylsl.local_clock()
    good = [
        json.dumps({"kind": "word", "id": i, "text": t, "start": now + 5 + i, "end": now + 5.3 + i, "final": True})
        for i, t in enumerate(["we", "went", "to", "Paris"])
    ]
    bad = ["{oops", '{"kind":"word","id":1}', '{"kind":"dance"}', "[1,2,3]"]
    messages = good[:2] + bad[:2] + good[2:] + bad[2:] + ["bare-marker"]
    started = [threading.Event(), threading.Event()]
    pushed = []
    threads = [
        threading.Thread(target=stream_neural, args=(neural, 2.0, 250.0, started[0], pushed)),
        threading.Thread(target=stream_words, args=(words, started[1], messages)),
    ]
    for t in threads:
        t.start()
    proc = subprocess.run(
        [str(neuralign_binary()), "listen", "--neural", f"source_id={neural}", "--transcript", words,
         "--seconds", "4", "--json"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )
    for t in threads:
        t.join()
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    n = report["neural"]
    assert n["stream"]["name"] == neural and n["stream"]["channels"] == 8
    assert n["samples"] == len(pushed) == 500
    assert n["gap_count"] == 0 and n["dropped_chunks"] == 0
    assert abs(n["measured_rate"] - 250.0) < 1.0
    assert n["latency"]["count"] == 500
    t = report["transcript"]
    assert t["messages"] == len(messages)
    assert t["counts"]["words"] == 5  # four words and the bare marker
    assert t["counts"]["rejected"] == {"malformed_json": 1, "missing_field": 1, "unknown_kind": 1, "not_an_object": 1}
    assert t["transcript_words"] == 5
