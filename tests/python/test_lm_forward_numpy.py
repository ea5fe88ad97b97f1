"""Every layer of neuralign's forward pass against an independent one.

The reference dequantises the default GGUF (SmolLM2-135M-Instruct Q4_1) with the python
`gguf` package and runs its own float64 numpy forward pass: RMSNorm, rotary embeddings in
the GGUF's llama convention (adjacent pairs rotated, since llama.cpp's converter permutes
the Q/K rows), grouped-query causal attention and the SwiGLU MLP; the output layer is the
tied token-embedding matrix. Over a passage of > 250 tokens every layer's hidden state at
each word's last token agrees with `neuralign embed` (cosine >= 0.999; the relative L2 norm
of the difference per layer is printed and recorded in docs/lm.md) and the top-5 next
tokens after the passage agree with `embed --next-logits`.

The token ids are checked against a second, independent tokenizer: a byte-level BPE written
here from the GGUF's own `tokenizer.ggml.tokens` and `tokenizer.ggml.merges`, with the
GPT-2 pre-tokenisation regex after splitting digits one by one (the GGUF's `smollm`
pre-tokeniser), not the HF `tokenizers` library that neuralign builds on.
"""
import functools
import os
import pathlib
import subprocess

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
HOME = pathlib.Path(os.environ.get("NEURALIGN_HOME", pathlib.Path.home() / ".cache" / "neuralign"))
MODEL = HOME / "SmolLM2-135M-Instruct.Q4_1.gguf"
# The project's own CC0 passage (tests/data/speech/README.md) and a sentence of digits,
# contractions, punctuation and non-ASCII letters for the tokenizer.
PASSAGE = (ROOT / "tests" / "data" / "speech" / "passage.txt").read_text().split() + (
    "In 2024 the café's naïve owner didn't know: 3.14159 ≈ π, ÷ 12 = 0.25!".split()
)
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def neuralign():
    if os.environ.get("NEURALIGN_BIN"):
        return os.environ["NEURALIGN_BIN"]
    for profile in ("release", "debug"):
        exe = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / profile / "neuralign"
        if exe.exists():
            return str(exe)
    pytest.skip("build neuralign first (cargo build --release)")


@functools.lru_cache(maxsize=1)
def reader():
    import gguf
    if not MODEL.exists():
        pytest.skip(f"the default model is not in {HOME} (neuralign model fetch)")
    return gguf.GGUFReader(str(MODEL))


def field(name):
    f = reader().fields[name]
    return f.contents()


def weight(name):
    """A tensor dequantised by `gguf`, as `[rows, cols]` = numpy's order of GGUF's `[ne0, ne1]` reversed."""
    import gguf
    t = next(t for t in reader().tensors if t.name == name)
    w = gguf.quants.dequantize(t.data, t.tensor_type)
    return w.reshape([int(n) for n in reversed(t.shape.tolist())]).astype(np.float64)


# --- the tokenizer ---------------------------------------------------------------------

