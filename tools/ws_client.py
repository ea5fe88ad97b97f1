#!/usr/bin/env python3
"""Example neuralign WebSocket client: prints alignment as it arrives.

    python3 tools/ws_client.py ws://127.0.0.1:8787/ws
    python3 tools/ws_client.py ws://host:8787/ws --token "$NEURALIGN_TOKEN" \
        --electrodes 0,5,LTG3 --layers 8,12 --rate 2
    python3 tools/ws_client.py URL --json --count 10   # raw frames, one per line

Needs the `websockets` package (pip install websockets). The protocol is
documented in docs/websocket.md.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys

from websockets.asyncio.client import connect


def parse_list(text: str | None):
    """'all', or a comma list of ints (indices / layer ids) and labels."""
    if text is None:
        return None
    if text == "all":
        return "all"
    return [int(x) if x.lstrip("-").isdigit() else x for x in text.split(",") if x]


def describe_alignment(frame: dict, labels: list[str]) -> str:
    s = frame["summary"]
    peaks = [(r, i) for i, r in enumerate(s["peak_r"]) if r is not None and not math.isnan(r)]
    top = sorted(peaks, reverse=True)[:3]
    best = ", ".join(f"{labels[i]}@L{s['peak_layer'][i]} r={r:.2f}" for r, i in top)
    mean = [m for m in s["mean_r"] if m is not None]
    return (
        f"t={frame['time']:.2f}s best layer {s['best_layer']} "
        f"(mean r {max(mean) if mean else float('nan'):.3f}) | "
        f"{s['electrodes_above_chance']}/{len(labels)} above chance {frame['chance']:.3f} | top: {best}"
    )


async def run(args) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else None
    alignments = 0
    labels: list[str] = []
    async with connect(args.url, additional_headers=headers, max_size=2**26) as ws:
        async for message in ws:
            frame = json.loads(message)
            kind = frame["type"]
            if kind == "hello":
                labels = frame["session"]["electrodes"]
                sub = {"type": "subscribe"}
                for key, value in (("electrodes", parse_list(args.electrodes)),
                                   ("layers", parse_list(args.layers)),
                                   ("models", parse_list(args.models)), ("rate", args.rate)):
                    if value is not None:
                        sub[key] = value
                if len(sub) > 1:
                    await ws.send(json.dumps(sub))
            if args.json:
                print(json.dumps(frame, separators=(",", ":")), flush=True)
            elif kind == "hello":
                s = frame["session"]
                print(f"session: {s['model']}, {len(s['electrodes'])} electrodes x "
                      f"{len(s['layers'])} layers, high-gamma {s['rates']['high_gamma_hz']} Hz", flush=True)
            elif kind == "alignment":
                model = f"[{frame['model']['name']}] " if "model" in frame else ""
                print(model + describe_alignment(frame, labels), flush=True)
            elif kind == "word":
                lat = sum(frame["latency_ms"].values())
                print(f"word {frame['status']:9} {frame['text']!r} at {frame['onset']:.2f}s ({lat:.1f} ms)", flush=True)
            elif kind == "status":
                c = frame["client"]
                print(f"status: {frame['clients']} clients, sent {c['sent']}, dropped {c['dropped']}", flush=True)
            elif kind == "error":
                print(f"server refused a message: {frame['code']}: {frame['message']}", file=sys.stderr)
            if kind == "alignment":
                alignments += 1
                if args.count and alignments >= args.count:
                    return 0
    return 1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("url", nargs="?", default="ws://127.0.0.1:8787/ws")
    p.add_argument("--token", default=os.environ.get("NEURALIGN_TOKEN"),
                   help="access token (default: $NEURALIGN_TOKEN)")
    p.add_argument("--electrodes", help="electrodes to trace: 'all' or e.g. 0,5,LTG3")
    p.add_argument("--layers", help="layers for traces and alignment: 'all' or e.g. 8,12")
    p.add_argument("--models", help="models whose frames to receive: 'all' or e.g. 0 or a model file name")
    p.add_argument("--rate", type=float, help="most alignment/trace frames per second")
    p.add_argument("--count", type=int, default=0, help="stop after this many alignment frames")
    p.add_argument("--json", action="store_true", help="print every frame as one JSON line")
    args = p.parse_args()
    try:
        return asyncio.run(run(args))
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
