"""Reliability: faults on the LSL inputs of a running `neuralign serve`.

Each test starts the real server on its own stream selectors, misbehaves with real pylsl
outlets (tools/faults.py), and checks what the status frames, the word frames and the XDF
recording show. Nothing received may be lost: every neural sample the server counted is in
the recording with the value it was sent with."""
from __future__ import annotations

import math
import signal
import subprocess
import sys
import time

import numpy as np
import pylsl
import pytest

import faults

import pyxdf


def errors(status: dict) -> dict:
    return status["errors"]


def neural(status: dict) -> dict:
    return next(s for s in status["streams"] if s["role"] == "neural")


def load_neural(path):
    """The recorded neural stream: indices (value of channel 0 / channels), values, stamps."""
    streams, _ = pyxdf.load_xdf(str(path), dejitter_timestamps=False, synchronize_clocks=False)
    by_type = {s["info"]["type"][0]: s for s in streams}
    return by_type.get("iEEG"), by_type.get("Transcript")


def check_values(series: np.ndarray, channels: int) -> np.ndarray:
    """Every recorded row carries the values its index was sent with; returns the indices."""
    index = series[:, 0] / channels
    expected = index[:, None] * channels + np.arange(channels)[None, :]
    finite = np.isfinite(series).all(axis=1)
    np.testing.assert_array_equal(series[finite], expected[finite])
    return index.astype(np.int64)


def spawn_outlet(source_id: str, first_index: int, log) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, str(faults.REPO / "tools" / "faults.py"), "neural",
                             "--source-id", source_id, "--first-index", str(first_index), "--log", str(log)],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "consumer"
    return proc


def logged(log) -> list[int]:
    return [int(line.split()[0]) for line in log.read_text().splitlines() if line.strip()]


def test_neural_outlet_killed_and_restarted(serve, reliability_row, tmp_path):
    counts = {}
    reliability_row("fault", "neural outlet process SIGKILLed after 2 s, restarted 1.5 s later",
                    "stream reported lost, re-resolved and resumed on the same grid; the outage is one gap "
                    "in the status and in the recording; every received sample recorded", counts)
    srv = serve()
    first = spawn_outlet(srv.neural_id, 0, tmp_path / "first.log")
    try:
        srv.wait_status(lambda s: neural(s)["samples"] >= 200, 20, "200 neural samples")
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    srv.wait_status(lambda s: errors(s)["neural_lost"] >= 1, 10, "the loss to be reported")
    time.sleep(0.5)
    second = spawn_outlet(srv.neural_id, 100_000, tmp_path / "second.log")
    try:
        st = srv.wait_status(lambda s: errors(s)["neural_recovered"] >= 1 and neural(s)["samples"] >= 400,
                             20, "recovery and 200 more samples")
    finally:
        second.send_signal(signal.SIGKILL)
        second.wait()
    st = srv.wait_status(lambda s: errors(s)["neural_lost"] >= 2, 10, "the second loss")
    received = neural(st)["samples"]
    counts.update(received=received, neural_lost=errors(st)["neural_lost"],
                  neural_recovered=errors(st)["neural_recovered"], neural_gaps=errors(st)["neural_gaps"],
                  gap_samples_held=errors(st)["neural_gap_samples_held"])
    assert srv.alive()
    report = srv.stop()
    assert report["returncode"] == 0
    assert errors(st)["neural_gaps"] >= 1 and errors(st)["neural_gap_samples_held"] >= 100

    [path] = srv.recordings()
    rec, _ = load_neural(path)
    idx = check_values(rec["time_series"], 4)
    counts["recorded"] = len(idx)
    assert len(idx) == received, "every sample the server received is in the recording"
    pushed = logged(tmp_path / "first.log") + logged(tmp_path / "second.log")
    assert set(idx) <= set(pushed)
    # what was pushed but never arrived is only what the killed processes had in flight
    lost_in_flight = sorted(set(pushed) - set(idx))
    counts["in_flight_at_kill"] = len(lost_in_flight)
    assert all(k > idx[idx < 100_000].max() or k > idx.max() for k in lost_in_flight)
    stamps = rec["time_stamps"]
    jump = np.diff(stamps).max()
    counts["recorded_gap_s"] = round(float(jump), 2)
    assert jump > 1.0, "the outage shows as a gap in the recorded time stamps"


