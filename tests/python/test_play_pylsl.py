"""`neuralign play` received by pylsl (an independent LSL implementation): the audio arrives
sample for sample as Python's `wave` module reads the file, on a regular clock, and every word
of the table arrives on the transcript stream (docs/transcript.md) and the marker stream with
its onset on that audio clock within 5 ms. Needs the built binary (cargo build) and pylsl; LSL
stays on loopback."""
import json
import os
import pathlib
import subprocess
import time
import uuid
import wave

import numpy as np
import pylsl
import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
os.environ["LSLAPICFG"] = str(REPO / "configs" / "lsl_api.cfg")

from faults import neuralign_bin  # noqa: E402  (conftest puts tools/ on the path)


def write_wav(path: pathlib.Path, rate: int, channels: int, seconds: float) -> np.ndarray:
    """A 16-bit WAV whose every sample differs from its neighbours (a wrapped ramp per channel)."""
    n = int(rate * seconds)
    k = np.arange(n * channels, dtype=np.int64)
    data = ((k * 7919) % 65536 - 32768).astype("<i2")
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data.tobytes())
    with wave.open(str(path), "rb") as w:  # the reference reading of the file
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, channels)


def receive(name: str, process: subprocess.Popen, channels: int, timeout: float = 60.0):
    """Pulls the three streams until `play` exits and the streams are drained."""
    inlets = {}
    for kind in ("audio", "transcript", "markers"):
        found = pylsl.resolve_byprop("name", f"{name}-{kind}", 1, 20)
        assert found, f"{name}-{kind} not visible"
        inlets[kind] = pylsl.StreamInlet(found[0], max_buflen=360)
        inlets[kind].open_stream(10)
    info = inlets["audio"].info(5)
    frames, stamps, messages, markers = [], [], [], []
    deadline = time.monotonic() + timeout
    quiet = 0
    while time.monotonic() < deadline and quiet < 20:
        got = False
        chunk, ts = inlets["audio"].pull_chunk(timeout=0.05, max_samples=4096)
        if ts:
            frames.extend(chunk)
            stamps.extend(ts)
            got = True
        for kind, out in (("transcript", messages), ("markers", markers)):
            chunk, ts = inlets[kind].pull_chunk(timeout=0.0)
            for sample, t in zip(chunk, ts):
                out.append((sample[0], t, pylsl.local_clock()))
                got = True
        quiet = 0 if (got or process.poll() is None) else quiet + 1
    return info, np.array(frames, dtype=np.int64).reshape(-1, channels), np.array(stamps), messages, markers


