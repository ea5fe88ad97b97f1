"""Reliability: `neuralign serve` SIGKILLed mid-session. The XDF recording must load (pyxdf and
`neuralign inspect`) up to its last flush (at most about a second before the kill) with every
sample intact, and a restart must write a new file and overwrite nothing."""
from __future__ import annotations

import hashlib
import json
import subprocess
import time

import numpy as np
import pylsl
import pytest

import faults

import pyxdf


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_mid_session_then_restart(serve, reliability_row):
    counts = {}
    reliability_row("crash", "SIGKILL of the server 5 s into a session (100 Hz neural stream, a word every "
                    "0.2 s), then a restart on the same config and folder",
                    "the file loads in pyxdf and `neuralign inspect` without footers, holds every sample "
                    "and message up to its last flush (<= ~1 s before the kill) intact; the restart writes "
                    "a new file and leaves the old one byte for byte", counts)
    srv = serve()
    src, words = faults.start_sources(srv)
    for i in range(25):
        words.word(i, f"word{i}")
        time.sleep(0.2)
    srv.wait_status(lambda s: any(x["role"] == "transcript" and x["samples"] == 25 for x in s["streams"]), 10,
                    "the words to arrive")
    killed_at = pylsl.local_clock()
    srv.kill()
    src.pause()
    [first] = srv.recordings()

    streams, _ = pyxdf.load_xdf(str(first), synchronize_clocks=False, dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    neural = by_name[srv.neural_id]
    series = neural["time_series"]
    index = (series[:, 0] / 4).astype(np.int64)
    np.testing.assert_array_equal(series, index[:, None] * 4 + np.arange(4)[None, :])
    np.testing.assert_array_equal(index, np.arange(len(index)), "a gapless prefix of what was sent")
    pushed = dict(src.pushed)
    np.testing.assert_allclose(neural["time_stamps"], [pushed[k] for k in index], atol=1e-3)
    behind = killed_at - neural["time_stamps"][-1]
    counts.update(neural_recorded=len(index), neural_pushed_before_kill=sum(s <= killed_at for _, s in src.pushed),
                  last_sample_before_kill_s=round(float(behind), 2))
    assert behind <= 1.5, "at most the last flush period (plus ingest latency) is lost"
    received = by_name["neuralign-transcript-received"]
    messages = [m[0] for m in received["time_series"]]
    counts["words_recorded"] = len(messages)
    assert messages == words.sent[:len(messages)] and len(messages) >= 20

    report = json.loads(subprocess.run([str(faults.neuralign_bin()), "inspect", str(first), "--json"],
                                       capture_output=True, text=True, check=True, timeout=60).stdout)
    inspected = {s["name"]: s for s in report["streams"]}
    assert inspected[srv.neural_id]["sample_count"] == len(index)
    assert inspected["neuralign-transcript-received"]["sample_count"] == len(messages)
    assert not inspected[srv.neural_id]["has_footer"]
    counts["inspect_warnings"] = len(report.get("warnings", []))

    before = digest(first)
    size = first.stat().st_size
    srv.start()  # same config, same folder, likely within the same second
    src.start()
    srv.wait_status(lambda s: any(x["role"] == "neural" and x["samples"] > 100 for x in s["streams"]), 30,
                    "the restarted session to ingest")
    assert srv.stop()["returncode"] == 0
    src.close()
    files = srv.recordings()
    counts["files_after_restart"] = len(files)
    assert len(files) == 2 and first in files
    assert digest(first) == before and first.stat().st_size == size, "the first recording is untouched"
    second = next(f for f in files if f != first)
    streams, _ = pyxdf.load_xdf(str(second), synchronize_clocks=False, dejitter_timestamps=False)
    assert any(s["info"]["name"][0] == srv.neural_id and len(s["time_stamps"]) > 100 for s in streams)
