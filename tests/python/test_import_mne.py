"""`neuralign import` against MNE-Python, read back with pyxdf.

Every recording in tests/data/ieeg (real files from MNE-Python's and pyEDFlib's test data and a
BIDS iEEG dataset; sources and licences in its README) is imported with `neuralign import` and
the XDF read back with pyxdf, the reference XDF reader. Channel names, rates, sample counts,
first samples in volts, annotations and the start time must match `expected.json` (MNE's
reading, written by tests/data/ieeg/describe.py), and MNE itself when it is installed. Known,
documented differences (docs/import.md): MNE resamples slower signals up to the highest rate
(we keep each rate as its own stream), renames every duplicate label (we keep the first),
and drops markers outside the data and BrainVision's leading New Segment (we keep them).

Bad input (cut short, lying headers, a .vmrk naming another data file, unknown formats) must
give a clear error, a non-zero exit, no panic and no output file.
"""
import datetime
import json
import os
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import pyxdf

ROOT = pathlib.Path(__file__).resolve().parents[2]
IEEG = ROOT / "tests" / "data" / "ieeg"
EXPECTED = json.loads((IEEG / "expected.json").read_text())["files"]


def neuralign_bin():
    if os.environ.get("NEURALIGN_BIN"):
        return os.environ["NEURALIGN_BIN"]
    target = os.environ.get("CARGO_TARGET_DIR", str(ROOT / "target"))
    return str(pathlib.Path(target) / "debug" / "neuralign")


def run_import(path, out, *flags):
    return subprocess.run([neuralign_bin(), "import", str(path), "--out", str(out), "--json", *flags],
                          capture_output=True, text=True, timeout=120)


def imported(path, out, *flags):
    done = run_import(path, out, *flags)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    streams, _ = pyxdf.load_xdf(str(out), dejitter_timestamps=False, synchronize_clocks=False)
    return report, streams


def channels_of(stream):
    """(label, type, unit, location) per channel from the stream header's desc."""
    chans = stream["info"]["desc"][0]["channels"][0]["channel"]
    return [(c["label"][0], c["type"][0], c["unit"][0], c.get("location")) for c in chans]


def numeric(streams):
    return [s for s in streams if s["info"]["type"][0] not in ("Markers", "Transcript")]


def mne_names(exp):
    """MNE's channel names with its duplicate renaming (X-0, X-1) turned into ours (X, X-1)."""
    dups = set()
    for w in exp["mne_warnings"]:
        m = re.search(r"found duplicates for: \{(.*)\}", w)
        if m:
            dups |= {d.strip().strip("'") for d in m.group(1).split(",")}
    return [n[:-2] if any(n == f"{d}-0" for d in dups) else n for n in exp["ch_names"]]


def native_rates(exp):
    """Each channel's own rate: the EDF/BDF header's (MNE resamples to the highest)."""
    signals = exp["header"].get("signals")
    if signals is None:
        return [exp["sfreq"]] * len(exp["ch_names"])
    return [s["native_sfreq"] for s in signals if s["label"] not in ("EDF Annotations", "BDF Annotations")]


def recording_path(name):
    """BIDS recordings are imported from the dataset folder, the others from the file."""
    if name.startswith("py_neuromodulation/"):
        return IEEG / "py_neuromodulation"
    return IEEG / name


