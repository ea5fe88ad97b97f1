"""End to end with the Python example client: a simulated session is replayed over LSL
(loopback) into `neuralign serve`, and the `hello`, `word`, `trace` and `alignment` frames
that tools/ws_client.py prints must equal a numpy computation on the same session, done
from the documented files only (docs/encoders.md, docs/embeddings.md, docs/websocket.md):
the encoder file, the per-word embeddings of the transcript (`neuralign embed`), the
session's high-gamma (read with pyxdf) and its ground truth (word texts and onsets)."""
import csv
import json
import os
import pathlib
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pyxdf
from safetensors import safe_open
from safetensors.numpy import load_file

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BIN = pathlib.Path(os.environ.get("NEURALIGN_BIN", TARGET / "debug" / "neuralign"))
ENV = dict(os.environ, LSLAPICFG=str(REPO / "configs" / "lsl_api.cfg"), RUST_LOG="warn")

ELECTRODES = 4  # new clients trace the first four electrodes: all of them here
LAYERS = [0, 6, 21, 30]
WINDOW_S = 5.0
CHANCE_SHIFT_S = 2.0
CV_THRESHOLD = 0.1


def neuralign(*args, cwd):
    subprocess.run([str(BIN), *map(str, args)], cwd=cwd, env=ENV, check=True,
                   stdout=subprocess.DEVNULL, timeout=120)


def round_half_away(x):
    """Rounding as docs/encoders.md specifies (half away from zero, not numpy's half to even)."""
    x = np.asarray(x, dtype=np.float64)
    return (np.sign(x) * np.floor(np.abs(x) + 0.5)).astype(np.int64)


