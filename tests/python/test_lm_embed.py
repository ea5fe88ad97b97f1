"""`neuralign embed` output checked with numpy/safetensors, and its layer 0
checked against the GGUF's token embeddings dequantized by the python `gguf`
package (an independent reader of the same file)."""
import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOME = pathlib.Path(os.environ.get("NEURALIGN_HOME", pathlib.Path.home() / ".cache" / "neuralign"))
MODEL = HOME / "SmolLM2-135M-Instruct.Q4_1.gguf"


def neuralign():
    if os.environ.get("NEURALIGN_BIN"):
        return os.environ["NEURALIGN_BIN"]
    for profile in ("release", "debug"):
        target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
        exe = target / profile / "neuralign"
        if exe.exists():
            return str(exe)
    pytest.skip("build neuralign first (cargo build --release)")


def run_embed(tmp_path, transcript, *extra):
    src = tmp_path / "t.csv"
    src.write_text(transcript)
    out = tmp_path / "e.safetensors"
    subprocess.run([neuralign(), "embed", "--transcript", str(src), "--out", str(out), *extra], check=True)
    return out


def test_embed_file_layout_and_layer0_matches_gguf(tmp_path):
    from safetensors import safe_open
    from safetensors.numpy import load_file

    transcript = 'word,start,end\nThe,0.0,0.2\ncapital,0.25,0.6\n"of",0.6,0.7\nFrance,0.7,1.1\n,1.2,1.3\n'
    out = run_embed(tmp_path, transcript, "--layers", "0,5,30")
    x = load_file(str(out))
    assert x["embeddings"].shape == (4, 3, 576) and x["embeddings"].dtype == np.float32
    assert np.isfinite(x["embeddings"]).all()
    assert x["layers"].tolist() == [0, 5, 30]
    np.testing.assert_allclose(x["onsets"], [0.0, 0.25, 0.6, 0.7])
    np.testing.assert_allclose(x["offsets"], [0.2, 0.6, 0.7, 1.1])
    with safe_open(str(out), "np") as f:
        meta = f.metadata()
    assert json.loads(meta["words"]) == ["The", "capital", "of", "France"]
    assert len(meta["model_sha256"]) == 64

    import gguf
    reader = gguf.GGUFReader(str(MODEL))
    t = next(t for t in reader.tensors if t.name == "token_embd.weight")
    table = gguf.quants.dequantize(t.data, t.tensor_type).reshape(-1, 576)
    tokens = reader.fields["tokenizer.ggml.tokens"]
    vocab = {bytes(tokens.parts[i]).decode(): n for n, i in enumerate(tokens.data)}
    # "The" starts the context (no space); " capital" is one token "Ġcapital".
    for w, tok in [(0, "The"), (1, "Ġcapital")]:
        np.testing.assert_allclose(x["embeddings"][w, 0], table[vocab[tok]], rtol=0, atol=1e-6)


def test_limited_context_equals_a_fresh_run_of_the_window(tmp_path):
    from safetensors.numpy import load_file

    words = "the lighthouse keeper climbed the steps every night".split()
    limited = load_file(str(run_embed(tmp_path, " ".join(words), "--context", "2")))["embeddings"]
    window = load_file(str(run_embed(tmp_path, " ".join(words[3:6]))))["embeddings"]
    np.testing.assert_allclose(limited[5], window[2], rtol=1e-4, atol=1e-4)
