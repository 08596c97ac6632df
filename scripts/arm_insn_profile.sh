#!/usr/bin/env bash
# Where an Arm build's instructions go: executed guest instructions per function and per
# inference under qemu-user, for one board build and one model. The per-function companion of
# scripts/arm_insn_count.sh (same counting, same "3 runs minus 1 run, halved" rule).
#
#   scripts/arm_insn_profile.sh rpi5 MODEL.onnx          # top 25 functions, Cortex-A76 model
#   scripts/arm_insn_profile.sh rpi4 MODEL.speck 40      # a compiled model, top 40
#   SPECK_BENCH_ARGS=--fp16 scripts/arm_insn_profile.sh rpi5 MODEL.speck   # extra bench flags
#
# The board binary is built unstripped (targets/build.sh with SPECK_KEEP_SYMBOLS=1) in its own
# target directory (default $HOME/.cache/speck-profile/target, env CARGO_TARGET_DIR overrides);
# the host speck that compiles an .onnx model is ./target/release/speck.
# An .onnx model is compiled for the board by the host speck first. Kernels called through a
# function pointer (every microkernel) keep their own row; inlined helpers count in their caller.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
board=${1:-}
model=${2:-}
top=${3:-25}
if [ -z "$board" ] || [ -z "$model" ]; then
    echo "usage: scripts/arm_insn_profile.sh BOARD MODEL [TOP]   (BOARD: rpi4, rpi5, jetson-orin, rpi-armv7)" >&2
    exit 2
fi
[ -f "$model" ] || { echo "arm_insn_profile.sh: no model file $model" >&2; exit 1; }
[ -f "$root/targets/$board.toml" ] || { echo "arm_insn_profile.sh: unknown board $board" >&2; exit 2; }
# qemu CPU model, qemu binary and sysroot from the board file (aarch64 boards or 32-bit rpi-armv7).
read -r cpu qemu sysroot nm_tool < <(python3 -c '
import sys, tomllib
b = tomllib.load(open(sys.argv[1], "rb"))["build"]
arm32 = b["triple"].startswith("armv7")
print(b.get("qemu_cpu", "max"), b.get("qemu", "qemu-aarch64"),
      b.get("sysroot", "/usr/aarch64-linux-gnu"),
      "arm-linux-gnueabihf-nm" if arm32 else "aarch64-linux-gnu-nm")' "$root/targets/$board.toml")
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/speck-profile/target}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -shared -fPIC -o "$tmp/libprof.so" "$root/scripts/qemu_insn_profile.c" -lpthread

bin=$(SPECK_KEEP_SYMBOLS=1 "$root/targets/build.sh" "$board" | tail -1)
case "$model" in
*.onnx)
    echo "== host speck compiles $model for $board" >&2
    (cd "$root" && CARGO_TARGET_DIR="$root/target" cargo build --release --locked --bin speck >&2)
    "$root/target/release/speck" compile "$model" --target "$board" -o "$tmp/m.speck" >&2
    model="$tmp/m.speck"
    ;;
esac
for runs in 1 3; do
    "$qemu" -L "$sysroot" -E LD_LIBRARY_PATH="$sysroot/lib" \
        -cpu "$cpu" -plugin "$tmp/libprof.so,out=$tmp/blocks$runs" \
        "$bin" bench "$model" --runs "$runs" --warmup 0 --threads 1 ${SPECK_BENCH_ARGS:-} >/dev/null 2>"$tmp/err$runs" \
        || { cat "$tmp/err$runs" >&2; exit 1; }
done
"$nm_tool" -C --defined-only -n "$bin" >"$tmp/syms"
python3 - "$tmp/syms" "$tmp/blocks1" "$tmp/blocks3" "$top" "$board" "$cpu" <<'PY'
import bisect, collections, re, sys
syms_path, b1, b3, top, board, cpu = sys.argv[1:]
addrs, names = [], []
for line in open(syms_path):
    parts = line.rstrip("\n").split(" ", 2)
    if len(parts) == 3 and parts[1] in "tTwW":
        addrs.append(int(parts[0], 16))
        names.append(parts[2])
def load(path):
    return [(int(a, 16), int(n)) for a, n in (l.split() for l in open(path))]
blocks1, blocks3 = load(b1), load(b3)
# qemu-user maps a PIE binary at a fixed base; pick the one that puts most blocks in the text.
lo, hi = addrs[0], addrs[-1] + 4096
def inside(base):
    return sum(n for a, n in blocks3 if lo <= a - base < hi)
base = max((0, 0x5500000000, 0x4000000000, 0x555555554000, 0x40000000, 0x400000, 0x10000),
           key=inside)
def short(name):
    name = re.sub(r"::h[0-9a-f]{16}$", "", name)
    return name if len(name) <= 110 else name[:107] + "..."
def per_fn(blocks):
    out = collections.Counter()
    for a, n in blocks:
        i = bisect.bisect_right(addrs, a - base) - 1
        out[short(names[i]) if 0 <= i and lo <= a - base < hi else "[outside speck: libc, loader]"] += n
    return out
c1, c3 = per_fn(blocks1), per_fn(blocks3)
per = {k: (c3[k] - c1.get(k, 0)) / 2 for k in c3}
total = sum(per.values())
print(f"{board} ({cpu}): {total / 1e6:.2f} M instructions per inference, 1 thread")
print("| M instr | share | function |")
print("|---:|---:|---|")
for k, v in sorted(per.items(), key=lambda kv: -kv[1])[: int(top)]:
    print(f"| {v / 1e6:.2f} | {100 * v / total:.1f}% | `{k}` |")
PY
