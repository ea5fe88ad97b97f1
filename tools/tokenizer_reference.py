"""Reference token ids for tests/lm_real.rs: builds the byte-level BPE
tokenizer from a GGUF with the python `tokenizers` and `gguf` packages
(independently of the Rust code) and prints the ids of the test strings.
Usage: python3 tools/tokenizer_reference.py MODEL.gguf"""
import gguf, sys
from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
r = gguf.GGUFReader(sys.argv[1])
def strs(key):
    f = r.fields[key]
    return [bytes(f.parts[i]).decode('utf-8') for i in f.data]
toks = strs('tokenizer.ggml.tokens'); merges = [tuple(m.split(' ',1)) for m in strs('tokenizer.ggml.merges')]
f = r.fields['tokenizer.ggml.token_type']; types = [int(f.parts[i][0]) for i in f.data]
tok = Tokenizer(models.BPE({t:i for i,t in enumerate(toks)}, merges))
tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)])
tok.decoder = decoders.ByteLevel()
tok.add_special_tokens([AddedToken(t, special=True) for t,ty in zip(toks,types) if ty==3])
for s in ["Hello world, the capital of Germany is Berlin.", " Paris", "The year 2024 had 366 days; π ≈ 3.14159!", "Ünïcödé: naïve café, 東京, emoji 🧠", "<|im_start|>user\nHi<|im_end|>"]:
    print(repr(s), tok.encode(s).ids)