def bytes_to_unicode():
    """GPT-2's reversible map of the 256 byte values onto printable characters."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


class ByteLevelBpe:
    def __init__(self, tokens, merges):
        import regex
        self.vocab = {t: i for i, t in enumerate(tokens)}
        self.ranks = {tuple(m.split(" ", 1)): r for r, m in enumerate(merges)}
        self.byte_chars = bytes_to_unicode()
        self.digit = regex.compile(r"\p{N}")
        self.split = regex.compile(GPT2_SPLIT)

    def pieces(self, text):
        """Digits one by one, then the GPT-2 regex on what lies between them."""
        out, pos = [], 0
        for m in self.digit.finditer(text):
            out += self.split.findall(text[pos:m.start()]) + [m.group()]
            pos = m.end()
        return out + self.split.findall(text[pos:])

    def bpe(self, piece):
        parts = [self.byte_chars[b] for b in piece.encode("utf-8")]
        while len(parts) > 1:
            pairs = [(self.ranks.get(p, len(self.ranks)), i) for i, p in enumerate(zip(parts, parts[1:]))]
            rank, i = min(pairs)
            if rank == len(self.ranks):
                break
            parts[i:i + 2] = [parts[i] + parts[i + 1]]
        return [self.vocab[p] for p in parts]

    def encode(self, text):
        return [i for piece in self.pieces(text) for i in self.bpe(piece)]


# --- the forward pass ------------------------------------------------------------------

def rms_norm(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def rope(x, base):
    """Rotary embedding of `[t, heads, hd]` at positions 0..t, adjacent pairs (GGUF llama)."""
    t, _, hd = x.shape
    inv_freq = base ** (-np.arange(0, hd, 2) / hd)
    ang = np.arange(t)[:, None] * inv_freq[None, :]
    cos, sin = np.cos(ang)[:, None, :], np.sin(ang)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * cos - odd * sin
    out[..., 1::2] = even * sin + odd * cos
    return out


def forward(ids):
    """Hidden states `[layers, t, dim]` (0 = embedding, k = after block k) and the logits after the last token."""
    eps = field("llama.attention.layer_norm_rms_epsilon")
    base = field("llama.rope.freq_base")
    n_heads, n_kv = field("llama.attention.head_count"), field("llama.attention.head_count_kv")
    embd = weight("token_embd.weight")
    x = embd[ids]
    t, dim = x.shape
    hd = dim // n_heads
    causal = np.triu(np.full((t, t), -np.inf), 1)
    states = [x]
    for b in range(field("llama.block_count")):
        w = lambda n: weight(f"blk.{b}.{n}")  # noqa: E731
        h = rms_norm(x, w("attn_norm.weight"), eps)
        q = rope((h @ w("attn_q.weight").T).reshape(t, n_heads, hd), base)
        k = rope((h @ w("attn_k.weight").T).reshape(t, n_kv, hd), base)
        v = (h @ w("attn_v.weight").T).reshape(t, n_kv, hd)
        heads = []
        for hh in range(n_heads):
            kv = hh // (n_heads // n_kv)
            s = q[:, hh] @ k[:, kv].T / np.sqrt(hd) + causal
            p = np.exp(s - s.max(-1, keepdims=True))
            heads.append((p / p.sum(-1, keepdims=True)) @ v[:, kv])
        x = x + np.concatenate(heads, -1) @ w("attn_output.weight").T
        h = rms_norm(x, w("ffn_norm.weight"), eps)
        gate, up = h @ w("ffn_gate.weight").T, h @ w("ffn_up.weight").T
        x = x + (gate / (1 + np.exp(-gate)) * up) @ w("ffn_down.weight").T
        states.append(x)
    head = weight("output.weight") if any(t.name == "output.weight" for t in reader().tensors) else embd
    logits = rms_norm(x[-1], weight("output_norm.weight"), eps) @ head.T
    return np.stack(states), logits


def test_every_layer_and_the_next_tokens_match_an_independent_forward_pass(tmp_path):
    from safetensors.numpy import load_file

    reader()
    src = tmp_path / "passage.txt"
    src.write_text(" ".join(PASSAGE))
    out = tmp_path / "passage.safetensors"
    subprocess.run([neuralign(), "embed", "--transcript", str(src), "--out", str(out), "--next-logits"],
                   check=True, capture_output=True, timeout=600)
    got = load_file(str(out))
    ids = got["token_ids"].tolist()
    counts = got["token_counts"]
    assert len(ids) >= 200 and counts.sum() == len(ids) and len(counts) == len(PASSAGE)
    assert not field("tokenizer.ggml.add_bos_token")

    # The tokens: words joined by single spaces, the first without one.
    bpe = ByteLevelBpe(field("tokenizer.ggml.tokens"), field("tokenizer.ggml.merges"))
    expected = [bpe.encode(w if i == 0 else " " + w) for i, w in enumerate(PASSAGE)]
    assert [len(e) for e in expected] == counts.tolist()
    assert [i for e in expected for i in e] == ids

    states, logits = forward(np.array(ids))
    last = np.cumsum(counts) - 1                       # each word's last token
    ref = states[:, last].transpose(1, 0, 2)           # [words, layers, dim]
    emb = got["embeddings"].astype(np.float64)
    assert emb.shape == ref.shape
    cos = (emb * ref).sum(-1) / (np.linalg.norm(emb, axis=-1) * np.linalg.norm(ref, axis=-1))
    rel = np.linalg.norm(emb - ref, axis=(0, 2)) / np.linalg.norm(ref, axis=(0, 2))
    print(f"\n{len(ids)} tokens, {len(PASSAGE)} words; per layer: min cosine over words, relative L2 of the difference")
    for layer in range(ref.shape[1]):
        print(f"layer {layer:2d}: cos {cos[:, layer].min():.7f}  rel L2 {rel[layer]:.2e}")
    worst = np.unravel_index(cos.argmin(), cos.shape)
    assert cos.min() >= 0.999, f"word {worst[0]} ({PASSAGE[worst[0]]!r}) layer {worst[1]}: cosine {cos.min()}"

    ours = got["next_logits"].astype(np.float64)
    top_ours, top_ref = np.argsort(-ours)[:5], np.argsort(-logits)[:5]
    print("top-5 next tokens: neuralign", top_ours.tolist(), "reference", top_ref.tolist(),
          f"logits rel L2 {np.linalg.norm(ours - logits) / np.linalg.norm(logits):.2e}")
    assert top_ours.tolist() == top_ref.tolist()
