"""`neuralign demo --speech` end to end: the simulated session's words are spoken by espeak-ng
and replayed as an audio stream instead of the transcript; the demo's recogniser transcribes it
live (`transcribe --lsl` in the process) into the transcript the server reads. The Python
client (tools/ws_client.py) must receive the recognised words, embedded, and alignment frames,
and the words must be the session's own (espeak-ng's onsets are the simulation's ground truth).
The server's recording must hold the audio beside the neural stream and the transcript, on one
clock, and `transcribe SESSION.xdf --stream` must recognise the session's words from it; another
session replayed beside it under the same stream names must not be taken for its own.
Needs espeak-ng, the speech model and the default language model."""
import json
import os
import pathlib
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request

from faults import neuralign_bin  # conftest puts tools/ on the path

REPO = pathlib.Path(__file__).resolve().parents[2]
ENV = dict(os.environ, LSLAPICFG=str(REPO / "configs" / "lsl_api.cfg"), RUST_LOG="warn")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def normalise(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def test_demo_speech_serves_the_words_recognised_from_the_replayed_audio(tmp_path):
    port = free_port()
    home = pathlib.Path(os.environ.get("NEURALIGN_HOME", pathlib.Path.home() / ".cache" / "neuralign"))
    # a decoy: another simulated session replayed beside the demo under the same stream names
    # (as another test's replay may be in CI), which the demo must not take for its own
    decoy = tmp_path / "decoy.xdf"
    subprocess.run([str(neuralign_bin()), "simulate", "--out", str(decoy), "--minutes", "0.5",
                    "--electrodes", "8", "--seed", "8"], env=ENV, check=True, capture_output=True, timeout=300)
    decoy_replay = subprocess.Popen([str(neuralign_bin()), "replay", str(decoy), "--loop"], env=ENV,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    demo = subprocess.Popen([str(neuralign_bin()), "demo", "--speech", "--minutes", "1",
                             "--electrodes", "8", "--seed", "7", "--fresh", "--bind", f"127.0.0.1:{port}"],
                            env=ENV, stdout=subprocess.DEVNULL, stderr=open(tmp_path / "demo.log", "w"))
    frames = []
    try:
        deadline = time.monotonic() + 300  # simulation with speech, then the fit
        while True:
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=1)
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start serving"
                time.sleep(1)
        client = subprocess.run([sys.executable, str(REPO / "tools" / "ws_client.py"),
                                 f"ws://127.0.0.1:{port}/ws", "--json", "--count", "150"],
                                capture_output=True, text=True, timeout=240)
        frames = [json.loads(line) for line in client.stdout.splitlines() if line.startswith("{")]
    finally:
        decoy_replay.kill()
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]
    audio_status = [s for f in frames if f["type"] == "status" for s in f["streams"] if s["role"] == "audio"]
    assert audio_status and audio_status[-1]["connected"], audio_status[-1:]
    words = [f for f in frames if f["type"] == "word" and f["status"] != "retracted"]
    alignments = [f for f in frames if f["type"] == "alignment"]
    assert alignments, "no alignment frame"
    demo_dir = home / "demo" / "e8-m1-s7-speech"
    truth = json.loads((demo_dir / "session.truth.json").read_text())
    spoken = {normalise(w["text"]) for w in truth["words"]}
    heard = [normalise(f["text"]) for f in words if normalise(f["text"])]
    known = sum(w in spoken for w in heard)
    print(f"demo --speech: {len(words)} word frames, {known} of {len(heard)} words of the session, "
          f"{len(alignments)} alignment frames")
    assert len(heard) >= 20, words
    assert known >= 0.8 * len(heard), heard
    check_the_recording_holds_the_audio(next((demo_dir / "recordings").rglob("*.xdf")), spoken, tmp_path)


def check_the_recording_holds_the_audio(recording, spoken, tmp_path):
    """The demo's recording: the replayed audio (int16 at 22 050 Hz, every sample of its span),
    the neural stream and the transcript on one clock; recognised again from the file."""
    import numpy as np
    import pyxdf
    streams, _ = pyxdf.load_xdf(str(recording), synchronize_clocks=False, dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in streams}
    # the demo's own streams alone (seed 7), never the decoy's of the same names (seed 8)
    sources = sorted(s["info"]["source_id"][0] for s in streams if s["info"]["name"][0].startswith("neuralign-sim-"))
    assert sources == ["neuralign-sim-7-audio", "neuralign-sim-7-hg"], sources
    audio, neural = by_name["neuralign-sim-audio"], by_name["neuralign-sim-hg"]
    assert "neuralign-transcript-received" in by_name, list(by_name)
    info = audio["info"]
    assert (info["type"], info["channel_format"], info["channel_count"]) == (["Audio"], ["int16"], ["1"])
    rate = float(info["nominal_srate"][0])
    assert rate == 22050.0 and audio["time_series"].dtype == np.int16
    stamps = audio["time_stamps"]
    span = stamps[-1] - stamps[0]
    assert span > 5.0, span
    # no sample lost: each run (the demo's replay loops, with a second of no audio at the seam)
    # holds as many samples as its span at the nominal rate
    cuts = np.flatnonzero(np.abs(np.diff(stamps) - 1 / rate) > 0.1) + 1
    for run in np.split(stamps, cuts):
        assert abs(len(run) - ((run[-1] - run[0]) * rate + 1)) <= 0.001 * len(run) + 2, (len(run), run[-1] - run[0])
    assert np.abs(audio["time_series"]).max() > 1000, "speech, not silence"
    # recorded as LabRecorder records a stream: the sender's stamps (regular ones stored in a
    # byte each) and its clock offsets to the server clock (microseconds on one machine)
    assert len(audio["clock_times"]) >= 1 and max(abs(v) for v in audio["clock_values"]) < 0.01
    # one clock: the replay starts both from the same session time together; the recorded
    # starts and ends differ by when each inlet connected and stopped (3.3 s apart at the start
    # in a loaded CI run), where another clock would put them hours apart
    first, last = neural["time_stamps"][0], neural["time_stamps"][-1]
    assert abs(stamps[0] - first) < 5 and abs(stamps[-1] - last) < 5, (stamps[0], stamps[-1], first, last)
    out = tmp_path / "recording-words.xdf"
    done = subprocess.run([str(neuralign_bin()), "transcribe", str(recording), "--stream", "neuralign-sim-audio",
                           "--out", str(out), "--json"], env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    copy, _ = pyxdf.load_xdf(str(out), synchronize_clocks=False, dejitter_timestamps=False)
    messages = [json.loads(row[0]) for s in copy if s["info"]["name"][0] == "neuralign-transcribe"
                for row in s["time_series"]]
    again = [normalise(m["text"]) for m in messages if m["kind"] == "word" and normalise(m["text"])]
    known = sum(w in spoken for w in again)
    print(f"recording: {len(stamps)} audio samples over {span:.1f} s in {len(cuts) + 1} run(s); transcribed again: {known} of "
          f"{len(again)} words of the session in {report['runs']} run(s)")
    assert len(again) >= 10 and known >= 0.8 * len(again), again
