"""`neuralign demo --speech` end to end: the simulated session's words are spoken by espeak-ng
and replayed as an audio stream instead of the transcript; the demo's recogniser transcribes it
live (`transcribe --lsl` in the process) into the transcript the server reads. The Python
client (tools/ws_client.py) must receive the recognised words, embedded, and alignment frames,
and the words must be the session's own (espeak-ng's onsets are the simulation's ground truth).
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
        demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
    assert demo.returncode == 0, (tmp_path / "demo.log").read_text()[-3000:]
    words = [f for f in frames if f["type"] == "word" and f["status"] != "retracted"]
    alignments = [f for f in frames if f["type"] == "alignment"]
    assert alignments, "no alignment frame"
    truth = json.loads((home / "demo" / "e8-m1-s7-speech" / "session.truth.json").read_text())
    spoken = {normalise(w["text"]) for w in truth["words"]}
    heard = [normalise(f["text"]) for f in words if normalise(f["text"])]
    known = sum(w in spoken for w in heard)
    print(f"demo --speech: {len(words)} word frames, {known} of {len(heard)} words of the session, "
          f"{len(alignments)} alignment frames")
    assert len(heard) >= 20, words
    assert known >= 0.8 * len(heard), heard
