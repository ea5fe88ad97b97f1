"""Reliability: bad transcript input into a running `neuralign serve` (contract in docs/transcript.md).

Every rejection must be counted in the status frame's `errors` (`transcript_*` keys), the
server must keep running, the good words sent among the bad ones must still get `word`
frames, and every message received must be in the recording."""
from __future__ import annotations

import json
import time

import pylsl
import pytest

import faults

import pyxdf


def transcript_errors(status: dict) -> dict:
    return {k: v for k, v in status["errors"].items() if k.startswith("transcript_") and v}


def transcript_samples(status: dict) -> int:
    return next(s for s in status["streams"] if s["role"] == "transcript")["samples"]


@pytest.fixture
def session(serve):
    """A server with a live neural stream, a transcript outlet and a frame collector."""
    srv = serve()
    src, words = faults.start_sources(srv)
    client = faults.FrameCollector(srv.url())
    time.sleep(0.3)
    yield srv, words, client
    src.close()
    client.close()


def recorded_messages(srv) -> list[str]:
    streams, _ = pyxdf.load_xdf(str(srv.recordings()[0]), synchronize_clocks=False, dejitter_timestamps=False)
    raw = [s for s in streams if s["info"]["name"][0] == "neuralign-transcript-received"]
    assert raw, "the recording keeps every transcript message received"
    return [m[0] for m in raw[0]["time_series"]]


def test_bad_transcript_messages(session, reliability_row):
    srv, words, client = session
    t = pylsl.local_clock() + 1.0
    cases = [  # (row, messages, counter it must raise by len(messages))
        ("malformed JSON (truncated objects, bad escapes, trailing garbage) x5",
         ['{"kind":"word",', '{"kind": "word", "id": 1, "text": "a\\q"}', '{"kind":"retract","id":1}}',
          "{'kind': 'word'}", '{"kind":"word","id":7,"text":"x","start":1e999,'], "transcript_malformed_json"),
        ("unknown or missing kinds x4",
         ['{"kind":"banana","id":1}', '{"id":2,"text":"no kind"}', '{"kind":null}', '{"kind":"WORD","id":3}'],
         "transcript_unknown_kind"),
        ("retractions of unknown word ids x3",
         ['{"kind":"retract","id":99999}', '{"kind":"retract","id":123456}', '{"kind":"retract","id":424242}'],
         "transcript_unknown_id"),
        ("1 MB strings: a 1 MB word text, a 1 MB unknown kind, 1 MB of non-JSON garbage",
         [json.dumps({"kind": "word", "id": 900, "text": "x" * 1_000_000, "start": t, "end": t + 0.1}),
          json.dumps({"kind": "z" * 1_000_000}), "{" + "q" * 1_000_000], None),
    ]
    rows = {name: reliability_row("bad input", f"transcript: {name}, each followed by a good word",
                                  "each rejected and counted by reason; the server keeps running; the good words "
                                  "still get `word` frames; every message recorded verbatim", {})
            for name, _, _ in cases}
    good = 0
    for name, messages, counter in cases:
        counts = rows[name]["counts"]
        before = srv.status()
        for m in messages:
            words.send(m)
            words.word(100 + good, f"good{good}")  # a good word after every bad one
            good += 1
            time.sleep(0.05)
        st = srv.wait_status(lambda s: transcript_samples(s) == len(words.sent), 20, "every message counted")
        delta = {k: v - before["errors"].get(k, 0) for k, v in st["errors"].items() if v != before["errors"].get(k, 0)}
        counts.update(sent=len(messages), **delta)
        if counter:
            assert delta.get(counter) == len(messages), (name, delta)
    faults.wait_until(lambda: {f["id"] for f in client.of("word")} >= set(range(100, 100 + good)), 90,
                      f"word frames for the {good} good words")
    for row in rows.values():
        row["counts"]["good_word_frames"] = good
    # the 1 MB word is well formed: the model refuses it (counted); the other two are rejected
    one_mb = rows[cases[-1][0]]["counts"]
    one_mb["words_not_embedded"] = srv.status()["errors"]["words_not_embedded"]  # once the LM got to it
    assert one_mb["words_not_embedded"] == 1 and one_mb.get("transcript_unknown_kind") == 1
    assert one_mb.get("transcript_malformed_json") == 1
    assert srv.alive()
    srv.stop()
    assert recorded_messages(srv) == words.sent


