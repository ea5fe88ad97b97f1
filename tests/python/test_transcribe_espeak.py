"""`neuralign transcribe` against speech with known word times: Debian's espeak-ng synthesises
tests/data/speech/passage.txt (≥ 60 s) and reports each word's onset as it renders it
(tools/espeak_words.py); the recognised word table must reach word error rate ≤ 10 % and
word-onset error median ≤ 0.15 s, p90 ≤ 0.3 s (issue 14). Silence and noise yield no words;
audio that is not PCM WAV, or at a rate that cannot be resampled, is a clear error.
Live (`--live`, `--lsl`): the committed words equal the batch transcript but for counted edge
effects, silence and noise yield none, and an LSL audio stream that drops out and returns is
followed without words in the gap (pylsl receives the transcript outlet).
Needs espeak-ng (apt) and the speech model (`neuralign model fetch --asr`)."""
from __future__ import annotations

import csv
import json
import pathlib
import re
import subprocess
import time
import uuid
import wave

import numpy as np
import pytest

from faults import neuralign_bin  # conftest puts tools/ on the path
import espeak_words

REPO = pathlib.Path(__file__).resolve().parents[2]
PASSAGE = REPO / "tests" / "data" / "speech" / "passage.txt"


def normalise(word: str) -> str:
    return re.sub(r"[^a-z0-9']", "", word.lower())


def align(ref: list[str], hyp: list[str]) -> tuple[int, list[tuple[int, int]]]:
    """Levenshtein distance between word lists and the pairs of equal words on one best path."""
    n, m = len(ref), len(hyp)
    d = np.zeros((n + 1, m + 1), dtype=int)
    d[:, 0] = np.arange(n + 1)
    d[0, :] = np.arange(m + 1)
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            d[i, j] = min(d[i - 1, j] + 1, d[i, j - 1] + 1, d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]))
    pairs, i, j = [], n, m
    while i > 0 and j > 0:
        if d[i, j] == d[i - 1, j - 1] + (ref[i - 1] != hyp[j - 1]):
            if ref[i - 1] == hyp[j - 1]:
                pairs.append((i - 1, j - 1))
            i, j = i - 1, j - 1
        elif d[i, j] == d[i - 1, j] + 1:
            i -= 1
        else:
            j -= 1
    return int(d[n, m]), pairs[::-1]


def read_table(path: pathlib.Path) -> list[tuple[str, float | None]]:
    with open(path, encoding="utf-8") as f:
        return [(row["word"], float(row["start"]) if row["start"] else None) for row in csv.DictReader(f)]


def score(truth: list[tuple[str, float | None]], hyp: list[tuple[str, float]]) -> dict:
    """Word error rate over every word of the text; onset errors over the words matched on the
    alignment that have an onset of their own in the ground truth."""
    ref_words = [normalise(w) for w, _ in truth]
    hyp_pairs = [(normalise(w), t) for w, t in hyp if normalise(w)]
    distance, pairs = align(ref_words, [w for w, _ in hyp_pairs])
    errors = np.array([abs(hyp_pairs[j][1] - truth[i][1]) for i, j in pairs if truth[i][1] is not None])
    return {"wer": distance / len(ref_words), "matched": len(pairs),
            "onset_median": float(np.median(errors)), "onset_p90": float(np.percentile(errors, 90))}


