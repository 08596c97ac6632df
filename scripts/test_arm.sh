#!/usr/bin/env bash
# Arm tests under qemu-user: cross-build speck's library tests for aarch64 and armv7 with
# Debian's rustc (targets/build.sh's toolchain) and run them: aarch64 on CPUs with dot product
# (-cpu max, cortex-a76) and without (cortex-a72), armv7 once. Then a `speck detect`
# smoke test: the aarch64 and armv7 binaries under qemu must find the same boxes as x86.
#
# Env: CARGO_TARGET_DIR (default ./target; the Arm builds live in its <triple>/ folders),
# SPECK_ARM_TESTS=lib (default, the whole library test set) or test-name filters such as
# `kernels:: ops::lda_aqu` (a test runs when it matches any); SPECK_HOST_BIN (an x86 speck for the smoke test's reference, else built). A missing toolchain skips with a reason, but fails when CI is set.
set -euo pipefail
cd "$(dirname "$0")/.."
target_dir=${CARGO_TARGET_DIR:-$PWD/target}
export CARGO_TARGET_DIR="$target_dir"
filter=${SPECK_ARM_TESTS:-lib}
[ "$filter" = lib ] && filter=""

a64=aarch64-unknown-linux-gnu
a32=armv7-unknown-linux-gnueabihf
missing=()
for tool in /usr/bin/cargo /usr/bin/rustc qemu-aarch64 qemu-arm aarch64-linux-gnu-gcc arm-linux-gnueabihf-gcc; do
    command -v "$tool" >/dev/null || missing+=("$tool")
done
for t in $a64 $a32; do
    [ -d "/usr/lib/rustlib/$t/lib" ] || missing+=("Rust std for $t")