def test_transcript_outlet_gone_for_30_s(serve, reliability_row):
    counts = {}
    reliability_row("fault", "transcript outlet closed for 30 s, then reopened (same source_id)",
                    "loss and recovery reported; neural ingest and the horizon go on meanwhile; words before "
                    "and after get `word` frames; all recorded", counts)
    srv = serve()
    src, words = faults.start_sources(srv)
    client = faults.FrameCollector(srv.url())
    try:
        for i in range(5):
            words.word(i, f"before{i}")
            time.sleep(0.05)
        faults.wait_until(lambda: len(client.of("word")) >= 5, 30, "5 word frames")
        words.close()
        lost = srv.wait_status(lambda s: errors(s)["transcript_lost"] >= 1, 15, "the transcript loss")
        time.sleep(30)
        during = srv.status()
        assert srv.alive()
        counts["horizon_advance_during_outage_s"] = round(during["horizon"] - lost["horizon"], 1)
        assert during["horizon"] > lost["horizon"] + 20, "alignment goes on without the transcript"
        words.reopen()
        words.wait_consumer(20)
        for i in range(5, 10):
            words.word(i, f"after{i}")
            time.sleep(0.05)
        faults.wait_until(lambda: len(client.of("word")) >= 10, 30, "5 more word frames")
        st = srv.wait_status(lambda s: errors(s)["transcript_recovered"] >= 1, 10, "the recovery")
    finally:
        src.close()
        client.close()
    counts.update(transcript_lost=errors(st)["transcript_lost"],
                  transcript_recovered=errors(st)["transcript_recovered"],
                  word_frames=len(client.of("word")), neural_gaps=errors(st)["neural_gaps"])
    assert sorted(f["id"] for f in client.of("word")) == list(range(10))
    srv.stop()
    streams, _ = pyxdf.load_xdf(str(srv.recordings()[0]), synchronize_clocks=False, dejitter_timestamps=False)
    received = next(s for s in streams if s["info"]["name"][0] == "neuralign-transcript-received")
    counts["transcript_recorded"] = len(received["time_series"])
    assert [m[0] for m in received["time_series"]] == words.sent


def test_a_transcript_that_never_advances_its_watermark(serve, reliability_row):
    counts = {}
    reliability_row("fault", "transcript sends a word every 0.4 s for 12 s but never a watermark (so it is "
                    "never silent and its watermark never moves)",
                    "a neural sample waits at most `[align] max_wait_s` (2 s here) of server time, then is "
                    "scored without its words and counted (`drops.samples_scored_before_words`): the horizon "
                    "stays about 2 s behind the newest sample instead of stopping", counts)
    srv = serve(max_wait_s=2.0)
    src, words = faults.start_sources(srv)
    try:
        for i in range(30):
            words.word(i, f"held{i}")
            time.sleep(0.4)
        st = srv.status()
    finally:
        src.close()
    behind = pylsl.local_clock() - st["horizon"]
    expired = st["drops"].get("samples_scored_before_words", 0)
    counts.update(horizon_behind_now_s=round(behind, 2), samples_scored_before_words=expired)
    print(counts)
    assert expired >= 500, f"only {expired} samples expired in 12 s at 100 Hz"
    # 2 s of waiting, plus the status period, the alignment frame period and scheduling slack
    assert behind < 4.0, f"the horizon is {behind:.1f} s behind"
    srv.stop()


def test_clock_jump_forward(serve, reliability_row):
    counts = {}
    reliability_row("fault", "neural time stamps jump 3 s forward mid-stream",
                    "one gap of 300 samples counted; the timeline holds through it; alignment goes on past "
                    "the jump; every sample recorded with its stamp", counts)
    srv = serve()
    src = faults.NeuralSource(srv.neural_id)
    src.wait_consumer()
    src.start()
    try:
        before = srv.wait_status(lambda s: s["horizon"] is not None and neural(s)["samples"] >= 150, 20,
                                 "alignment to start")
        src.clock_offset = 3.0
        jump_at = neural(before)["watermark"]
        st = srv.wait_status(lambda s: errors(s)["neural_gaps"] >= 1 and s["horizon"] and s["horizon"] > jump_at + 4,
                             20, "the gap and the horizon past the jump")
    finally:
        src.pause()
    st = srv.status()
    counts.update(neural_gaps=errors(st)["neural_gaps"], gap_samples_held=errors(st)["neural_gap_samples_held"],
                  backward_steps=errors(st)["neural_backward_steps"], received=neural(st)["samples"])
    assert errors(st)["neural_gaps"] == 1
    assert abs(errors(st)["neural_gap_samples_held"] - 300) <= 2
    srv.stop()
    rec, _ = load_neural(srv.recordings()[0])
    idx = check_values(rec["time_series"], 4)
    counts["recorded"] = len(idx)
    assert len(idx) == neural(st)["samples"] == len(src.pushed)
    pushed = dict(src.pushed)
    np.testing.assert_allclose(rec["time_stamps"], [pushed[k] for k in idx], atol=1e-3)


