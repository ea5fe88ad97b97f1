"""`neuralign transcribe` against speech with known word times: Debian's espeak-ng synthesises
tests/data/speech/passage.txt (≥ 60 s) and reports each word's onset as it renders it
(tools/espeak_words.py); the recognised word table must reach word error rate ≤ 10 % and
word-onset error median ≤ 0.15 s, p90 ≤ 0.3 s (issue 14). Silence and noise yield no words;
audio that is not PCM WAV, or at a rate that cannot be resampled, is a clear error.
Needs espeak-ng (apt) and the speech model (`neuralign model fetch --asr`)."""
from __future__ import annotations

import csv
import json
import pathlib
import re
import subprocess
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
    write_wav(tmp_path / "in.wav", samples)
    done, report = transcribe(tmp_path / "in.wav", tmp_path / "words.csv")
    assert done.returncode == 0, done.stderr
    assert read_table(tmp_path / "words.csv") == []
    assert report["words"] == []
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
