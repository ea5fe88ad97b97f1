"""The soak in short (tools/soak.py): three minutes of session time at 6x through a real
`neuralign serve` with a WebSocket client, a 30-second simulated session looped six times.
Nothing may be lost or rejected, each seam is at most one gap, and resident memory levels off;
the run ends with a SIGKILL of the server mid-stream, and its recording read back with pyxdf
may miss only the last second. The full run (two hours at 12x) is one command, its report in
docs/reliability.md."""
from __future__ import annotations

import os

import soak


def test_soak_three_minutes_of_session_at_6x(tmp_path, reliability_row):
    counts = {}
    reliability_row("load", "3 minutes of session time at 6x (a 30 s session looped 6 times) with a client",
                    "nothing lost or rejected, one gap a seam, one segment a seam, resident memory levels off; "
                    "after a SIGKILL mid-stream the recording misses at most the last second",
                    counts)
    result = soak.soak(soak.parser().parse_args([
        "--session-minutes", "3", "--speed", "6", "--electrodes", "4", "--sim-minutes", "0.5",
        "--clients", "1", "--seed", str(9000 + os.getpid() % 1000), "--workdir", str(tmp_path), "--kill"]))
    last = result["rows"][-1]
    counts.update(samples=int(last["samples"]), messages=int(last["messages"]), rejected=int(last["rejected"]),
                  lost=int(last["lost"]), dropped=int(last["dropped"]), gaps=int(last["gaps"]),
                  segments=int(last["segments"]), frames_dropped=int(last["frames_dropped"]),
                  resident_peak_mb=result["resident_peak_mb"],
                  recording_complete=result["recording"]["complete"],
                  lost_at_kill_s=result["recording"]["lost_wall_s"])
    assert result["checks"]["nothing_lost"], result["checks"]
    assert result["checks"]["nothing_rejected"], result["checks"]
    assert result["checks"]["one_gap_a_seam"], result["checks"]
    assert last["samples"] > 0 and last["messages"] > 0
    assert 0 < last["segments"] <= result["passes"] - 1
    assert result["recording"]["complete"], result["recording"]
