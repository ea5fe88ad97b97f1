"""`/metrics` read by an independent parser (prometheus_client): every family parses and is
declared once, counters end in `_total`, the stage latencies are histograms with cumulative
buckets up to `+Inf` (equal to `_count`), each model's step latency a summary whose quantiles
rise with q, and the stream-health families carry their labels.

One test runs `neuralign serve --synthetic` (no model, no LSL); the other a live session
(real pylsl outlets, tools/faults.py), where the values must match the status frames."""
from __future__ import annotations

import math
import re
import subprocess
import urllib.request

import pytest
from websockets.sync.client import connect

import faults

parser = pytest.importorskip("prometheus_client.parser")

STAGES = {"neural_arrival", "transcript_arrival", "tokenize", "lm_step", "encode", "score",
          "frame_send", "end_to_end"}
STREAMS = {"neural", "transcript"}


def scrape(addr: str) -> dict:
    """`/metrics` parsed, checked for the conventions every family must follow; by name."""
    with urllib.request.urlopen(f"http://{addr}/metrics", timeout=10) as r:
        assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = r.read().decode()
    families = list(parser.text_string_to_metric_families(text))
    names = [f.name for f in families]
    assert len(names) == len(set(names)), f"a family declared twice: {names}"
    for f in families:
        # a sample without its family's HELP/TYPE would parse as an `unknown` family
        assert f.type in {"counter", "gauge", "histogram", "summary"}, (f.name, f.type)
        assert re.fullmatch(r"neuralign_[a-z0-9_]+", f.name), f.name
        assert f.documentation, f"{f.name} has no HELP"
        if f.type == "counter":
            assert all(s.name == f.name + "_total" for s in f.samples), f.name
            assert all(s.value >= 0 for s in f.samples), f.name
        if f.type == "histogram":
            check_histogram(f)
        if f.type == "summary":
            check_summary(f)
    return {f.name: f for f in families}


def check_summary(family):
    """Per label set: quantiles in (0, 1) whose values rise with q, `_sum` and `_count`."""
    series: dict[tuple, dict] = {}
    for s in family.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "quantile"))
        one = series.setdefault(key, {"quantiles": []})
        suffix = s.name[len(family.name):]
        if suffix == "":
            one["quantiles"].append((float(s.labels["quantile"]), s.value))
        else:
            one[suffix] = s.value
    assert series, f"{family.name} has no samples"
    for key, one in series.items():
        qs = sorted(one["quantiles"])
        assert qs and all(0 < q < 1 for q, _ in qs), (key, qs)
        values = [v for _, v in qs]
        assert one["_count"] == 0 or values == sorted(values), f"{key}: quantiles fall: {qs}"
        assert one["_count"] >= 0 and one["_sum"] >= 0, key


def check_histogram(family):
    """Per label set: buckets ascending in `le`, counts cumulative, the last `+Inf` = `_count`."""
    series: dict[tuple, dict] = {}
    for s in family.samples:
        key = tuple(sorted((k, v) for k, v in s.labels.items() if k != "le"))
        one = series.setdefault(key, {"buckets": []})
        suffix = s.name[len(family.name):]
        if suffix == "_bucket":
            one["buckets"].append((float(s.labels["le"]), s.value))
        else:
            one[suffix] = s.value
    assert series, f"{family.name} has no samples"
    for key, one in series.items():
        bounds = [b for b, _ in one["buckets"]]
        counts = [c for _, c in one["buckets"]]
        assert len(bounds) >= 15 and bounds == sorted(bounds) and len(set(bounds)) == len(bounds), key
        assert bounds[0] <= 1e-4 and bounds[-2] >= 1.0 and math.isinf(bounds[-1]), (key, bounds)
        assert counts == sorted(counts), f"{key}: buckets not cumulative: {counts}"
        assert counts[-1] == one["_count"], key
        assert one["_sum"] >= 0, key


def by_label(family, label: str) -> dict[str, float]:
    return {s.labels[label]: s.value for s in family.samples}


