"""neuralign's language model side by side with llama.cpp (llama-cpp-python), in one run.

Usage: python3 tools/bench_llama_cpp.py [--bin target/release/neuralign] [--steps 30] [--json FILE]

Installs llama-cpp-python from PyPI into a cache venv on first use (~/.cache/neuralign/
llama-cpp-venv, built for every SIMD extension of this CPU but AMX: many minutes on 2 cores), then, on the same GGUF
(the default model) with 2 threads:
  - decode: llama.cpp's per-token eval (logits included) after 16/256/1024/2048 tokens of
    context, against `neuralign bench lm --json` (per word, no output layer) in the same run;
  - prefill: llama.cpp's prompt processing of a text of ~1700 tokens (the project's CC0
    passage, repeated) against `neuralign embed` of the same words (whole process, minus the
    time of the same process on one word: model load and start-up).
Prints medians, p99 and ratios (neuralign / llama.cpp: below 1 is faster). Not part of CI.
"""
import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
HOME = pathlib.Path(os.environ.get("NEURALIGN_HOME", pathlib.Path.home() / ".cache" / "neuralign"))
MODEL = HOME / "SmolLM2-135M-Instruct.Q4_1.gguf"
VENV = HOME / "llama-cpp-venv"
VERSION = "0.3.36"
CONTEXTS = [16, 256, 1024, 2048]


def ensure_llama_cpp():
    """Re-runs this script inside the cache venv, installing llama-cpp-python there first."""
    try:
        import llama_cpp  # noqa: F401
        return
    except ImportError:
        pass
    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    probe = subprocess.run([str(python), "-c", "import llama_cpp"], capture_output=True)
    if probe.returncode != 0:
        print(f"installing llama-cpp-python=={VERSION} into {VENV} (builds llama.cpp: many minutes)", file=sys.stderr)
        env = dict(os.environ, CMAKE_ARGS=cmake_args(), CMAKE_BUILD_PARALLEL_LEVEL=str(os.cpu_count() or 2))
        subprocess.run(["nice", "-n", "19", str(python), "-m", "pip", "install", "-q",
                        f"llama-cpp-python=={VERSION}"], check=True, env=env)
    os.execv(str(python), [str(python), *sys.argv])


def cmake_args():
    """Every SIMD extension this CPU reports, but not AMX: `-DGGML_NATIVE=ON` turns on AMX where
    the CPU has it, and a VM that does not grant AMX tiles to processes (seen here on a Xeon)
    then stops llama.cpp with an illegal instruction in `ggml_backend_amx_mul_mat`."""
    flags = set()
    try:
        for line in pathlib.Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    except OSError:
        return "-DGGML_NATIVE=ON"
    options = {"avx": "AVX", "avx2": "AVX2", "fma": "FMA", "f16c": "F16C", "bmi2": "BMI2",
               "avx_vnni": "AVX_VNNI", "avx512f": "AVX512", "avx512vbmi": "AVX512_VBMI",
               "avx512_vnni": "AVX512_VNNI", "avx512_bf16": "AVX512_BF16"}
    on = [f"-DGGML_{name}=ON" for flag, name in options.items() if flag in flags]
    return " ".join(["-DGGML_NATIVE=OFF", *on])


def percentiles(ms):
    ms = sorted(ms)
    return {"p50": statistics.median(ms), "p99": ms[min(len(ms) - 1, int(round(0.99 * (len(ms) - 1))))], "n": len(ms)}


def passage_words(n_tokens, llm):
    words = (ROOT / "tests" / "data" / "speech" / "passage.txt").read_text().split()
    out = []
    while len(llm.tokenize(" ".join(out).encode(), add_bos=False)) < n_tokens:
        out += words
    return out