@pytest.mark.parametrize("name", sorted(EXPECTED))
@pytest.mark.parametrize("fmt", ["float32", "double64"])
def test_import_reads_back_as_mne_reads_the_recording(name, fmt, tmp_path):
    exp = EXPECTED[name]
    flags = ["--double"] if fmt == "double64" else []
    report, streams = imported(recording_path(name), tmp_path / "session.xdf", *flags)

    # channel names across the numeric streams, in file order, and each channel's stream
    per_channel = {}
    for s in numeric(streams):
        assert s["info"]["channel_format"][0] == fmt
        for i, (label, kind, unit, _) in enumerate(channels_of(s)):
            per_channel[label] = (s, i, kind, unit)
    names = mne_names(exp)
    assert sorted(per_channel) == sorted(names), name
    if any("duplicates" in w for w in exp["mne_warnings"]):
        assert any("renamed" in w for w in report["warnings"]), "duplicate labels are reported"

    # rates and sample counts: each signal's own rate; MNE's count scaled to it
    for label, rate in zip(names, native_rates(exp)):
        s, _, _, _ = per_channel[label]
        assert float(s["info"]["nominal_srate"][0]) == pytest.approx(rate), (name, label)
        assert len(s["time_stamps"]) == round(exp["n_times"] * rate / exp["sfreq"]), (name, label)
        stamps = s["time_stamps"]
        assert stamps[0] == pytest.approx(0.0, abs=1e-9)
        assert np.allclose(np.diff(stamps), 1.0 / rate, rtol=1e-6), "continuous: no gaps"

    # first samples in volts, for channels MNE did not resample and reads as voltages
    rtol = 1e-6 if fmt == "float32" else 1e-9
    compared = 0
    for label, values in exp["first_samples"]["channels"].items():
        ours = names[exp["ch_names"].index(label)]
        s, i, kind, unit = per_channel[ours]
        ch_type = exp["ch_types"][exp["ch_names"].index(label)]
        if ch_type == "stim" or unit != "volts" or float(s["info"]["nominal_srate"][0]) != exp["sfreq"]:
            continue
        got = np.asarray(s["time_series"])[: len(values), i]
        assert np.allclose(got, values, rtol=rtol, atol=1e-12), (name, label, got, values)
        compared += 1
    assert compared > 0, f"{name}: no first samples compared"

    # channel types from BIDS channels.tsv, as mne-bids reads them
    if name.startswith("py_neuromodulation/"):
        kinds = [per_channel[n][2].lower() for n in names]
        assert kinds == exp["ch_types"]

    # annotations: every one MNE gives, at the same onset, duration and text
    markers = [s for s in streams if s["info"]["type"][0] == "Markers"]
    assert len(markers) == 1
    m = markers[0]
    ours = [(t, float(v[1]), v[0]) for t, v in zip(m["time_stamps"], m["time_series"])]
    assert len(ours) >= exp["n_annotations"]
    for a in exp["annotations"]:
        assert any(abs(t - a["onset"]) < 1e-6 and abs(d - a["duration"]) < 1e-6 and text == a["description"]
                   for t, d, text in ours), (name, a)

    # the start time: MNE leaves EDF+ sub-second starts at whole seconds
    start = report["recording"].get("start")
    if exp["meas_date"] is None:
        assert start is None
    else:
        mne_start = datetime.datetime.fromisoformat(exp["meas_date"]).replace(tzinfo=None)
        assert abs((datetime.datetime.fromisoformat(start) - mne_start).total_seconds()) < 1.0


def test_bids_sidecars_reach_the_stream_header(tmp_path):
    """electrodes.tsv (metres, n/a for the misc channel), coordsystem.json, PowerLineFrequency."""
    report, streams = imported(IEEG / "py_neuromodulation", tmp_path / "bids.xdf")
    folder = IEEG / "py_neuromodulation/sub-testsub/ses-EphysMedOff/ieeg"
    rows = [line.split("\t") for line in
            (folder / "sub-testsub_ses-EphysMedOff_space-mni_electrodes.tsv").read_text().splitlines()[1:]]
    (s,) = numeric(streams)
    chans = {label: loc for label, _, _, loc in channels_of(s)}
    for name, x, y, z, *_ in rows:
        if x == "n/a":
            assert chans[name] is None, name
        else:
            loc = chans[name][0]
            assert [float(loc[a][0]) for a in "XYZ"] == [float(x), float(y), float(z)], name
    rec = s["info"]["desc"][0]["recording"][0]
    assert float(rec["power_line_frequency"][0]) == 60.0
    assert rec["coordinate_system"][0] == "Other" and rec["coordinate_units"][0] == "m"
    assert report["bad_channels"] == []


