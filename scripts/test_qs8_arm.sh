#!/usr/bin/env bash
# Cross-builds tools/qemu-qs8-gemm for aarch64 with Debian's rustc (RESEARCH.md section 9) and
# runs every qs8 GEMM kernel against the scalar reference under qemu-user, once per CPU model:
# `max` and `cortex-a76` have dotprod (neondot and neon run), `cortex-a72` has not (neondot must
# report SKIPPED, neon must pass). Needs qemu-user, gcc-aarch64-linux-gnu, libc6-dev-arm64-cross
# and the arm64 Rust std (libstd-rust-dev:arm64).
set -euo pipefail
cd "$(dirname "$0")/../tools/qemu-qs8-gemm"
target=aarch64-unknown-linux-gnu
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-target}"
RUSTC=/usr/bin/rustc /usr/bin/cargo build --release --locked --target "$target" \
  --config "target.$target.linker=\"aarch64-linux-gnu-gcc\""
bin="$CARGO_TARGET_DIR/$target/release/qemu-qs8-gemm"
for cpu in max cortex-a76 cortex-a72; do
  echo "== qemu-aarch64 -cpu $cpu"
  out=$(qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu "$cpu" "$bin")
  echo "$out"
  grep -q "^PASSED gemm_qs8_4x16c4_neon:" <<<"$out"
  if [ "$cpu" = cortex-a72 ]; then
    grep -q "^SKIPPED gemm_qs8_4x16c4_neondot:" <<<"$out"
  else
    grep -q "^PASSED gemm_qs8_4x16c4_neondot:" <<<"$out"
  fi
done
echo "qs8 GEMM aarch64 kernels: all pass"