def test_nan_and_inf_samples(serve, reliability_row):
    counts = {}
    reliability_row("bad input", "30 NaN / +Inf / -Inf values in the neural stream",
                    "each counted (`neural_nonfinite_values`) and held at the channel's last value, so the "
                    "rolling r stays defined; the server keeps aligning; the values recorded as received", counts)
    srv = serve()
    src, words = faults.start_sources(srv)
    client = faults.FrameCollector(srv.url())
    try:
        srv.wait_status(lambda s: s["horizon"] is not None, 20, "alignment to start")
        t = pylsl.local_clock()
        for i in range(20):  # words give the prediction variance, so that r is defined
            words.word(i, f"word{i}", start=t + 0.4 * i)
        faults.wait_until(lambda: any(v is not None for a in client.of("alignment")[-1:] for row in a["r"] for v in row),
                          30, "a defined rolling r")
        src.poison = [math.nan, math.inf, -math.inf] * 10
        faults.wait_until(lambda: not src.poison, 10, "the bad values to be sent")
        st = srv.wait_status(lambda s: errors(s).get("neural_nonfinite_values", 0) >= 30 and
                             s["horizon"] > src.pushed[src.poisoned[-1]][1] + 1, 20, "the bad values counted")
        after = src.pushed[src.poisoned[-1]][1]
        faults.wait_until(lambda: any(a["time"] > after + 0.5 for a in client.of("alignment")), 20,
                          "alignment frames past the bad values")
    finally:
        src.pause()
        client.close()
    later = [a for a in client.of("alignment") if a["time"] > after + 0.5]
    defined = sum(v is not None for row in later[-1]["r"] for v in row)
    counts["defined_r_after"] = f"{defined}/{sum(len(row) for row in later[-1]['r'])}"
    assert defined > 0, "NaN must not poison the rolling correlations"
    counts.update(sent=30, neural_nonfinite_values=errors(st)["neural_nonfinite_values"])
    assert errors(st)["neural_nonfinite_values"] == 30
    assert srv.alive()
    st = srv.status()
    srv.stop()
    rec, _ = load_neural(srv.recordings()[0])
    series = rec["time_series"]
    bad = ~np.isfinite(series)
    counts["recorded_nonfinite"] = int(bad.sum())
    assert bad.sum() == 30 and np.isnan(series).sum() == 10 and np.isposinf(series).sum() == 10
    assert len(series) == neural(st)["samples"]


@pytest.mark.parametrize("case", ["rate", "channels"])
def test_stream_that_does_not_fit_the_encoders(serve, reliability_row, case):
    counts = {}
    what = {"rate": ("a neural stream at 250 Hz; the encoders were fitted at 100 Hz", 4, 250.0, None),
            "channels": ("a neural stream with 3 channels; the encoders have 4 electrodes", 3, 100.0, None)}[case]
    reliability_row("bad input", what[0],
                    "the server keeps running and recording; the status and the log name the mismatch; "
                    "alignment starts once a fitting stream appears", counts)
    srv = serve()
    src = faults.NeuralSource(srv.neural_id, channels=what[1], rate=what[2])
    src.wait_consumer()
    src.start()
    try:
        st = srv.wait_status(lambda s: neural(s).get("error"), 15, "the mismatch in the status")
        message = neural(st)["error"]
        counts["status_error"] = message
        counts["neural_mismatch"] = errors(st)["neural_mismatch"]
        assert errors(st)["neural_mismatch"] == 1
        assert ("250" in message and "100" in message) if case == "rate" else ("e004" in message)
        time.sleep(1.0)
        assert srv.alive() and srv.status()["horizon"] is None
    finally:
        src.close()
    good = faults.NeuralSource(srv.neural_id)
    good.wait_consumer()
    good.start()
    try:
        st = srv.wait_status(lambda s: s["horizon"] is not None and not neural(s).get("error"), 20,
                             "alignment with the fitting stream")
    finally:
        good.pause()
    st = srv.status()
    counts["received"] = neural(st)["samples"]
    assert "mismatch" in srv.stderr().lower() or "does not fit" in srv.stderr().lower()
    srv.stop()
    streams, _ = pyxdf.load_xdf(str(srv.recordings()[0]), synchronize_clocks=False, dejitter_timestamps=False)
    neural_streams = [s for s in streams if s["info"]["type"][0] == "iEEG"]
    recorded = sum(len(s["time_stamps"]) for s in neural_streams)
    counts["recorded"] = recorded
    assert recorded == neural(st)["samples"] == len(src.pushed) + len(good.pushed)