def test_bids_bad_channels_and_events(tmp_path):
    """status=bad in channels.tsv is marked bad; events.tsv rows become markers."""
    bids = tmp_path / "bids"
    shutil.copytree(IEEG / "py_neuromodulation", bids)
    folder = bids / "sub-testsub/ses-EphysMedOff/ieeg"
    channels = folder / "sub-testsub_ses-EphysMedOff_task-gripforce_run-0_channels.tsv"
    channels.write_text(channels.read_text(encoding="utf-8-sig").replace(
        "ECOG_RIGHT_2\tECOG\tµV\t0.0\t500.0\tElectrocorticography\t1000.0\tgood\tn/a",
        "ECOG_RIGHT_2\tECOG\tµV\t0.0\t500.0\tElectrocorticography\t1000.0\tbad\tline noise"), encoding="utf-8")
    (folder / "sub-testsub_ses-EphysMedOff_task-gripforce_run-0_events.tsv").write_text(
        "onset\tduration\ttrial_type\n1.5\t0.5\tgrip\n3.25\tn/a\trelease\n")
    report, streams = imported(folder / "sub-testsub_ses-EphysMedOff_task-gripforce_run-0_ieeg.vhdr",
                               tmp_path / "bids.xdf")
    assert report["bad_channels"] == ["ECOG_RIGHT_2"]
    (s,) = numeric(streams)
    chans = s["info"]["desc"][0]["channels"][0]["channel"]
    bad = [c for c in chans if c.get("status") == ["bad"]]
    assert [c["label"][0] for c in bad] == ["ECOG_RIGHT_2"]
    assert bad[0]["status_description"] == ["line noise"]
    (m,) = [s for s in streams if s["info"]["type"][0] == "Markers"]
    assert list(m["time_stamps"]) == [1.5, 3.25]
    assert [list(v) for v in m["time_series"]] == [["grip", "0.5"], ["release", "0"]]


def test_word_table_becomes_the_transcript_stream(tmp_path):
    """Words placed by a marker's onset, NaN rows skipped and counted, the contract's messages."""
    words = tmp_path / "words.csv"
    words.write_text('\ufeffword,start,end\nhello,0.5,0.9\n"Paris, France",1.0,1.6\nlost,nan,2.0\nagain,2.0,2.4\n',
                     encoding="utf-8")
    report, streams = imported(IEEG / "pyedflib/test_utf8.edf", tmp_path / "s.xdf",
                               "--words", str(words), "--words-marker", "Clip Note")
    clip = 3.0976563  # the onset of "Clip Note" in test_utf8.edf, after the sub-second start
    assert report["words"] == 3 and len(report["words_skipped"]) == 1
    assert report["words_offset_s"] == pytest.approx(clip, abs=1e-6)
    (t,) = [s for s in streams if s["info"]["type"][0] == "Transcript"]
    msgs = [json.loads(v[0]) for v in t["time_series"]]
    got = [(m["text"], m["start"], m["end"]) for m in msgs if m["kind"] == "word"]
    assert [g[0] for g in got] == ["hello", "Paris, France", "again"]
    assert np.allclose([g[1] for g in got], [clip + 0.5, clip + 1.0, clip + 2.0])
    assert msgs[-1]["kind"] == "watermark" and msgs[-1]["time"] > 698.0
    assert all(np.diff(t["time_stamps"]) >= 0)


# --- bad input: a clear error, a non-zero exit, no panic, nothing left behind -------------------

def assert_refused(path, tmp_path, *needles, flags=()):
    out = tmp_path / "out" / "session.xdf"
    out.parent.mkdir(exist_ok=True)
    done = run_import(path, out, *flags)
    assert done.returncode not in (0, 101), (done.returncode, done.stderr)  # 101: a panic
    assert "panicked" not in done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr
    assert list(out.parent.iterdir()) == [], "no output and no partial file left behind"


def test_truncated_edf_is_refused_unless_accepted(tmp_path):
    src = (IEEG / "pyedflib/test_utf8.edf").read_bytes()
    cut = tmp_path / "cut.edf"
    cut.write_bytes(src[: len(src) - 1000])
    assert_refused(cut, tmp_path, "cut short", "--accept-damaged")
    report, streams = imported(cut, tmp_path / "accepted.xdf", "--accept-damaged")
    (s,) = numeric(streams)
    assert 0 < len(s["time_stamps"]) < EXPECTED["pyedflib/test_utf8.edf"]["n_times"]
    assert any("cut short" in w or "partial record" in w for w in report["warnings"])