done
if [ ${#missing[@]} -gt 0 ]; then
    if [ -n "${CI:-}" ]; then
        echo "test_arm.sh: FAIL: missing ${missing[*]} (see .ci/run's apt block)" >&2
        exit 1
    fi
    echo "test_arm.sh: SKIP: missing ${missing[*]}" >&2
    exit 0
fi

export RUSTC=/usr/bin/rustc
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_LINKER=arm-linux-gnueabihf-gcc
# qemu -L alone would pair the cross loader (libc6-*-cross) with the multiarch libc6:arm64 /
# libc6:armhf when those are installed too (another Debian revision): pthread_create then
# hangs (aarch64) or crashes (armhf). LD_LIBRARY_PATH keeps loader and libc from one package.
qemu_a64() { echo "${board_caches:+$board_caches }qemu-aarch64 -L /usr/aarch64-linux-gnu -E LD_LIBRARY_PATH=/usr/aarch64-linux-gnu/lib -cpu $1"; }
qemu_a32() { echo "${board_caches:+$board_caches }qemu-arm -L /usr/arm-linux-gnueabihf -E LD_LIBRARY_PATH=/usr/arm-linux-gnueabihf/lib"; }
# The device build: no ONNX importer (tract needs Rust 1.91; Debian's cross rustc is 1.85).
cargo_arm=(/usr/bin/cargo test --locked -p speck --no-default-features --lib)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# qemu-user shows guest programs the host's /sys, including this machine's caches (a 480 MiB
# L3 here), which overflows the gemm crate's 32-bit cache arithmetic on armv7 (gemm-common
# 0.19 cache.rs: l3_assoc * l3_bytes in usize) and misleads its blocking on aarch64. The guest
# sees a Raspberry Pi 4's caches instead (4x Cortex-A72: 32 KiB 2-way L1d, 1 MiB 16-way shared
# L2, no L3), bind-mounted over /sys/devices/system/cpu in a private mount namespace.
fake=$tmp/pi4-cpu
for c in 0 1 2 3; do
    for idx in "0 1 Data 32K 2 $c" "1 1 Instruction 48K 3 $c" "2 2 Unified 1024K 16 0-3"; do
        read -r i level type size ways shared <<<"$idx"
        d=$fake/cpu$c/cache/index$i
        mkdir -p "$d"
        echo "$level" >"$d/level"; echo "$type" >"$d/type"; echo "$size" >"$d/size"
        echo "$ways" >"$d/ways_of_associativity"; echo 64 >"$d/coherency_line_size"
        echo "$shared" >"$d/shared_cpu_list"
    done
done
echo 0-3 >"$fake/online"; echo 0-3 >"$fake/possible"; echo 0-3 >"$fake/present"
printf '#!/bin/sh\nexec unshare -m sh -c %s %s "$@"\n' \
    "'mount --bind \"\$0\" /sys/devices/system/cpu && exec \"\$@\"'" "$fake" >"$tmp/pi4-caches"
chmod +x "$tmp/pi4-caches"
if "$tmp/pi4-caches" true 2>/dev/null; then
    board_caches="$tmp/pi4-caches"
else
    echo "test_arm.sh: warning: no mount namespace (not root?); Arm tests see the host's caches" >&2
    board_caches=""
fi

step() { echo "== arm: $*"; }
timed() {
    local t0=$SECONDS
    "$@"
    echo "   ($((SECONDS - t0)) s)" >&2
}

step "build aarch64 library tests"
timed "${cargo_arm[@]}" --target $a64 --no-run
for cpu in max cortex-a76 cortex-a72; do
    step "aarch64 library tests under qemu -cpu $cpu"
    # qemu's max and Cortex-A76 models have fp16 arithmetic, its Cortex-A72 has not: the fp16
    # kernels must be detected (and tested) on the first two and left alone on the third.
    fp16=1
    [ "$cpu" = cortex-a72 ] && fp16=0
    SPECK_EXPECT_FP16=$fp16 CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="$(qemu_a64 $cpu)" \
        timed "${cargo_arm[@]}" --target $a64 -q -- --test-threads 2 $filter
done
step "build armv7 library tests"
timed "${cargo_arm[@]}" --target $a32 --no-run
step "armv7 library tests under qemu-arm"
# qemu-arm's CPU has NEON: the NEON kernels must be detected and tested, not skipped.
SPECK_EXPECT_NEON=1 CARGO_TARGET_ARMV7_UNKNOWN_LINUX_GNUEABIHF_RUNNER="$(qemu_a32)" \
    timed "${cargo_arm[@]}" --target $a32 -q -- --test-threads 2 $filter

# Smoke test: the aarch64 and armv7 binaries under qemu against the x86 build, on a sample
# image.
# SPECK_HOST_BIN: an x86 speck built already (CI passes its own); else build one here.
host_bin="${SPECK_HOST_BIN:-$target_dir/debug/speck}"
if [ -z "${SPECK_HOST_BIN:-}" ]; then
    step "x86 speck (for the reference detections)"
    timed cargo build --locked --bin speck
fi
if ! "$host_bin" compile --help >/dev/null 2>&1; then
    # The Arm binary carries no ONNX importer; it loads models compiled by `speck compile`.
    echo "test_arm.sh: FAIL: this speck has no 'compile' subcommand, so the Arm binary has no model it can load" >&2
    exit 1
fi
image=$(ls examples/data/images/*.jpg | head -1)
"$host_bin" compile models/speck-tiny.onnx --target generic -o "$tmp/m.speck" >/dev/null
"$host_bin" detect "$image" --json --model models/speck-tiny.onnx >"$tmp/x86.json"
for pair in "$a64:$(qemu_a64 cortex-a72)" "$a32:$(qemu_a32)"; do
    triple=${pair%%:*} runner=${pair#*:}
    step "build the $triple binary"
    timed /usr/bin/cargo build --locked -p speck --no-default-features --bin speck --target "$triple"
    bin="$target_dir/$triple/debug/speck"
    step "speck --version and detect under ${runner%% -L*} ($image)"
    $runner "$bin" --version
    timed $runner "$bin" detect "$image" --json --model "$tmp/m.speck" >"$tmp/arm.json"
    python3 scripts/compare_detections.py "$tmp/x86.json" "$tmp/arm.json"
done