def llama_cpp_figures(steps):
    from llama_cpp import Llama
    llm = Llama(model_path=str(MODEL), n_ctx=max(CONTEXTS) + steps + 8, n_threads=2, n_threads_batch=2,
                n_batch=512, verbose=False)
    words = passage_words(max(CONTEXTS) + steps + 8, llm)
    tokens = llm.tokenize(" ".join(words).encode(), add_bos=False)
    decode = {}
    for ctx in CONTEXTS:
        llm.reset()
        llm.eval(tokens[:ctx])
        ms = []
        for i in range(steps):
            t0 = time.perf_counter()
            llm.eval([tokens[ctx + i]])
            ms.append((time.perf_counter() - t0) * 1e3)
        decode[ctx] = percentiles(ms)
    prefill_words = passage_words(1700, llm)
    prefill_tokens = llm.tokenize(" ".join(prefill_words).encode(), add_bos=False)
    runs = []
    for _ in range(3):
        llm.reset()
        t0 = time.perf_counter()
        llm.eval(prefill_tokens)
        runs.append(time.perf_counter() - t0)
    return decode, prefill_words, len(prefill_tokens), statistics.median(runs)


def find_key(value, key):
    """The first dict inside `value` (depth first) that has `key`."""
    if isinstance(value, dict):
        if key in value:
            return value
        value = list(value.values())
    if isinstance(value, list):
        for v in value:
            found = find_key(v, key)
            if found is not None:
                return found
    return None


def neuralign_figures(binary, words, duration):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = pathlib.Path(tmp)
        out = tmp / "lm.json"
        subprocess.run([binary, "bench", "lm", "--duration", str(duration), "--json", str(out)], check=True,
                       stdout=subprocess.DEVNULL)
        report = json.loads(out.read_text())
        details = find_key(report, "per_word")
        decode = {row["context_tokens"]: row["incremental"] for row in details["per_word"]}

        def embed_secs(text):
            src = tmp / "t.txt"
            src.write_text(text)
            t0 = time.perf_counter()
            subprocess.run([binary, "embed", "--transcript", str(src), "--out", str(tmp / "e.safetensors"),
                            "--layers", "30"], check=True, capture_output=True)
            return time.perf_counter() - t0
        start_up = statistics.median(embed_secs(words[0]) for _ in range(3))
        whole = statistics.median(embed_secs(" ".join(words)) for _ in range(3))
    return decode, whole, start_up, details


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--bin", default=str(ROOT / "target" / "release" / "neuralign"))
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--duration", type=float, default=10.0, help="`bench lm --duration`")
    ap.add_argument("--json", type=pathlib.Path)
    args = ap.parse_args()
    ensure_llama_cpp()
    import llama_cpp
    load = os.getloadavg()[0]
    decode_l, words, n_tokens, pp_secs = llama_cpp_figures(args.steps)
    decode_n, whole, start_up, details = neuralign_figures(args.bin, words, args.duration)
    print(f"llama-cpp-python {llama_cpp.__version__}, {MODEL.name}, 2 threads, load average {load:.2f} -> {os.getloadavg()[0]:.2f}")
    print("| context | llama.cpp decode p50 / p99 (ms) | neuralign per word p50 / p99 (ms) | ratio p50 |")
    print("|---:|---:|---:|---:|")
    rows = []
    for ctx in CONTEXTS:
        lc, nl = decode_l[ctx], decode_n.get(ctx)
        ratio = nl["p50_ms"] / lc["p50"] if nl else None
        rows.append({"context": ctx, "llama_cpp": lc, "neuralign": nl, "ratio_p50": ratio})
        ours = f"{nl['p50_ms']:.1f} / {nl['p99_ms']:.1f}" if nl else "not measured"
        print(f"| {ctx} | {lc['p50']:.1f} / {lc['p99']:.1f} | {ours} | {f'{ratio:.2f}' if ratio else '-'} |")
    embed_secs = whole - start_up
    print(f"prefill of {len(words)} words, {n_tokens} tokens: llama.cpp {n_tokens / pp_secs:.0f} tokens/s; "
          f"neuralign embed {n_tokens / embed_secs:.0f} tokens/s ({whole:.2f} s whole process, {start_up:.2f} s start-up); "
          f"ratio (neuralign throughput / llama.cpp) {pp_secs / embed_secs:.2f}")
    if args.json:
        args.json.write_text(json.dumps({"decode": rows, "prefill": {
            "tokens": n_tokens, "llama_cpp_s": pp_secs, "neuralign_whole_s": whole, "neuralign_start_up_s": start_up},
            "load_average": load, "neuralign_bench_lm": details}, indent=1))


if __name__ == "__main__":
    main()
