#!/usr/bin/env bash
# Links neuralign against the liblsl 1.18 that ships inside the PyPI `pylsl` wheel instead of
# building the liblsl 1.13 bundled with lsl-sys (see docs/lsl.md for why and the figures).
#
# Writes a cargo `links = "lsl"` override (plus an rpath, so the binary finds the library at
# run time) into $CARGO_HOME/config.toml, the per-machine cargo config: the paths are absolute
# and machine-specific, so they cannot live in the repository's .cargo/config.toml. Undo with
# `scripts/link-liblsl.sh --undo`. Requires: python3 -m pip install pylsl (1.18.x).
set -euo pipefail
config="${CARGO_HOME:-$HOME/.cargo}/config.toml"
begin="# >>> neuralign liblsl override >>>"
end="# <<< neuralign liblsl override <<<"
touch "$config"
# Drop a previous block, if any.
sed -i "/^$begin\$/,/^$end\$/d" "$config"
if [[ "${1:-}" == "--undo" ]]; then
    echo "removed the liblsl override from $config (lsl-sys builds its bundled liblsl 1.13 again)"
    exit 0
fi
libdir=$(python3 -c 'import os, pylsl; print(os.path.join(os.path.dirname(pylsl.__file__), "lib"))')
[[ -e "$libdir/liblsl.so" ]] || { echo "no liblsl.so in $libdir: python3 -m pip install pylsl" >&2; exit 1; }
triple=$(rustc -vV | sed -n 's/^host: //p')
cat >> "$config" <<CFG
$begin
[target.$triple.lsl]
rustc-link-search = ["$libdir"]
rustc-link-lib = ["lsl"]
[target.$triple]
rustflags = ["-C", "link-arg=-Wl,-rpath,$libdir"]
$end
CFG
echo "neuralign now links $libdir/liblsl.so (override in $config)"