def prepare_session(tmp, seed):
    """simulate -> fit -> embed the true transcript; returns the serve config path."""
    neuralign("simulate", "--out", "s.xdf", "--electrodes", ELECTRODES, "--minutes", 1,
              "--seed", seed, cwd=tmp)
    layers = ",".join(map(str, LAYERS))
    neuralign("fit", "s.xdf", "--out", "enc.safetensors", "--layers", layers, "--pcs", 4,
              "--folds", 3, "--tmax", 0.4, cwd=tmp)
    truth = json.loads((tmp / "s.truth.json").read_text())
    with open(tmp / "words.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["word", "start", "end"])
        w.writerows([x["text"], repr(x["start"]), repr(x["end"])] for x in truth["words"])
    neuralign("embed", "--transcript", "words.csv", "--out", "emb.safetensors",
              "--layers", layers, cwd=tmp)
    config = tmp / "serve.toml"
    config.write_text(f"""
[lsl]
api_config = "{REPO / 'configs' / 'lsl_api.cfg'}"
[neural]
stream = {{ source_id = "neuralign-sim-{seed}-hg" }}
mode = "high_gamma"
[transcript]
stream = {{ source_id = "neuralign-sim-{seed}-transcript" }}
[server]
bind = "127.0.0.1:0"
queue_frames = 4096
[encoders]
path = "enc.safetensors"
[align]
window_s = {WINDOW_S}
chance_shift_s = {CHANCE_SHIFT_S}
cv_threshold = {CV_THRESHOLD}
[recording]
enabled = false
[pipeline]
alignment_hz = 20.0
""")
    return config, truth


def lines_of(pipe):
    """The lines of a pipe through a queue, so that reading can time out."""
    q = queue.Queue()

    def pump():
        for line in pipe:
            q.put(line)
        q.put(None)

    threading.Thread(target=pump, daemon=True).start()
    return q


def collect_frames(url, replay_cmd, tmp, samples, rate, timeout=150):
    """Runs tools/ws_client.py --json while the session is replayed; returns its frames up to
    the first alignment frame whose horizon covers all `samples` of the session."""
    client = subprocess.Popen([sys.executable, str(REPO / "tools" / "ws_client.py"), url, "--json"],
                              stdout=subprocess.PIPE, text=True)
    replay = None
    frames, t0 = [], None
    try:
        lines = lines_of(client.stdout)
        replay = subprocess.Popen(replay_cmd, cwd=tmp, env=ENV, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while True:
            line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            assert line is not None, f"the client stopped; frames so far: {len(frames)}"
            frame = json.loads(line)
            frames.append(frame)
            if frame["type"] == "trace" and t0 is None:
                t0 = frame["t0"]
            if (frame["type"] == "alignment" and t0 is not None
                    and frame["horizon"] >= t0 + (samples - 0.5) / rate):
                return frames
    except queue.Empty:
        raise AssertionError(f"no complete alignment within {timeout} s; last frames: {frames[-3:]}")
    finally:
        client.terminate()
        client.wait(timeout=10)
        if replay is not None:
            assert replay.wait(timeout=60) == 0, "replay failed"


def offline_prediction(enc, meta, emb, onsets, samples):
    """docs/encoders.md, "The model": pred[l, t, e] in z-scored units, intercepts included."""
    rate = meta["grid"]["rate"]
    lag_min = int(round_half_away(meta["grid"]["tmin"] * rate))
    lags = enc["weights"].shape[2]
    emb_layers = list(emb["layers"])
    pred = np.zeros((len(meta["layers"]), samples, len(meta["labels"])))
    for l, layer in enumerate(meta["layers"]):
        x = emb["embeddings"][:, emb_layers.index(layer), :].astype(np.float64)
        z = (x - enc["pca_mean"][l]) @ enc["pca_components"][l].T.astype(np.float64) / enc["feature_std"][l]
        kernels = np.einsum("ejp,wp->wje", enc["weights"][l].astype(np.float64), z)  # [words, lags, e]
        for s, kernel in zip(onsets, kernels):
            t = s + lag_min + np.arange(lags)
            keep = (t >= 0) & (t < samples)
            pred[l, t[keep]] += kernel[keep]
        pred[l] += enc["intercepts"][l]
    return pred


def pearson(x, y):
    x, y = x - x.mean(), y - y.mean()
    return float((x * y).sum() / np.sqrt((x * x).sum() * (y * y).sum()))


def test_replayed_session_through_serve_and_python_client_equals_numpy(tmp_path):
    assert BIN.exists(), f"{BIN} missing: run `cargo build` first (or set NEURALIGN_BIN)"
    seed = 7000 + os.getpid() % 10000  # its own stream source ids: no clash with other sessions
    print(f"seed {seed}")
    config, truth = prepare_session(tmp_path, seed)
    streams, _ = pyxdf.load_xdf(str(tmp_path / "s.xdf"), dejitter_timestamps=False)
    (hg_stream,) = [s for s in streams if s["info"]["source_id"] == [f"neuralign-sim-{seed}-hg"]]
    hg = np.asarray(hg_stream["time_series"], dtype=np.float32)
    first_stamp = hg_stream["time_stamps"][0]
    samples = len(hg)
    rate = float(hg_stream["info"]["nominal_srate"][0])

    serve = subprocess.Popen([str(BIN), "serve", "--config", str(config)], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, text=True)
    try:
        line = serve.stdout.readline()
        m = re.match(r"dashboard: http://(\S+)/", line)
        assert m, f"unexpected first line {line!r}"
        replay = [str(BIN), "replay", "s.xdf", "--speed", "max", "--wait-for-consumers"]
        frames = collect_frames(f"ws://{m.group(1)}/ws", replay, tmp_path, samples, rate)
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=30) == 0

    enc = load_file(tmp_path / "enc.safetensors")
    with safe_open(tmp_path / "enc.safetensors", "np") as f:
        meta = json.loads(f.metadata()["neuralign"])
    emb = load_file(tmp_path / "emb.safetensors")

    hello = next(f for f in frames if f["type"] == "hello")
    assert hello["session"]["electrodes"] == meta["labels"]
    assert hello["session"]["layers"] == meta["layers"] == LAYERS
    assert hello["session"]["rates"]["high_gamma_hz"] == rate
    assert hello["session"]["window_s"] == WINDOW_S
    # a 1-minute fit has no statistics, hence no live calibration: no live significance
    assert meta["statistics"] is None and hello["session"]["null_threshold"] == []
    alignments = [f for f in frames if f["type"] == "alignment"]
    assert alignments and all(a["summary"]["significant"] == [] for a in alignments)
    assert hello["subscription"]["electrodes"] == list(range(ELECTRODES))

    # trace frames: contiguous from the session's first sample, every sample exactly once
    traces = [f for f in frames if f["type"] == "trace"]
    t0 = traces[0]["t0"]
    actual = np.concatenate([np.array(t["actual"], dtype=np.float64) for t in traces], axis=1)
    predicted = np.concatenate([np.array(t["predicted"], dtype=np.float64) for t in traces], axis=2)
    starts = [round((t["t0"] - t0) * rate) for t in traces]
    assert starts == list(np.cumsum([0] + [len(t["actual"][0]) for t in traces[:-1]]))
    assert all(t["electrodes"] == list(range(ELECTRODES)) and t["layers"] == LAYERS for t in traces)
    assert actual.shape == (ELECTRODES, samples), "every sample of the session was scored"

    # word frames, as finally committed, are the session's words at their sample-rounded onsets.
    # The server maps the sender's clock onto its own with liblsl's clock correction (its
    # estimate is off by microseconds even on one machine), so a word within 0.01 sample of
    # a half sample may round either way: the prediction uses the onsets the frames carry.
    committed = {}
    for f in (f for f in frames if f["type"] == "word"):
        if f["status"] == "retracted":
            committed.pop(f["id"])
        else:
            committed[f["id"]] = (f["text"], f["onset"])
            assert set(f["latency_ms"]) == {"arrival", "lm_queue", "tokenize", "forward", "embed", "total"}, f
    missing = sorted(set(range(len(truth["words"]))) - set(committed))
    assert not missing and len(committed) == len(truth["words"]), (missing, frames[-1])
    onsets = round_half_away([(committed[i][1] - t0) * rate for i in range(len(committed))])
    for i, w in enumerate(truth["words"]):
        text, onset = committed[i]
        assert text == w["text"], (i, text, w)
        assert abs(onset - (t0 + onsets[i] / rate)) < 1e-6, "onsets lie on the sample grid"
        exact = (w["start"] - first_stamp) * rate
        near = ({int(round_half_away(exact))} if abs(exact % 1 - 0.5) > 0.01
                else {int(np.floor(exact)), int(np.ceil(exact))})
        assert onsets[i] in near, (i, onset - t0, w)

    # trace values against numpy: actual z-scored with the encoder's statistics, predicted
    # by PCA projection and the TRF kernel at onset + lag
    act = ((hg - enc["neural_mean"]) / enc["neural_std"]).astype(np.float64)  # [samples, e]
    np.testing.assert_allclose(actual, act.T, rtol=1e-4, atol=1e-5)
    pred = offline_prediction(enc, meta, emb, onsets, samples)  # [layers, samples, e]
    scale = np.abs(pred).max()
    np.testing.assert_allclose(predicted, pred.transpose(2, 0, 1), rtol=1e-4, atol=1e-4 * scale)

    # the final alignment: rolling Pearson r over the last window before the horizon
    alignment = next(f for f in reversed(frames) if f["type"] == "alignment")
    assert abs(alignment["horizon"] - (t0 + samples / rate)) < 1e-6
    window = int(round_half_away(WINDOW_S * rate))
    r_off = np.array([[pearson(pred[l, samples - window:, e], act[samples - window:, e])
                       for l in range(len(LAYERS))] for e in range(ELECTRODES)])
    r_live = np.array(alignment["r"], dtype=np.float64)
    np.testing.assert_allclose(r_live, r_off, rtol=1e-4, atol=1e-5)
    # its chance level: the prediction delayed by chance_shift_s, over the same window
    shift = int(round_half_away(CHANCE_SHIFT_S * rate))
    lo = max(shift, samples - window)
    chance = np.array([[pearson(pred[l, lo - shift:samples - shift, e], act[lo:, e])
                        for e in range(ELECTRODES)] for l in range(len(LAYERS))])
    selected = (enc["cv_r"] >= CV_THRESHOLD).any(axis=0)
    expected = chance[:, selected].mean() if selected.any() else chance.mean()
    assert abs(alignment["chance"] - expected) < 1e-5, (alignment["chance"], expected)
    # the encoders find the word responses the simulation planted
    responsive = [e["responsive"] for e in truth["electrodes"]]
    session_r = [max(pearson(pred[l, :, e], act[:, e]) for l in range(len(LAYERS)))
                 for e in range(ELECTRODES) if responsive[e]]
    assert session_r and min(session_r) > 0.1, session_r

    status = [f for f in frames if f["type"] == "status"][-1]
    assert status["client"]["dropped"] == 0
    assert not any(v for k, v in status["drops"].items() if k != "lm_queue_waiting"), status