def play(tmp_path, rate, channels, seconds, table, *extra):
    wav = tmp_path / "stimulus.wav"
    expected = write_wav(wav, rate, channels, seconds)
    words = tmp_path / "words.csv"
    words.write_bytes(table.encode("utf-8"))
    name = f"play-{uuid.uuid4().hex[:8]}"
    process = subprocess.Popen(
        [str(neuralign_bin()), "play", str(wav), "--words", str(words), "--name", name,
         "--wait-for-consumers", "--json", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        received = receive(name, process, channels)
        out, err = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 0, err
    return expected, received, json.loads(out)


def check_words_on_the_audio_clock(table_words, rate, first_frame, stamps, messages, markers):
    """Every word's start (and marker stamp) equals the audio clock at its onset within 5 ms."""
    words = [json.loads(m) for m, _, _ in messages if json.loads(m)["kind"] == "word"]
    assert [w["text"] for w in words] == [t for t, _, _ in table_words]
    assert [m for m, _, _ in markers] == [t for t, _, _ in table_words]
    errors = []
    for w, (_, start, end), (_, marker_t, _) in zip(words, table_words, markers):
        frame = round(start * rate) - first_frame
        audio_clock = stamps[frame]
        errors.append(abs(w["start"] - audio_clock))
        errors.append(abs(marker_t - audio_clock))
        assert abs((w["end"] - w["start"]) - (end - start)) < 1e-6
    assert max(errors) <= 0.005, f"word onsets off the audio clock by up to {max(errors) * 1e3:.3f} ms"
    return words


def test_play_publishes_the_audio_and_every_word_on_the_audio_clock(tmp_path):
    rate, seconds = 16000, 3.0
    # The Podcast-ECoG layout: a byte-order mark, a quoted word, a NaN row (skipped, counted).
    table = "\ufeffword,start,end\nThe,0.25,0.4\n\"Paris, France\",0.9,1.3\nnumber,nan,nan\nwent,1.5,1.7\nhome,2.6,2.95\n"
    table_words = [("The", 0.25, 0.4), ("Paris, France", 0.9, 1.3), ("went", 1.5, 1.7), ("home", 2.6, 2.95)]
    expected, (info, frames, stamps, messages, markers), report = play(tmp_path, rate, 1, seconds, table)

    assert info.type() == "Audio" and info.channel_format() == pylsl.cf_int16
    assert info.nominal_srate() == rate
    assert info.desc().child("channels").child("channel").child_value("label") == "mono"
    np.testing.assert_array_equal(frames, expected)
    np.testing.assert_allclose(np.diff(stamps), 1 / rate, atol=1e-6)
    assert abs(stamps[0] - report["audio_start"]) < 1e-6

    words = check_words_on_the_audio_clock(table_words, rate, 0, stamps, messages, markers)
    assert len({w["id"] for w in words}) == len(words)
    marks = [json.loads(m)["time"] for m, _, _ in messages if json.loads(m)["kind"] == "watermark"]
    assert marks == sorted(marks) and abs(marks[-1] - (stamps[0] + seconds)) < 1e-6
    # A word is never behind the watermark already sent (it would be `late`).
    current = -np.inf
    for m, _, _ in messages:
        event = json.loads(m)
        if event["kind"] == "watermark":
            current = event["time"]
        else:
            assert event["start"] >= current
    assert report["words"] == 4 and report["frames"] == len(expected)
    assert [line for line, _ in report["skipped_rows"]] == [4]
    arrivals = [arrived for m, _, arrived in messages if json.loads(m)["kind"] == "word"]
    lag = [arrived - w["start"] for w, arrived in zip(words, arrivals)]
    print(f"play: word arrival after its onset, median {np.median(lag) * 1e3:.2f} ms; "
          f"send lateness p50 {report['lateness_p50'] * 1e3:.3f} ms p99 {report['lateness_p99'] * 1e3:.3f} ms")


def test_play_from_a_point_at_double_speed_keeps_words_on_the_audio_clock(tmp_path):
    rate, seconds, start = 8000, 3.0, 1.0
    table = "word,start,end\nearly,0.5,0.6\nlate,1.25,1.5\nlater,2.5,2.75\n"
    expected, (_, frames, stamps, messages, markers), report = play(
        tmp_path, rate, 2, seconds, table, "--from", str(start), "--speed", "2")
    first = int(start * rate)
    np.testing.assert_array_equal(frames, expected[first:])
    # Stamps keep the file's spacing at every speed (as `replay` does).
    np.testing.assert_allclose(np.diff(stamps), 1 / rate, atol=1e-6)
    check_words_on_the_audio_clock([("late", 1.25, 1.5), ("later", 2.5, 2.75)], rate, first,
                                   stamps, messages, markers)
    assert report["words"] == 2


@pytest.mark.parametrize("content, expected", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x55\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00", "not PCM"),
    (b"ID3\x03\x00 an mp3", "not a WAV file"),
])
def test_play_refuses_audio_that_is_not_pcm_wav_with_a_clear_error(tmp_path, content, expected):
    wav = tmp_path / "bad.wav"
    wav.write_bytes(content)
    words = tmp_path / "words.csv"
    words.write_text("word,start,end\na,0,1\n")
    done = subprocess.run([str(neuralign_bin()), "play", str(wav), "--words", str(words)],
                          capture_output=True, text=True, timeout=30)
    assert done.returncode != 0
    assert expected in done.stderr, done.stderr
