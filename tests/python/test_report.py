"""`neuralign report` end to end on a small simulated session (docs/statistics.md, §6).

`simulate` draws a 90-second session (6 electrodes, half of them non-responsive); `fit`
writes its encoders and `--json` statistics; `report` on the same session recomputes the
statistics from the encoder file (the transcript embedded again by the real model, the
encoders' predictions of the held-out tail, the same shifts and bootstrap) and must give the
fit's figures: the same peak layers, intervals, p, q and significance, r to 1e-6. The TSV,
`--json`, the SVG figures and the HTML page are read back: the SVGs and the page parse as
XML, the page links only files beside it and states how the figures were computed.
"""
import csv
import json
import os
import pathlib
import subprocess
import xml.etree.ElementTree as ET

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
TARGET = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
BIN = pathlib.Path(os.environ.get("NEURALIGN_BIN", TARGET / "debug" / "neuralign"))
ENV = dict(os.environ, LSLAPICFG=str(REPO / "configs" / "lsl_api.cfg"), RUST_LOG="warn")
SVG = "{http://www.w3.org/2000/svg}"
COLUMNS = ["label", "group", "peak_layer", "peak_layer_ci_lo", "peak_layer_ci_hi", "r", "p",
           "q", "significant"]


def neuralign(*args, cwd):
    return subprocess.run([str(BIN), *map(str, args)], cwd=cwd, env=ENV, check=True,
                          stdout=subprocess.PIPE, text=True, timeout=300).stdout


def texts(root):
    return " ".join(t.text or "" for t in root.iter(f"{SVG}text"))


def test_report_of_the_fit_session_reproduces_fit_json(tmp_path):
    assert BIN.exists(), f"{BIN} missing: run `cargo build` first (or set NEURALIGN_BIN)"
    neuralign("simulate", "--out", "s.xdf", "--electrodes", 6, "--minutes", 1.5, "--seed", 3,
              "--null-fraction", 0.5, cwd=tmp_path)
    neuralign("fit", "s.xdf", "--out", "enc.safetensors", "--layers", "0,10,20,30", "--pcs", 8,
              "--holdout", 0.3, "--shifts", 200, "--seed", 4, "--live-window-s", 8,
              "--json", "fit.json", cwd=tmp_path)
    fit = json.loads((tmp_path / "fit.json").read_text())
    assert fit["live"]["window"] == 800  # 8 s of simulate's 100 Hz high-gamma
    summary = json.loads(neuralign("report", "s.xdf", "--encoders", "enc.safetensors",
                                   "--out", "report", "--json", cwd=tmp_path))
    out = tmp_path / "report"

    # the statistics: the fit's, recomputed from the encoder file on the held-out tail
    assert summary["source"]["path"] == "offline" and summary["source"]["span"] == "held-out"
    assert summary["source"]["samples"] == fit["test_samples"]
    with open(out / "electrodes.tsv", newline="") as f:
        reader = csv.reader(f, delimiter="\t")
        assert next(reader) == COLUMNS
        rows = [dict(zip(COLUMNS, line)) for line in reader]
    assert [r["label"] for r in rows] == [e["label"] for e in fit["electrodes"]]
    assert any(e["significant"] for e in fit["electrodes"]), "no significant electrode to draw"
    for row, want, js in zip(rows, fit["electrodes"], summary["electrodes"]):
        assert row["group"] == "e" == js["group"]
        assert int(row["peak_layer"]) == want["peak_layer"] == js["peak_layer"]
        ci = [int(row["peak_layer_ci_lo"]), int(row["peak_layer_ci_hi"])]
        assert ci == want["peak_layer_ci"] == js["peak_layer_ci"]
        assert abs(float(row["r"]) - want["r"]) < 1e-6 and float(row["r"]) == js["r"]
        assert float(row["p"]) == want["p"] == js["p"]
        assert float(row["q"]) == want["q"] == js["q"]
        assert (row["significant"] == "true") == want["significant"] == js["significant"]

    # the figures: well-formed SVG with the elements they are about
    significant = sum(e["significant"] for e in fit["electrodes"])
    profiles = ET.parse(out / "profiles.svg").getroot()
    assert profiles.tag == f"{SVG}svg"
    assert f"{significant} significant of 6 electrodes" in texts(profiles)
    assert "relative layer depth (layer / 30)" in texts(profiles)
    # one line per significant electrode and the mean (plotters draws lines as polylines)
    assert len(list(profiles.iter(f"{SVG}polyline"))) >= significant + 1
    peaks = ET.parse(out / "peak_layers.svg").getroot()
    assert "model layer" in texts(peaks)
    null = ET.parse(out / "null.svg").getroot()
    assert "200 circular shifts" in texts(null)
    assert all(e["label"] in texts(null) for e in fit["electrodes"])
    assert len(list(null.iter(f"{SVG}circle"))) >= 6

    # the page: well-formed, relative links to files beside it only, the procedure stated
    page = ET.parse(out / "index.html").getroot()
    links = [a.get("href") for a in page.iter("a")] + [i.get("src") for i in page.iter("img")]
    assert sorted(links) == sorted(["electrodes.tsv", "statistics.md", "profiles.svg",
                                    "peak_layers.svg", "null.svg"])
    assert all((out / link).is_file() for link in links)
    text = " ".join(page.itertext())
    assert page.find(".//p[@id='source']").get("data-path") == "offline"
    facts = ["200 circular shifts", "seed 4", "q ≤ 0.05", "with 5 inner folds",
             f"purge gap of {fit['gap_samples']} samples", "1000 replicates",
             "§2 Null distribution", "window 800 samples"]
    for fact in facts:
        assert fact in text, fact