def transcribe(wav: pathlib.Path, out: pathlib.Path) -> tuple[subprocess.CompletedProcess, dict]:
    done = subprocess.run([str(neuralign_bin()), "transcribe", str(wav), "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=900)
    report = json.loads(done.stdout) if done.returncode == 0 else {}
    return done, report


@pytest.fixture(scope="module")
def passage(tmp_path_factory):
    work = tmp_path_factory.mktemp("espeak")
    text = re.sub(r"\s+", " ", PASSAGE.read_text(encoding="utf-8")).strip()
    rate, samples, words = espeak_words.synthesise(text)
    wav = work / "passage.wav"
    with wave.open(str(wav), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    assert len(samples) / rate >= 60, "the passage must last at least 60 s"
    return wav, words


def test_an_espeak_passage_is_transcribed_with_word_times(passage, tmp_path):
    wav, truth = passage
    done, report = transcribe(wav, tmp_path / "words.csv")
    assert done.returncode == 0, done.stderr
    hyp = read_table(tmp_path / "words.csv")
    s = score(truth, hyp)
    print(f"transcribe: {len(truth)} words, WER {s['wer']:.3f}, onset error median "
          f"{s['onset_median']:.3f} s p90 {s['onset_p90']:.3f} s, real-time factor "
          f"{report['real_time_factor']:.3f}")
    assert s["wer"] <= 0.10
    assert s["onset_median"] <= 0.15
    assert s["onset_p90"] <= 0.30


def write_wav(path: pathlib.Path, samples: np.ndarray, rate: int = 16000):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(np.clip(samples * 32768, -32768, 32767).astype("<i2").tobytes())


@pytest.mark.parametrize("kind", ["silence", "noise"])
def test_silence_and_noise_yield_no_words(tmp_path, kind):
    rng = np.random.default_rng(14)
    samples = np.zeros(16000 * 10) if kind == "silence" else rng.normal(0, 0.1, 16000 * 10)
    if kind == "noise":
        # 30 clicks at full scale (both signs): clipped samples are counted
        samples[rng.choice(len(samples), 30, replace=False)] = np.resize([1.0, -1.0], 30)
    write_wav(tmp_path / "in.wav", samples)
    done, report = transcribe(tmp_path / "in.wav", tmp_path / "words.csv")
    assert done.returncode == 0, done.stderr
    assert read_table(tmp_path / "words.csv") == []
    assert report["words"] == []
    assert report["clipped_samples"] == (0 if kind == "silence" else 30)
    if kind == "silence":
        assert report["silent"] is True
    else:
        print(f"noise: {report['gated_segments']} segments gated")


@pytest.mark.parametrize("content, expected", [
    (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x55\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00", "not PCM"),
    (b"fLaC\x00\x00\x00\x22 a flac file", "not a WAV file"),
])
def test_audio_that_is_not_pcm_wav_is_a_clear_error(tmp_path, content, expected):
    (tmp_path / "bad.wav").write_bytes(content)
    done, _ = transcribe(tmp_path / "bad.wav", tmp_path / "words.csv")
    assert done.returncode != 0 and expected in done.stderr, done.stderr


def test_a_rate_that_cannot_be_resampled_is_a_clear_error(tmp_path):
    write_wav(tmp_path / "fast.wav", np.zeros(96000), rate=96000)
    done, _ = transcribe(tmp_path / "fast.wav", tmp_path / "words.csv")
    assert done.returncode != 0 and "cannot resample 96000 Hz" in done.stderr, done.stderr


# ---- live recognition (`transcribe --live`, `transcribe --lsl`) ----


def test_an_lsl_stream_that_is_not_audio_is_a_clear_error():
    """`transcribe --lsl` on a stream of strings stops with the format named, never a crash."""
    import pylsl
    name = f"not-audio-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(name, "Audio", 1, 16000, "string", name)
    outlet = pylsl.StreamOutlet(info)
    done = subprocess.run([str(neuralign_bin()), "transcribe", "--lsl", name, "--outlet", f"{name}-words"],
                          capture_output=True, text=True, timeout=120)
    del outlet
    assert done.returncode != 0 and "audio must be int16" in done.stderr, done.stderr
    assert "panicked" not in done.stderr

LIVE_SECONDS = 20.0


def cut(passage, work: pathlib.Path, seconds: float) -> tuple[pathlib.Path, list]:
    """The passage up to the first word onset after `seconds` (a word boundary), and its words."""
    wav, truth = passage
    with wave.open(str(wav), "rb") as w:
        rate = w.getframerate()
        data = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    onsets = [t for _, t in truth if t is not None and t > seconds]
    end = onsets[0] - 0.05
    words = []
    for word, t in truth:  # a word without its own onset goes with the one before it
        if (t if t is not None else (words[-1][1] if words else 0.0)) >= end:
            break
        words.append((word, t))
    out = work / f"cut{seconds:g}.wav"
    with wave.open(str(out), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(data[: int(end * rate)].tobytes())
    return out, words


def transcribe_live(wav: pathlib.Path, out: pathlib.Path, *extra: str) -> dict:
    done = subprocess.run([str(neuralign_bin()), "transcribe", str(wav), "--live", "--speed", "max",
                           "--no-outlet", "--out", str(out), "--json", *extra],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_live_commits_the_words_batch_recognises(passage, tmp_path):
    """Streaming equals batch where it should: the committed words of a live run (decoded step
    by step, committed when two decodes agree) against the batch transcript of the same audio.
    The edge effects (a word heard differently with a few seconds of context than with the
    whole passage, the last words committed unconfirmed at the end) are counted and bounded."""
    wav, truth = cut(passage, tmp_path, LIVE_SECONDS)
    done, _ = transcribe(wav, tmp_path / "batch.csv")
    assert done.returncode == 0, done.stderr
    report = transcribe_live(wav, tmp_path / "live.csv")
    batch, live = read_table(tmp_path / "batch.csv"), read_table(tmp_path / "live.csv")
    b_words = [normalise(w) for w, _ in batch if normalise(w)]
    l_pairs = [(normalise(w), t) for w, t in live if normalise(w)]
    distance, pairs = align(b_words, [w for w, _ in l_pairs])
    b_times = [t for w, t in batch if normalise(w)]
    onset_diff = np.array([abs(l_pairs[j][1] - b_times[i]) for i, j in pairs])
    s_live, s_batch = score(truth, live), score(truth, batch)
    agreement = report["agreement"]
    print(f"live vs batch over {LIVE_SECONDS:g} s: {distance} word edits of {len(b_words)} "
          f"({distance / len(b_words):.3f}), onset difference median {np.median(onset_diff):.3f} s; "
          f"WER against the text: live {s_live['wer']:.3f}, batch {s_batch['wer']:.3f}; "
          f"{report['decodes']} decodes, p50 {report['decode']['p50_ms']:.0f} ms; agreed "
          f"{agreement['agreed']}, flushed at the end {agreement['flushed']}, repeats dropped "
          f"{agreement['repeats']}")
    assert distance / len(b_words) <= 0.2  # measured 0.100
    assert np.median(onset_diff) <= 0.1
    # against the text, live is nearly as good as batch (the first 20 s are the passage's
    # hardest): measured live 18.1 %, batch 12.5 %; batch decodes chunks of up to 20 s cut at
    # pauses, live 2 s of context and what two decodes agree on (4 words of 72 more here)
    assert s_live["wer"] <= s_batch["wer"] + 0.08 and s_live["onset_median"] <= 0.15
    # every word was confirmed by two decodes but those of the last decode, committed whole
    # at the end of the audio (the stated edge effect): they lie in its last seconds
    assert agreement["agreed"] + agreement["flushed"] == report["word_count"]
    audio_end = max(t for _, t in batch) + 1.0
    assert all(t >= audio_end - 6.0 for _, t in live[len(live) - agreement["flushed"]:])
    # onsets go forward: each committed word starts at or after the one before it ended
    starts = [t for _, t in live]
    assert starts == sorted(starts)


def test_live_silence_and_noise_yield_no_words(tmp_path):
    rng = np.random.default_rng(15)
    noise = rng.normal(0, 0.1, 16000 * 6)
    # 40 clicks at full scale (both signs) in the noise: clipped samples are counted
    noise[rng.choice(len(noise), 40, replace=False)] = np.resize([1.0, -1.0], 40)
    write_wav(tmp_path / "quiet.wav", np.concatenate([np.zeros(16000 * 6), noise]))
    report = transcribe_live(tmp_path / "quiet.wav", tmp_path / "words.csv")
    assert report["word_count"] == 0 and read_table(tmp_path / "words.csv") == []
    assert report["clipped_samples"] == 40
    print(f"live on silence then noise: {report['agreement']['silent']} decodes without speech, "
          f"{report['gated_segments']} segments gated")


def test_a_live_lsl_audio_stream_is_transcribed_and_a_dropout_holds_the_watermark(passage, tmp_path):
    """`play` publishes speech on LSL twice with a pause between, the audio outlet gone in it;
    `transcribe --lsl` publishes the words on its transcript outlet (received here by pylsl):
    words of both passes arrive, no word starts in the dropout, watermarks only go forward and
    no word starts before one, and the report counts the loss."""
    import pylsl  # only this test needs it
    wav, truth = cut(passage, tmp_path, 8.0)
    table = tmp_path / "words.csv"
    with open(table, "w", encoding="utf-8") as f:
        f.write("word,start,end\n")
        for word, t in truth:
            if t is not None:
                f.write(f"{word},{t},\n")
    name = f"speech-{uuid.uuid4().hex[:8]}"
    outlet = f"{name}-words"
    transcriber = subprocess.Popen([str(neuralign_bin()), "transcribe", "--lsl", f"{name}-audio",
                                    "--outlet", outlet, "--json"],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages = []
    try:
        found = pylsl.resolve_byprop("name", outlet, 1, 60)
        assert found, transcriber.stderr.read() if transcriber.poll() is not None else "no outlet"
        inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        inlet.open_stream(10)

        def drain(seconds: float):
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                sample, _ = inlet.pull_sample(timeout=0.1)
                if sample is not None:
                    messages.append(json.loads(sample[0]))

        passes = []
        for k in range(2):
            play = subprocess.Popen([str(neuralign_bin()), "play", str(wav), "--words", str(table),
                                     "--name", name, "--json"], stdout=subprocess.PIPE, text=True)
            while play.poll() is None:
                drain(0.2)
            passes.append(json.loads(play.stdout.read()))
            drain(4.0)  # the outlet is gone: the transcriber loses the stream
        # on a slow machine the transcriber lags the audio: wait for its watermark to reach
        # the last word of the second pass (committed at the dropout that follows it)
        last_word = passes[1]["audio_start"] + max(t for _, t in truth if t is not None)
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and not any(
                m["kind"] == "watermark" and m["time"] >= last_word for m in messages):
            drain(0.5)
        transcriber.send_signal(2)
        out, err = transcriber.communicate(timeout=120)
        drain(1.0)
    finally:
        if transcriber.poll() is None:
            transcriber.kill()
    assert transcriber.returncode == 0, err
    report = json.loads(out)
    words = [m for m in messages if m["kind"] == "word"]
    marks = [m["time"] for m in messages if m["kind"] == "watermark"]
    duration = max(t for _, t in truth if t is not None) + 0.5
    first_end = passes[0]["audio_start"] + duration
    second_start = passes[1]["audio_start"]
    in_pass = [[w for w in words if p["audio_start"] - 0.1 <= w["start"] <= p["audio_start"] + duration]
               for p in passes]
    print(f"live over LSL: {len(words)} words ({[len(p) for p in in_pass]} per pass, "
          f"{len(truth)} in the clip), {len(marks)} watermarks, commit latency "
          f"{report['commit_latency']}, cpu share {report['cpu_share']:.2f}, gaps {report['gaps']}, "
          f"losses {report['stream_losses']}")
    # the second pass may start before the transcriber has found the returning stream: the
    # audio sent before it reconnects is not heard (measured 24 and 15 of 31 in two runs)
    assert len(in_pass[0]) >= 0.7 * len(truth) and len(in_pass[1]) >= 0.3 * len(truth), in_pass
    assert not [w for w in words if first_end < w["start"] < second_start - 0.1], "a word in the dropout"
    assert marks == sorted(marks)
    watermark = -np.inf
    for m in messages:
        if m["kind"] == "watermark":
            watermark = m["time"]
        else:
            assert m["start"] >= watermark, (m, watermark)
    # the dropout is a gap: a stamp jump, or a loss when the stream stays away for 2 s
    assert report["gaps"] >= 1
    assert report["commit_latency"]["count"] == report["word_count"]


def test_tentative_words_are_revised_then_committed_or_retracted(passage, tmp_path):
    """`--tentative` publishes the words not yet agreed on early (`final: false`); later decodes
    revise them (the same id), commit them (the same id, final) or retract them. Read by pylsl
    from the outlet: every id ends committed or retracted, nothing is retracted once final, and
    the committed words are the word table's, in order."""
    import pylsl
    wav, _ = cut(passage, tmp_path, 8.0)
    outlet = f"tentative-{uuid.uuid4().hex[:8]}"
    run = subprocess.Popen([str(neuralign_bin()), "transcribe", str(wav), "--live", "--speed", "max",
                            "--tentative", "--outlet", outlet, "--wait-for-consumers",
                            "--out", str(tmp_path / "words.csv"), "--json"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    messages = []
    try:
        found = pylsl.resolve_byprop("name", outlet, 1, 60)
        assert found, "no transcript outlet"
        inlet = pylsl.StreamInlet(found[0], max_buflen=360)
        inlet.open_stream(10)
        while run.poll() is None:
            sample, _ = inlet.pull_sample(timeout=0.1)
            if sample is not None:
                messages.append(json.loads(sample[0]))
        while (sample := inlet.pull_sample(timeout=1.0)[0]) is not None:
            messages.append(json.loads(sample[0]))
        out, err = run.communicate(timeout=60)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode == 0, err
    report = json.loads(out)
    last: dict[int, dict] = {}
    revisions = 0
    for m in messages:
        if m["kind"] == "word":
            if m["id"] in last:
                assert not last[m["id"]].get("final", True) and last[m["id"]]["kind"] == "word", \
                    f"word {m['id']} changed after it was final or retracted"
                revisions += 1
            last[m["id"]] = m
        elif m["kind"] == "retract":
            assert m["id"] in last and last[m["id"]]["kind"] == "word" and not last[m["id"]]["final"]
            last[m["id"]] = m
    tentative = [m for m in messages if m["kind"] == "word" and not m["final"]]
    final = [m for m in last.values() if m["kind"] == "word"]
    assert tentative, "no tentative word was published"
    assert all(m["final"] for m in final), f"left tentative: {[m['text'] for m in final if not m['final']]}"
    assert [m["id"] for m in final] == sorted(m["id"] for m in final)
    table = read_table(tmp_path / "words.csv")
    assert [m["text"] for m in final] == [w for w, _ in table]
    counts = report["agreement"]
    assert counts["tentative"] == len(tentative) and counts["retracted"] == sum(
        m["kind"] == "retract" for m in messages)
    print(f"tentative: {len(tentative)} tentative messages, {counts['retracted']} retracted, "
          f"{revisions} revisions (commits included) of {len(final)} committed words")


# ---- a recorded session (`transcribe SESSION.xdf --stream NAME`) ----

def xdf_chunk(tag: int, payload: bytes) -> bytes:
    length = len(payload) + 2
    return bytes([8]) + length.to_bytes(8, "little") + tag.to_bytes(2, "little") + payload


def stream_header(sid: int, name: str, kind: str, channels: int, rate: float, fmt: str) -> bytes:
    xml = (f"<?xml version=\"1.0\"?><info><name>{name}</name><type>{kind}</type>"
           f"<channel_count>{channels}</channel_count><nominal_srate>{rate}</nominal_srate>"
           f"<channel_format>{fmt}</channel_format><source_id>{name}-id</source_id></info>")
    return xdf_chunk(2, sid.to_bytes(4, "little") + xml.encode())


def int16_samples(sid: int, stamps: np.ndarray, values: np.ndarray) -> bytes:
    out = bytearray(sid.to_bytes(4, "little") + bytes([4]) + len(stamps).to_bytes(4, "little"))
    for t, v in zip(stamps, values):
        out += bytes([8]) + np.float64(t).tobytes() + np.int16(v).tobytes()
    return xdf_chunk(3, bytes(out))


def test_a_recorded_sessions_audio_is_written_back_as_a_transcript_stream(passage, tmp_path):
    """An XDF session (written here byte by byte, as LabRecorder lays it out) holds a marker
    stream and an int16 microphone stream whose stamps jump 3 s in the middle (a dropout).
    `transcribe --stream mic` writes a copy whose original streams pyxdf reads exactly as
    before, plus a Transcript stream: words on the microphone's clock, none in the dropout,
    onsets within the test's bounds of espeak-ng's, watermarks only forward and none before a
    word it passes, the microphone's clock offsets carried over."""
    import pyxdf
    wav, truth = cut(passage, tmp_path, 12.0)
    with wave.open(str(wav), "rb") as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), "<i2")
    half = len(pcm) // 2
    # cut at a pause between words so that both halves hold whole words
    onsets = [t for _, t in truth if t is not None]
    split_t = min(onsets, key=lambda t: abs(t - half / rate)) - 0.05
    split = int(split_t * rate)
    t0, dropout = 5000.0, 3.0
    stamps = t0 + np.arange(len(pcm)) / rate
    stamps[split:] += dropout
    session = tmp_path / "session.xdf"
    body = bytearray(b"XDF:" + xdf_chunk(1, b"<?xml version=\"1.0\"?><info><version>1.0</version></info>"))
    body += stream_header(1, "events", "Markers", 1, 0, "string")
    body += stream_header(2, "mic", "Audio", 1, rate, "int16")
    body += xdf_chunk(3, (1).to_bytes(4, "little") + bytes([1, 1]) + bytes([8])
                      + np.float64(t0 + 1.0).tobytes() + bytes([1, 5]) + b"start")
    for a in range(0, len(pcm), rate):
        body += int16_samples(2, stamps[a:a + rate], pcm[a:a + rate])
    body += xdf_chunk(4, (2).to_bytes(4, "little") + np.float64(t0 + 2).tobytes() + np.float64(0.25).tobytes())
    session.write_bytes(bytes(body))
    out = tmp_path / "session-words.xdf"
    done = subprocess.run([str(neuralign_bin()), "transcribe", str(session), "--stream", "mic",
                           "--out", str(out), "--json"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert out.read_bytes().startswith(session.read_bytes())
    before, _ = pyxdf.load_xdf(str(session), synchronize_clocks=False, dejitter_timestamps=False)
    after, _ = pyxdf.load_xdf(str(out), synchronize_clocks=False, dejitter_timestamps=False)
    by_name = {s["info"]["name"][0]: s for s in after}
    for s in before:
        a = by_name[s["info"]["name"][0]]
        assert np.array_equal(a["time_stamps"], s["time_stamps"]) and np.array_equal(
            np.asarray(a["time_series"]), np.asarray(s["time_series"]))
    words_stream = by_name["neuralign-transcribe"]
    assert words_stream["info"]["type"] == ["Transcript"]
    assert len(words_stream["clock_times"]) == 1 and words_stream["clock_values"] == [0.25]
    messages = [json.loads(row[0]) for row in words_stream["time_series"]]
    words = [m for m in messages if m["kind"] == "word"]
    marks = [m["time"] for m in messages if m["kind"] == "watermark"]
    assert report["runs"] == 2 and report["words"] == len(words) > 0
    gap_from, gap_to = t0 + split / rate, t0 + split / rate + dropout
    assert not [w for w in words if gap_from < w["start"] < gap_to], "a word in the dropout"
    # back on the audio's own time: the recognised onsets against espeak-ng's
    heard = [(w["text"], w["start"] - t0 - (dropout if w["start"] >= gap_to else 0.0)) for w in words]
    s = score(truth, heard)
    print(f"session: {len(words)} words in {report['runs']} runs, WER {s['wer']:.3f}, onset error "
          f"median {s['onset_median']:.3f} s")
    assert s["wer"] <= 0.3 and s["onset_median"] <= 0.15
    assert marks == sorted(marks) and marks[-1] >= stamps[-1]
    watermark = -np.inf
    for m, stamp in zip(messages, words_stream["time_stamps"]):
        if m["kind"] == "watermark":
            watermark = m["time"]
        else:
            assert m["start"] >= watermark and stamp == m["start"]
    # the copy is refused rather than replaced
    again = subprocess.run([str(neuralign_bin()), "transcribe", str(session), "--stream", "mic",
                            "--out", str(out)], capture_output=True, text=True, timeout=600)
    assert again.returncode != 0 and "already exists" in again.stderr, again.stderr
    # a stream that is not audio (the markers: strings, irregular) is refused with the reason
    markers = subprocess.run([str(neuralign_bin()), "transcribe", str(session), "--stream", "events",
                              "--out", str(tmp_path / "markers.xdf")], capture_output=True, text=True, timeout=600)
    assert markers.returncode != 0 and "stream events has nominal rate 0" in markers.stderr, markers.stderr
    assert not (tmp_path / "markers.xdf").exists()