def test_word_order_and_duplicates(session, reliability_row):
    srv, words, client = session
    counts = {}
    reliability_row("bad input", "out-of-order ids and onsets (5 words sent in reverse onset order), "
                    "5 exact duplicates, 2 revisions",
                    "out-of-order words inserted at their onset (LM rolls back); duplicates rejected as "
                    "`transcript_duplicate`; revisions framed as `revised`", counts)
    t = pylsl.local_clock() + 2.0
    for i in reversed(range(5)):
        words.word(10 + i, f"w{i}", start=t + 0.3 * i)
        time.sleep(0.02)
    for i in range(5):
        words.send(words.sent[i])  # exact copies
    # revisions of words already framed (one that arrives while its word still waits for the
    # language model is embedded once, as revised, and framed `new`: docs/websocket.md)
    faults.wait_until(lambda: {f["id"] for f in client.of("word")} >= set(range(10, 15)), 60,
                      "the five words framed")
    words.word(12, "w2-revised", start=t + 0.6)
    words.word(10, "w0-revised", start=t)
    faults.wait_until(lambda: sum(f["status"] == "revised" and "revised" in f["text"] for f in client.of("word")) >= 2,
                      60, "both revisions framed")
    st = srv.wait_status(lambda s: transcript_samples(s) == len(words.sent), 20, "every message counted")
    errs = transcript_errors(st)
    frames = client.of("word")
    counts.update(errs)
    counts["word_frames"] = len(frames)
    counts["revised_frames"] = sum(f["status"] == "revised" for f in frames)
    assert errs.get("transcript_duplicate") == 5
    final = {}
    for f in frames:
        if f["status"] == "retracted":
            final.pop(f["id"], None)
        else:
            final[f["id"]] = f
    assert sorted(final) == [10, 11, 12, 13, 14]
    assert final[12]["text"] == "w2-revised" and final[10]["text"] == "w0-revised"
    onsets = [final[i]["onset"] for i in sorted(final)]
    assert onsets == sorted(onsets)
    srv.stop()
    assert recorded_messages(srv) == words.sent


def test_words_far_behind_the_watermark_are_forgotten(serve, reliability_row):
    counts = {}
    reliability_row("hours", "10 words, then a watermark 10 s later, with `[transcript] forget_after_s` = 2 s; "
                    "then a revision and a retraction of forgotten words, then 3 new words",
                    "the 10 words are forgotten (`drops.transcript_words_forgotten`, the transcript and the LM's "
                    "record shrink); the revision is `late`, the retraction `unknown_id`; the new words are "
                    "embedded and framed", counts)
    srv = serve(forget_after_s=2.0)
    src, words = faults.start_sources(srv)
    client = faults.FrameCollector(srv.url())
    try:
        t0 = pylsl.local_clock() + 1.0
        for i in range(10):
            words.word(i, f"old{i}", start=t0 + 0.2 * i)
        faults.wait_until(lambda: len(client.of("word")) >= 10, 60, "10 word frames")
        held = srv.status()["memory"]
        words.send(json.dumps({"kind": "watermark", "time": t0 + 10.0}))
        st = srv.wait_status(lambda s: s["drops"].get("transcript_words_forgotten", 0) == 10, 20,
                             "the 10 words forgotten")
        words.word(0, "revised", start=t0)
        words.send(json.dumps({"kind": "retract", "id": 1}))
        for i in range(10, 13):
            words.word(i, f"new{i}", start=t0 + 10.0 + 0.2 * (i - 10))
        faults.wait_until(lambda: len(client.of("word")) >= 13, 60, "3 more word frames")
        st = srv.wait_status(lambda s: transcript_samples(s) == len(words.sent), 20, "every message counted")
    finally:
        src.close()
        client.close()
    errs = transcript_errors(st)
    counts.update(forgotten=st["drops"]["transcript_words_forgotten"], **errs,
                  transcript_bytes_before=held["transcript"], transcript_bytes_after=st["memory"]["transcript"],
                  lm_words_bytes_before=held["lm_words"], lm_words_bytes_after=st["memory"]["lm_words"])
    assert errs.get("transcript_late") == 1 and errs.get("transcript_unknown_id") == 1
    assert [f["text"] for f in client.of("word")][10:] == ["new10", "new11", "new12"]
    assert st["memory"]["lm_words"] < held["lm_words"], "the LM thread forgot its record of them"
    srv.stop()


def test_burst_of_1000_messages_in_1_s(session, reliability_row):
    srv, words, client = session
    counts = {}
    reliability_row("load", "1000 transcript messages in 1 s (100 words, 800 watermarks, 100 malformed)",
                    "all 1000 received and counted; 100 malformed rejected; the LM works through the 100 "
                    "words (queue, no drop); each gets a `word` frame; all recorded", counts)
    t = pylsl.local_clock() + 1.0
    start = time.monotonic()
    for k in range(1000):
        if k % 10 == 0:
            words.word(1000 + k // 10, f"burst{k // 10}", start=t + 0.01 * k)
        elif k % 10 == 5:
            words.send('{"kind":"word","id":')
        else:
            words.send(json.dumps({"kind": "watermark", "time": t + 0.01 * k - 0.5}))
        while time.monotonic() < start + (k + 1) / 1000:
            pass
    counts["send_seconds"] = round(time.monotonic() - start, 2)
    faults.wait_until(lambda: len({f["id"] for f in client.of("word")}) >= 100, 120, "100 word frames")
    st = srv.wait_status(lambda s: transcript_samples(s) == 1000, 20, "1000 messages counted")
    errs = transcript_errors(st)
    counts.update(errs)
    counts["word_frames"] = len({f["id"] for f in client.of("word")})
    counts["dropped"] = {k: v for k, v in st["drops"].items() if v}
    assert errs.get("transcript_malformed_json") == 100
    assert sum(errs.values()) == 100 + errs.get("transcript_watermark_regression", 0)
    assert st["drops"]["transcript_updates"] == 0 and st["drops"]["lm_outputs"] == 0
    srv.stop()
    assert recorded_messages(srv) == words.sent
