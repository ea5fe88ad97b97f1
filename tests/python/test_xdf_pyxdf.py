"""neuralign's XDF reader and writer against pyxdf, the reference reader.

- Every file in tests/data/xdf (written by other tools; sources and licences in its README) must give the
  same time stamps, values and clock offsets in `neuralign inspect --json`
  as pyxdf, both raw and with pyxdf's clock sync + dejitter.
- A file written by neuralign (`neuralign simulate`) must load in pyxdf with
  identical values.
"""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import pyxdf

ROOT = pathlib.Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "tests" / "data" / "xdf"


def neuralign_bin():
    if os.environ.get("NEURALIGN_BIN"):
        return os.environ["NEURALIGN_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "neuralign")


def inspect(path, *flags):
    out = subprocess.run(
        [neuralign_bin(), "inspect", str(path), "--json", "--samples", *flags],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return json.loads(out)


def sample_files():
    files = sorted(SAMPLES.glob("*.xdf"))
    assert len(files) == 6, f"the six XDF files from other tools belong in {SAMPLES}"
    return files


def assert_same(ours, theirs, ts_tol):
    by_id = {s["id"]: s for s in ours["streams"]}
    assert len(by_id) == len(theirs)
    for ref in theirs:
        info = ref["info"]
        s = by_id[int(info["stream_id"])]
        assert s["name"] == info["name"][0]
        assert s["channel_format"] == info["channel_format"][0]
        assert s["channel_count"] == int(info["channel_count"][0])
        ref_ts = np.asarray(ref["time_stamps"], dtype=float)
        np.testing.assert_allclose(np.asarray(s["time_stamps"], dtype=float), ref_ts, rtol=0, atol=ts_tol)
        n, ch = s["sample_count"], s["channel_count"]
        if s["channel_format"] == "string":
            assert [s["time_series"][k * ch:(k + 1) * ch] for k in range(n)] == [list(v) for v in ref["time_series"]]
        else:
            ref_v = np.asarray(ref["time_series"]).reshape(n, ch)
            ours_v = np.array([np.nan if v is None else v for v in s["time_series"]], dtype=ref_v.dtype).reshape(n, ch)
            np.testing.assert_array_equal(ours_v, ref_v)
        np.testing.assert_array_equal(s["clock_times"], ref["clock_times"])
        np.testing.assert_array_equal(s["clock_values"], ref["clock_values"])
        if n > 0 and float(info["nominal_srate"][0]) > 0:
            assert s["effective_srate"] == pytest.approx(float(info["effective_srate"]), rel=1e-9)
        assert [tuple(x) for x in s["segments"]] == [tuple(x) for x in info["segments"]]
        assert [tuple(x) for x in s["clock_segments"]] == [tuple(x) for x in info["clock_segments"]]


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_raw_time_stamps_and_values_match_pyxdf(path):
    theirs, _ = pyxdf.load_xdf(str(path), synchronize_clocks=False, dejitter_timestamps=False)
    assert_same(inspect(path), theirs, ts_tol=0)


@pytest.mark.parametrize("path", sample_files(), ids=lambda p: p.name)
def test_synchronised_and_dejittered_match_pyxdf(path):
    theirs, _ = pyxdf.load_xdf(str(path))
    # The robust clock fit runs 1000 ADMM iterations in a different order of
    # floating-point operations than numpy: agree to well under a microsecond.
    assert_same(inspect(path, "--sync", "--dejitter"), theirs, ts_tol=1e-7)


def test_clock_resets_are_segmented_like_pyxdf():
    path = SAMPLES / "clock_resets.xdf"
    ours = inspect(path, "--sync")
    assert all(len(s["clock_segments"]) == 2 for s in ours["streams"])


def test_files_neuralign_writes_load_in_pyxdf_identically(tmp_path):
    out = tmp_path / "sim.xdf"
    subprocess.run(
        [neuralign_bin(), "simulate", "--out", str(out), "--minutes", "0.5", "--electrodes", "4", "--raw", "--seed", "7"],
        check=True,
        capture_output=True,
    )
    theirs, header = pyxdf.load_xdf(str(out), synchronize_clocks=False, dejitter_timestamps=False)
    assert header["info"]["version"][0] == "1.0"
    assert {s["info"]["name"][0] for s in theirs} == {"neuralign-sim-hg", "neuralign-sim-transcript", "neuralign-sim-raw"}
    assert_same(inspect(out), theirs, ts_tol=0)
    hg = next(s for s in theirs if s["info"]["name"][0] == "neuralign-sim-hg")
    labels = [c["label"][0] for c in hg["info"]["desc"][0]["channels"][0]["channel"]]
    assert labels == ["e001", "e002", "e003", "e004"]
    words = [json.loads(m[0]) for s in theirs if s["info"]["type"][0] == "Transcript" for m in s["time_series"]]
    assert {m["kind"] for m in words} == {"word", "watermark"}
