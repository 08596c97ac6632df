#!/usr/bin/env bash
# Build a stripped release speck for one board (targets/NAME.toml) and print the binary's path
# as the last line on stdout (everything else goes to stderr).
#
#   targets/build.sh rpi5            # aarch64 binary for a Raspberry Pi 5
#   targets/build.sh x86_64          # the development host
#
# Arm boards build with Debian's rustc-web (/usr/bin/rustc, /usr/bin/cargo) and its arm64/armhf
# standard library, linked by the gcc cross linker; when these are missing and we are root on
# Debian, they are installed with apt. Cargo features, CPU and target features come from the
# board file, so changing what a device build contains is an edit there.
# Env: CARGO_TARGET_DIR (default: ./target), SPECK_NO_APT=1 to never run apt-get,
# SPECK_KEEP_SYMBOLS=1 to keep symbols (for scripts/arm_insn_profile.sh), SPECK_SIZE_GATE=1 to
# fail a stripped board build over 4 MB.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
name=${1:-}
known=$(cd "$root/targets" && ls -- *.toml | sed 's/\.toml$//' | tr '\n' ' ')
if [ -z "$name" ] || [ "$name" = -h ] || [ "$name" = --help ]; then
    echo "usage: targets/build.sh NAME   (NAME: $known)" >&2
    exit 2
fi
toml="$root/targets/$name.toml"
if [ ! -f "$toml" ]; then
    echo "build.sh: unknown target '$name' (known: $known)" >&2
    exit 2
fi

# Read the board file (python3's tomllib: Python 3.11+, as in Debian 12).
eval "$(python3 - "$toml" <<'EOF'
import shlex, sys, tomllib
with open(sys.argv[1], "rb") as f:
    b = tomllib.load(f)["build"]
def out(k, v):
    print(f"{k}={shlex.quote(str(v))}")
out("triple", b["triple"])
out("cpu", b["cpu"])
out("target_features", ",".join(b.get("target_features", [])))
out("default_features", "1" if b["default_features"] else "0")
out("cargo_features", ",".join(b.get("cargo_features", [])))
out("linker", b.get("linker") or "")
out("debian_arch", b.get("debian_arch") or "")
EOF
)"

target_dir=${CARGO_TARGET_DIR:-$root/target}
host_triple="$(uname -m)-unknown-linux-gnu"
strip=true
[ "${SPECK_KEEP_SYMBOLS:-0}" = 1 ] && strip=false
# Boards (default features off) build with `profile.device` (Cargo.toml: fat LTO, one codegen
# unit, panic = abort, dependencies for size); the development host with `release`.
profile=release
[ "$default_features" = 1 ] || profile=device
args=(build --profile "$profile" --locked -p speck --bin speck --target "$triple"
      --config "profile.$profile.strip=$strip")
[ "$default_features" = 1 ] || args+=(--no-default-features)
[ -z "$cargo_features" ] || args+=(--features "$cargo_features")
rustflags="\"-C\", \"target-cpu=$cpu\""
[ -z "$target_features" ] || rustflags+=", \"-C\", \"target-feature=$target_features\""
args+=(--config "target.$triple.rustflags=[$rustflags]")

if [ "$triple" = "$host_triple" ]; then
    cargo_bin=cargo
else
    # Cross toolchain: Debian's rustc-web with the board's standard library, gcc cross linker,
    # qemu-user to run the result here.
    missing=()
    [ -x /usr/bin/rustc ] && [ -x /usr/bin/cargo ] || missing+=(rustc-web cargo-web)
    [ -d "/usr/lib/rustlib/$triple/lib" ] || missing+=("libstd-rust-web-dev:$debian_arch")
    command -v "$linker" >/dev/null || missing+=("gcc-${linker%-gcc}" "libc6-dev-$debian_arch-cross")
    command -v qemu-aarch64 >/dev/null || missing+=(qemu-user)
    if [ ${#missing[@]} -gt 0 ]; then
        if [ "${SPECK_NO_APT:-0}" = 1 ] || [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
            echo "build.sh: missing cross toolchain packages: ${missing[*]}" >&2
            echo "  install them (Debian 12): dpkg --add-architecture $debian_arch && apt-get update && apt-get install ${missing[*]}" >&2
            exit 1
        fi
        echo "build.sh: installing ${missing[*]}" >&2
        dpkg --add-architecture "$debian_arch"
        apt-get update >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}" >&2
    fi
    cargo_bin=/usr/bin/cargo
    export RUSTC=/usr/bin/rustc
    args+=(--config "target.$triple.linker=\"$linker\"")
fi

echo "build.sh: $name: $cargo_bin ${args[*]}" >&2
(cd "$root" && CARGO_TARGET_DIR="$target_dir" "$cargo_bin" "${args[@]}") >&2
bin="$target_dir/$triple/$profile/speck"
[ -x "$bin" ] || { echo "build.sh: cargo finished but $bin is missing" >&2; exit 1; }
echo "build.sh: $(du -h "$bin" | cut -f1) $(file -b "$bin" 2>/dev/null | cut -d, -f1-2)" >&2
# Issue #5's footprint goal for a stripped board build: at most 4 MB (it crept to 4.7 MB
# over sessions 24-29 unnoticed; BENCHMARKS.md, session 30). A warning, or with
# SPECK_SIZE_GATE=1 (.ci/run) an error.
bytes=$(stat -c %s "$bin")
if [ "$profile" = device ] && [ "$strip" = true ] && [ "$bytes" -gt 4000000 ]; then
    if [ "${SPECK_SIZE_GATE:-0}" = 1 ]; then
        echo "build.sh: error: $bytes bytes, over the 4 MB (4,000,000 bytes) limit for board builds" >&2
        exit 1
    fi
    echo "build.sh: warning: $bytes bytes, over the 4 MB goal for board builds" >&2
fi
echo "$bin"