def check_stream_health(m: dict):
    """The stream-health families with their types and labels."""
    for name, kind in [("neuralign_stream_connected", "gauge"), ("neuralign_stream_samples", "counter"),
                       ("neuralign_stream_lost", "counter"), ("neuralign_stream_recovered", "counter")]:
        assert m[name].type == kind, name
        assert set(by_label(m[name], "stream")) == STREAMS, name
    assert set(by_label(m["neuralign_stream_gaps"], "stream")) == {"neural"}
    assert set(by_label(m["neuralign_stream_connected"], "stream").values()) <= {0.0, 1.0}
    for name in ["neuralign_stream_lag_seconds", "neuralign_horizon_lag_seconds",
                 "neuralign_lm_queue_length"]:
        assert m[name].type == "gauge", name
    for name in ["neuralign_transcript_rejected", "neuralign_pipeline_dropped",
                 "neuralign_pipeline_errors"]:
        assert m[name].type == "counter", name


def test_synthetic_session_metrics_follow_the_conventions(tmp_path):
    proc = subprocess.Popen([str(faults.neuralign_bin()), "serve", "--synthetic", "--electrodes", "4",
                             "--bind", "127.0.0.1:0"], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        addr = re.match(r"dashboard: http://(\S+?)/", proc.stdout.readline()).group(1)
        with connect(f"ws://{addr}/ws", max_size=None) as ws:
            for _ in range(20):  # frames written to a socket: frame_send latencies
                ws.recv(timeout=10)
        m = scrape(addr)
    finally:
        proc.kill()
        proc.wait()
    stages = m["neuralign_stage_latency_seconds"]
    assert stages.type == "histogram"
    assert {s.labels["stage"] for s in stages.samples} == STAGES
    sent = [s.value for s in stages.samples
            if s.name.endswith("_count") and s.labels["stage"] == "frame_send"]
    assert sent[0] >= 20
    check_stream_health(m)
    assert by_label(m["neuralign_stream_connected"], "stream") == {"neural": 1.0, "transcript": 1.0}


def test_live_session_stream_health_matches_the_status(serve):
    srv = serve()
    src, words = faults.start_sources(srv)
    try:
        words.send("{not json")
        st = srv.wait_status(lambda s: s["horizon"] is not None
                             and s["errors"].get("transcript_malformed_json", 0) >= 1,
                             30, "the session to start and the bad message to be counted")
        m = scrape(srv.addr)
    finally:
        src.close()
    check_stream_health(m)
    assert by_label(m["neuralign_stream_connected"], "stream") == {"neural": 1.0, "transcript": 1.0}
    assert by_label(m["neuralign_transcript_rejected"], "reason")["malformed_json"] >= 1
    # counters read after the status frame: never behind it
    samples = by_label(m["neuralign_stream_samples"], "stream")
    statuses = {s["role"]: s for s in st["streams"]}
    assert samples["neural"] >= statuses["neural"]["samples"] > 0
    dropped = by_label(m["neuralign_pipeline_dropped"], "kind")
    assert {"neural_chunks", "neural_samples", "lm_outputs"} <= set(dropped)
    assert "lm_queue_waiting" not in dropped
    errors = by_label(m["neuralign_pipeline_errors"], "kind")
    assert "words_not_embedded" in errors and not any(k.startswith("transcript_") for k in errors)
    # lags on the server's LSL clock: a live stream is behind by about one status period
    [horizon_lag] = [s.value for s in m["neuralign_horizon_lag_seconds"].samples]
    neural_lag = by_label(m["neuralign_stream_lag_seconds"], "stream")["neural"]
    assert -1.0 < neural_lag < 10.0 and -1.0 < horizon_lag < 30.0, (neural_lag, horizon_lag)
    # each model's steps, labelled by its model, never fewer than the status frame counted
    [model] = st["models"]
    steps = {s.labels["model"]: s.value for s in m["neuralign_model_lm_step_seconds"].samples
             if s.name.endswith("_count")}
    assert list(steps) == [model["name"]] and steps[model["name"]] >= model["lm_step"]["count"]
    assert srv.alive()