def test_lying_edf_headers_are_refused(tmp_path):
    src = bytearray((IEEG / "mne-python/test_uneven_samp.edf").read_bytes())
    more = bytearray(src)
    more[236:244] = b"99      "  # number of records
    (tmp_path / "records.edf").write_bytes(more)
    assert_refused(tmp_path / "records.edf", tmp_path, "number_of_records says 99")
    huge = bytearray(src)
    huge[256 + 216 * 2: 256 + 216 * 2 + 8] = b"99999999"  # signal 1 samples per record
    (tmp_path / "huge.edf").write_bytes(huge)
    assert_refused(tmp_path / "huge.edf", tmp_path, "huge.edf")
    (tmp_path / "notedf.edf").write_bytes(b"XDF:" + bytes(2000))
    assert_refused(tmp_path / "notedf.edf", tmp_path, "not an EDF or BDF file")


def copy_brainvision(tmp_path, stem="test"):
    for ext in ("vhdr", "vmrk", "eeg"):
        shutil.copy(IEEG / f"mne-python/{stem}.{ext}", tmp_path / f"{stem}.{ext}")
    return tmp_path / f"{stem}.vhdr"


def test_vmrk_naming_another_data_file_is_refused(tmp_path):
    vhdr = copy_brainvision(tmp_path)
    vmrk = tmp_path / "test.vmrk"
    vmrk.write_text(vmrk.read_text(encoding="utf-8").replace("DataFile=test.eeg", "DataFile=other.eeg"),
                    encoding="utf-8")
    assert_refused(vhdr, tmp_path, "other.eeg", "another recording")


def test_brainvision_lies_and_unknown_formats_are_refused(tmp_path):
    vhdr = copy_brainvision(tmp_path)
    text = vhdr.read_text(encoding="utf-8")
    vhdr.write_text(text.replace("BinaryFormat=INT_16", "BinaryFormat=INT_64"), encoding="utf-8")
    assert_refused(vhdr, tmp_path, "BinaryFormat", "INT_64")
    eeg = tmp_path / "test.eeg"
    vhdr.write_text(text, encoding="utf-8")
    eeg.write_bytes(eeg.read_bytes()[:-3])  # ends mid-sample
    assert_refused(vhdr, tmp_path, "partial sample")
    other = tmp_path / "recording.mef"
    other.write_bytes(bytes(100))
    assert_refused(other, tmp_path, "not a recording neuralign imports")
    assert_refused(tmp_path / "missing.edf", tmp_path, "missing.edf")


def test_existing_output_is_never_replaced(tmp_path):
    out = tmp_path / "session.xdf"
    out.write_bytes(b"keep me")
    done = run_import(IEEG / "mne-python/test_uneven_samp.edf", out)
    assert done.returncode != 0 and "already exists" in done.stderr
    assert out.read_bytes() == b"keep me"


try:
    import mne  # noqa: F401
except ImportError:
    mne = None


@pytest.mark.skipif(mne is None, reason="mne is not installed (pip install mne)")
@pytest.mark.parametrize("name", [n for n in sorted(EXPECTED) if not n.startswith("py_neuromodulation/")])
def test_import_matches_mne_itself(name, tmp_path):
    """The whole signal, not only the first samples, against MNE's own reading."""
    path = IEEG / name
    read = {".edf": mne.io.read_raw_edf, ".bdf": mne.io.read_raw_bdf,
            ".vhdr": mne.io.read_raw_brainvision}[path.suffix]
    raw = read(str(path), preload=True, verbose="error")
    _, streams = imported(path, tmp_path / "s.xdf", "--double")
    exp = EXPECTED[name]
    names = mne_names(exp)
    for s in numeric(streams):
        if float(s["info"]["nominal_srate"][0]) != raw.info["sfreq"]:
            continue  # MNE resampled these
        data = np.asarray(s["time_series"])
        for i, (label, _, unit, _) in enumerate(channels_of(s)):
            j = names.index(label)
            if unit != "volts" or exp["ch_types"][j] == "stim":
                continue
            assert np.allclose(data[:, i], raw.get_data(picks=[j])[0], rtol=1e-9, atol=1e-15), (name, label)
