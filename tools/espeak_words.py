#!/usr/bin/env python3
"""Synthesises speech with Debian's espeak-ng (libespeak-ng, through ctypes) and writes the
audio with each word's true onset: the ground truth of `neuralign transcribe`'s tests and of
`neuralign bench asr` (docs/transcribe.md).

    python3 tools/espeak_words.py TEXT_FILE OUT.wav OUT.csv [--rate WPM] [--voice NAME]

OUT.wav is 16-bit mono PCM at espeak-ng's rate (22050 Hz); OUT.csv is a word table
(`word,start,end`, seconds) with every word of the text, whose onsets are espeak-ng's own word
events (`espeakEVENT_WORD`, `audio_position`, reported by the synthesiser as it renders each
word) and whose ends are the next onset (the last word ends with the audio). espeak-ng speaks a
few pairs as one word ("of the", "on the") with one event: the second word's times are empty
(it counts for the word error rate, not for onset errors). Needs `apt-get install espeak-ng`.
"""
from __future__ import annotations

import argparse
import csv
import ctypes
import ctypes.util
import re
import wave

AUDIO_OUTPUT_SYNCHRONOUS = 2
EVENT_LIST_TERMINATED, EVENT_WORD = 0, 1
POS_CHARACTER = 1
CHARS_UTF8 = 1


class EspeakEvent(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", ctypes.c_char * 8)]


SYNTH_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                                  ctypes.POINTER(EspeakEvent))


def synthesise(text: str, wpm: int = 175, voice: str = "en-us") -> tuple[int, list[int], list[tuple[str, float]]]:
    """(sample rate, samples, [(word, onset seconds)]) for `text`."""
    lib = ctypes.CDLL(ctypes.util.find_library("espeak-ng") or "libespeak-ng.so.1")
    rate = lib.espeak_Initialize(AUDIO_OUTPUT_SYNCHRONOUS, 500, None, 0)
    if rate <= 0:
        raise RuntimeError("espeak_Initialize failed: is espeak-ng-data installed?")
    lib.espeak_SetVoiceByName(voice.encode())
    lib.espeak_SetParameter(1, wpm, 0)  # espeakRATE
    samples: list[int] = []
    events: list[tuple[int, int, int]] = []

    def on_audio(wav, count, event_list):
        if wav and count > 0:
            samples.extend(wav[:count])
        k = 0
        while event_list[k].type != EVENT_LIST_TERMINATED:
            e = event_list[k]
            if e.type == EVENT_WORD:
                events.append((e.text_position, e.length, e.audio_position))
            k += 1
        return 0

    callback = SYNTH_CALLBACK(on_audio)
    lib.espeak_SetSynthCallback(callback)
    data = text.encode("utf-8")
    if lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None, None) != 0:
        raise RuntimeError("espeak_Synth failed")
    lib.espeak_Synchronize()
    # text_position counts characters from 1. espeak-ng speaks some pairs as one word ("of
    # the", "on the") and reports one event for both: the second word has no onset of its own.
    onsets = {pos - 1: ms / 1000.0 for pos, _, ms in events}
    words = [(m.group(), onsets.get(m.start())) for m in re.finditer(r"\S+", text)]
    return rate, samples, words


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("text")
    parser.add_argument("wav")
    parser.add_argument("csv")
    parser.add_argument("--rate", type=int, default=175, help="words per minute")
    parser.add_argument("--voice", default="en-us")
    args = parser.parse_args()
    text = re.sub(r"\s+", " ", open(args.text, encoding="utf-8").read()).strip()
    rate, samples, words = synthesise(text, args.rate, args.voice)
    with wave.open(args.wav, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join(int(s).to_bytes(2, "little", signed=True) for s in samples))
    seconds = len(samples) / rate
    with open(args.csv, "w", newline="", encoding="utf-8") as f:
        out = csv.writer(f)
        out.writerow(["word", "start", "end"])
        onsets = [t for _, t in words if t is not None] + [seconds]
        for word, start in words:
            if start is None:
                out.writerow([word, "", ""])
                continue
            end = next(t for t in onsets if t > start) if start < seconds else seconds
            out.writerow([word, f"{start:.3f}", f"{end:.3f}"])
    print(f"{len(words)} words, {seconds:.1f} s at {rate} Hz")


if __name__ == "__main__":
    main()
