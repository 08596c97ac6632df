#!/usr/bin/env bash
# Executed Arm instructions per inference under qemu-user (RESEARCH.md section 9), next to
# ncnn's counts on the same CPU models. No Arm board can be timed here; instruction counts on
# the same work are the first comparison. Prints a markdown table.
#
#   scripts/arm_insn_count.sh                 # MobileNetV3-Large 224, fp32 and int8, A72, A76
#                                             # and 32-bit armv7 (Cortex-A15 model)
#   scripts/arm_insn_count.sh --mobilenet-v1  # also MobileNetV1 224 int8 on A72 and A76, next to
#                                             # ncnn's int8 counts (its only int8 rows)
#
# Per inference = (count for 3 runs - count for 1 run) / 2, so loading and planning cancel out.
# The rpi4 build (cortex-a72 model, NEON, no dotprod) and the rpi5 build (cortex-a76, dotprod)
# come from targets/build.sh; models are compiled for each board by the host speck.
# Env: CARGO_TARGET_DIR; SPECK_INSN_PLUGIN (the counting plugin's C source, default
# ../shared/tools/qemu_insn_count.c); PYTHON (with numpy and onnx, for --mobilenet-v1's model:
# scripts/make_mobilenet_v1.py, random weights, which instruction counts do not depend on).
set -euo pipefail
mnv1=0
case "${1:-}" in
    --mobilenet-v1) mnv1=1 ;;
    "") ;;
    *) echo "usage: scripts/arm_insn_count.sh [--mobilenet-v1]" >&2; exit 2 ;;
esac
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
plugin_src=${SPECK_INSN_PLUGIN:-$root/../shared/tools/qemu_insn_count.c}
[ -f "$plugin_src" ] || { echo "arm_insn_count.sh: plugin source $plugin_src not found" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
gcc -O2 -shared -fPIC -o "$tmp/libinsncount.so" "$plugin_src"

echo "== host speck (compiles and quantizes the models)" >&2
cargo build --release --locked --bin speck >&2
host="${CARGO_TARGET_DIR:-$root/target}/release/speck"
fp32=models/reference/mnv3l_224.onnx
macs=$("$host" info "$fp32" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["macs"])')
echo "== int8 QDQ model (speck quantize, plain QDQ: every conv int8)" >&2
"$host" quantize "$fp32" --calib examples/data/images --no-tile --sensitivity-db 0 \
    -o "$tmp/mnv3l-int8.onnx" >&2
if [ $mnv1 = 1 ]; then
    echo "== MobileNetV1 224 (scripts/make_mobilenet_v1.py), int8 the same way" >&2
    "${PYTHON:-python3}" scripts/make_mobilenet_v1.py "$tmp/mnv1.onnx" >&2
    mnv1_macs=$("$host" info "$tmp/mnv1.onnx" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["macs"])')
    "$host" quantize "$tmp/mnv1.onnx" --calib examples/data/images --no-tile --sensitivity-db 0 \
        -o "$tmp/mnv1-int8.onnx" >&2
fi

count() { # qemu-cpu binary model runs
    local out qemu=qemu-aarch64 sysroot=/usr/aarch64-linux-gnu
    case "$1" in cortex-a7 | cortex-a15) qemu=qemu-arm sysroot=/usr/arm-linux-gnueabihf ;; esac
    out=$($qemu -L $sysroot -E LD_LIBRARY_PATH=$sysroot/lib \
        -cpu "$1" -plugin "$tmp/libinsncount.so" "$2" bench "$3" --runs "$4" --warmup 0 \
        --threads 1 2>&1 >/dev/null)
    grep -o 'guest instructions: [0-9]*' <<<"$out" | grep -o '[0-9]*$'
}

# ncnn, 1 thread, per inference (RESEARCH.md section 9): fp32 rows; A76 runs fp16 arithmetic.
declare -A ncnn=([cortex-a72]=88.7 [cortex-a76]=45.2 [cortex-a15]=-)
# ncnn's MobileNetV1 int8 (its benchmark's mobilenet_int8; A76 with sdot).
declare -A ncnn_v1=([cortex-a72]=155.3 [cortex-a76]=63.0)
echo "| model | CPU model (board build) | speck M instr / inference | MACs / instr | ncnn M instr | speck / ncnn |"
echo "|---|---|---:|---:|---:|---:|"
# rpi-armv7: 32-bit Raspberry Pi OS (qemu-arm's Cortex-A15 model; no ncnn count to compare).
for pair in rpi4:cortex-a72 rpi5:cortex-a76 rpi-armv7:cortex-a15; do
    board=${pair%%:*} cpu=${pair#*:}
    echo "== targets/build.sh $board" >&2
    bin=$(targets/build.sh "$board" | tail -1)
    rows="fp32 int8"
    [ $mnv1 = 1 ] && [ "$cpu" != cortex-a15 ] && rows="$rows v1-int8"
    for kind in $rows; do
        case $kind in
            fp32) src=$fp32 name="MobileNetV3-L 224 fp32" m=$macs ref=${ncnn[$cpu]} ;;
            int8) src="$tmp/mnv3l-int8.onnx" name="MobileNetV3-L 224 int8" m=$macs ref=${ncnn[$cpu]} ;;
            v1-int8) src="$tmp/mnv1-int8.onnx" name="MobileNetV1 224 int8 (ncnn int8)" m=$mnv1_macs ref=${ncnn_v1[$cpu]} ;;
        esac
        "$host" compile "$src" --target "$board" -o "$tmp/m.speck" >&2
        c1=$(count "$cpu" "$bin" "$tmp/m.speck" 1)
        c3=$(count "$cpu" "$bin" "$tmp/m.speck" 3)
        python3 - "$name" "$cpu" "$board" "$c1" "$c3" "$m" "$ref" <<'PY'
import sys
name, cpu, board, c1, c3, macs, ncnn = sys.argv[1:]
per = (int(c3) - int(c1)) / 2
ratio = f"{per / 1e6 / float(ncnn):.2f}" if ncnn != "-" else "-"
print(f"| {name} | {cpu} ({board}) | {per / 1e6:.1f} | {int(macs) / per:.2f} "
      f"| {ncnn} | {ratio} |")
PY
    done
done
