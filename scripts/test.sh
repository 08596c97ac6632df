#!/usr/bin/env bash
# Set up and run speck's whole test suite: Rust unit and integration tests, then the
# ONNX Runtime parity and bad-input suites (Python, in a private virtual environment).
set -euo pipefail
cd "$(dirname "$0")/.."

target="${CARGO_TARGET_DIR:-$PWD/target}"
venv="${SPECK_TEST_VENV:-$target/test-venv}"

if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
"$venv/bin/python" -m pip install -q --disable-pip-version-check -r tests/parity/requirements.txt

cargo build --locked --bins
cargo test --locked --all-targets
SPECK_BIN="$target/debug/speck" "$venv/bin/python" -m pytest tests/parity -q -p no:cacheprovider
