"""tools/ws_client.py against a running `neuralign serve --synthetic`: it receives
every frame kind, its subscription is honoured, and the alignment summary agrees
with numpy on the r matrix it came with."""
import json
import os
import pathlib
import re
import signal
import subprocess
import sys

import numpy as np

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BIN = pathlib.Path(os.environ.get("NEURALIGN_BIN", TARGET / "debug" / "neuralign"))


def start_server():
    assert BIN.exists(), f"{BIN} missing: run `cargo build` first (or set NEURALIGN_BIN)"
    env = dict(os.environ, LSLAPICFG=str(REPO / "configs" / "lsl_api.cfg"), RUST_LOG="warn")
    proc = subprocess.Popen(
        [str(BIN), "serve", "--synthetic", "--electrodes", "16", "--bind", "127.0.0.1:0"],
        stdout=subprocess.PIPE, text=True, env=env)
    line = proc.stdout.readline()
    m = re.match(r"dashboard: http://(\S+)/", line)
    assert m, f"unexpected first line {line!r}"
    return proc, f"ws://{m.group(1)}/ws"


def client(url, *args):
    out = subprocess.run([sys.executable, str(REPO / "tools" / "ws_client.py"), url, "--json", *args],
                         capture_output=True, text=True, timeout=60, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def test_client_receives_frames_and_summary_matches_numpy():
    proc, url = start_server()
    try:
        frames = client(url, "--count", "20")
        kinds = [f["type"] for f in frames]
        assert {"hello", "alignment", "trace", "word"} <= set(kinds), kinds
        hello = frames[0]
        assert hello["type"] == "hello" and len(hello["session"]["electrodes"]) == 16
        assert hello["subscription"] == {"electrodes": [0, 1, 2, 3], "layers": list(range(31)), "models": [0],
                                         "rate": 0.0}
        # every per-model frame names the session's one model
        assert [m["name"] for m in hello["session"]["models"]] == ["synthetic"]
        assert all(f["model"]["name"] == "synthetic" for f in frames if f["type"] in ("alignment", "trace", "word"))
        for a in [f for f in frames if f["type"] == "alignment"][-3:]:
            r = np.array([[np.nan if v is None else v for v in row] for row in a["r"]])
            assert r.shape == (16, 31)
            np.testing.assert_array_equal(np.nanargmax(r, axis=1), a["summary"]["peak_layer"])
            np.testing.assert_allclose(np.nanmean(r, axis=0), a["summary"]["mean_r"], rtol=1e-5)
            above = int((np.nanmax(r, axis=1) > a["chance"]).sum())
            assert a["summary"]["electrodes_above_chance"] == above

        frames = client(url, "--count", "10", "--electrodes", "A1,3", "--layers", "2,5", "--models", "synthetic",
                        "--rate", "5")
        after = frames[[f["type"] for f in frames].index("subscribed"):]
        assert after[0]["subscription"] == {"electrodes": [0, 3], "layers": [2, 5], "models": [0], "rate": 5.0}
        traces = [f for f in after if f["type"] == "trace"]
        assert traces and all(t["electrodes"] == [0, 3] and t["layers"] == [2, 5] for t in traces)
        assert all(np.shape(t["predicted"]) == (2, 2, len(t["actual"][0])) for t in traces)
        narrowed = [f for f in after if f["type"] == "alignment"]
        assert all(f["layers"] == [2, 5] and np.shape(f["r"]) == (16, 2) for f in narrowed)
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