def test_serve_keeps_its_results_in_the_recording(tmp_path):
    """A session replayed into `serve` with recording on: the results streams of the recording
    (docs/xdf.md, "Results") hold what the WebSocket sent in the same run, and pylsl sees
    the same streams as LSL outlets (docs/lsl.md, "Results outlets")."""
    import re
    import signal

    import numpy as np
    import pylsl
    import pyxdf

    from test_ws_e2e import collect_frames

    assert BIN.exists(), f"{BIN} missing: run `cargo build` first (or set NEURALIGN_BIN)"
    seed = 17000 + os.getpid() % 10000  # its own stream source ids
    neuralign("simulate", "--out", "s.xdf", "--electrodes", 4, "--minutes", 1.5, "--seed", seed,
              cwd=tmp_path)
    neuralign("fit", "s.xdf", "--out", "enc.safetensors", "--layers", "0,10", "--pcs", 4,
              "--holdout", 0.3, "--shifts", 100, cwd=tmp_path)
    config = tmp_path / "serve.toml"
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
[recording]
enabled = true
directory = "rec"
subject = "test"
session = "01"
[pipeline]
alignment_hz = 20.0
""")
    streams, _ = pyxdf.load_xdf(str(tmp_path / "s.xdf"), dejitter_timestamps=False)
    (hg,) = [s for s in streams if s["info"]["source_id"] == [f"neuralign-sim-{seed}-hg"]]
    samples, rate = len(hg["time_series"]), float(hg["info"]["nominal_srate"][0])
    serve = subprocess.Popen([str(BIN), "serve", "--config", str(config)], cwd=tmp_path, env=ENV,
                             stdout=subprocess.PIPE, text=True)
    try:
        m = re.match(r"dashboard: http://(\S+)/", serve.stdout.readline())
        assert m
        # at 8x (11 s): enough 20 Hz updates with a full window to compare (as fast as
        # possible, the count depends on how fast the language model takes the words)
        replay = [str(BIN), "replay", "s.xdf", "--speed", "8", "--wait-for-consumers"]
        frames = collect_frames(f"ws://{m.group(1)}/ws", replay, tmp_path, samples, rate)
        # the same results as LSL outlets (loopback), named by the server's pid
        outlets = {}
        for name in ["neuralign-alignment", "neuralign-peak-layer", "neuralign-significance",
                     "neuralign-alignment-layers", "neuralign-words"]:
            found = pylsl.resolve_byprop("source_id", f"{name}-{serve.pid}", timeout=10)
            assert len(found) == 1, name
            outlets[name] = found[0]
    finally:
        serve.send_signal(signal.SIGINT)
        assert serve.wait(timeout=60) == 0

    hello = next(f for f in frames if f["type"] == "hello")
    labels, layers = hello["session"]["electrodes"], hello["session"]["layers"]
    calibrated = bool(hello["session"]["null_threshold"])
    assert calibrated, "the fit's 27-s tail calibrates the live threshold for the 10-s window"
    recording = pathlib.Path(hello["session"]["recording"])
    kept, _ = pyxdf.load_xdf(str(recording), dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in kept}
    alignment = by_name["neuralign-alignment"]
    peak = by_name["neuralign-peak-layer"]
    per_layer = by_name["neuralign-alignment-layers"]
    words = by_name["neuralign-words"]
    for s in (alignment, peak):
        chans = s["info"]["desc"][0]["channels"][0]["channel"]
        assert [c["label"][0] for c in chans] == labels
    assert float(alignment["info"]["nominal_srate"][0]) == 0.0

    for name, info in outlets.items():
        assert info.name() == name and info.nominal_srate() == 0.0
    assert outlets["neuralign-alignment"].channel_count() == len(labels)
    assert outlets["neuralign-alignment"].type() == "Alignment"
    assert outlets["neuralign-alignment-layers"].channel_count() == len(labels) * len(layers)
    assert outlets["neuralign-words"].type() == "Markers"

    # every alignment update whose horizon advanced, stamped at its horizon
    sent = {}
    for f in frames:
        if f["type"] == "alignment":
            sent.setdefault(f["horizon"], f)
    stamps = list(alignment["time_stamps"])
    assert len(stamps) >= len(sent) > 10 and stamps == sorted(set(stamps))
    index = {t: i for i, t in enumerate(stamps)}
    nan = float("nan")
    for horizon, f in sent.items():
        i = index[horizon]
        s = f["summary"]
        want = np.array([nan if v is None else v for v in s["peak_r"]], dtype=np.float32)
        np.testing.assert_allclose(alignment["time_series"][i], want, atol=1e-6)
        assert list(peak["time_series"][i]) == [-1 if v is None else v for v in s["peak_layer"]]
        if calibrated:
            assert list(by_name["neuralign-significance"]["time_series"][i]) == [
                int(v) for v in s["significant"]]
        if i % 20 == 0:  # the per-layer r: one update in alignment_hz / 1 Hz
            j = i // 20
            assert per_layer["time_stamps"][j] == horizon
            want = np.array([[nan if v is None else v for v in row] for row in f["r"]])
            np.testing.assert_allclose(per_layer["time_series"][j],
                                       want.reshape(-1).astype(np.float32), atol=1e-6)
    assert list(per_layer["time_stamps"]) == stamps[::20]
    assert len(per_layer["time_series"][0]) == len(labels) * len(layers)
    if calibrated:
        assert len(by_name["neuralign-significance"]["time_stamps"]) == len(stamps)

    # every word event, as the WebSocket sent it
    sent_words = [{k: v for k, v in f.items() if k != "type"} for f in frames if f["type"] == "word"]
    kept_words = [json.loads(x[0]) for x in words["time_series"]]
    assert kept_words == sent_words and len(sent_words) > 50

    # `report` on the recording: path `recording` summarises the saved streams (checked here
    # with numpy), path `replay` pushes the recording's own neural and transcript streams
    # through the live alignment and must give the saved values. Bound: both sides are the
    # same f64 arithmetic rounded to float32 (the streams' format), so equal inputs give equal
    # values; 1e-5 leaves room for the language model's batched forward pass (report) and its
    # word-by-word one with the KV cache (serve) to differ in the last bits of an embedding
    # (measured: 0). Updates whose window is not yet full (the first 10 s, and after a segment
    # boundary) are not compared: there the r of a few samples is not the calibrated statistic.
    summary = json.loads(neuralign("report", recording, "--encoders", "enc.safetensors",
                                   "--out", "report", "--json", cwd=tmp_path))
    assert summary["source"]["path"] == "offline"
    rec = summary["recording"]
    assert rec["source"] == {"path": "recording", "updates": len(stamps),
                             "layer_updates": len(per_layer["time_stamps"]),
                             "significance": calibrated}
    assert rec["layers"] == layers
    saved_r = np.asarray(per_layer["time_series"], dtype=np.float64)
    profile = np.nanmean(saved_r, axis=0).reshape(len(labels), len(layers))
    share = np.mean(np.asarray(by_name["neuralign-significance"]["time_series"]) == 1, axis=0)
    for k, e in enumerate(rec["electrodes"]):
        assert e["label"] == labels[k]
        np.testing.assert_allclose(e["profile"], profile[k], atol=1e-9)
        assert e["peak_layer"] == layers[int(np.argmax(profile[k]))]
        assert e["share_significant"] == pytest.approx(share[k])
        assert e["threshold"] == pytest.approx(hello["session"]["null_threshold"][k], abs=1e-6)
    check = rec["replay"]
    assert check["source"]["path"] == "replay" and check["source"]["segments"] == 0
    assert check["update_moments"] > 10 and check["layer_moments"] >= 1
    assert check["update_moments"] + check["partial_window_moments"] == len(stamps)
    assert check["max_abs_diff_r"] <= 1e-5 and check["max_abs_diff_peak_r"] <= 1e-5, check
    assert check["nan_mismatches"] == 0
    assert check["significance_calls"] == check["update_moments"] * len(labels)
    assert check["significance_agreement"] >= 0.99, check
    out = tmp_path / "report"
    page = ET.parse(out / "index.html").getroot()
    paths = {p.get("id"): p.get("data-path") for p in page.iter("p") if p.get("data-path")}
    assert paths == {"source": "offline", "recording": "recording", "replay": "replay"}
    assert "live.svg" in [i.get("src") for i in page.iter("img")]
    live = ET.parse(out / "live.svg").getroot()
    assert "with their live thresholds" in texts(live)
    assert len(list(live.iter(f"{SVG}polyline"))) >= len(labels)
