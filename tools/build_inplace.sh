#!/usr/bin/env bash
# Development build: compile the Rust extension (release) and drop it into pylog/ of this checkout,
# so `PYTHONPATH=$PWD pytest` uses this tree without installing anything. CI uses `pip install .`.
# Honours CARGO_TARGET_DIR (one per worktree keeps parallel builds from blocking each other).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --manifest-path native/Cargo.toml --features pyo3/extension-module "$@"
target=${CARGO_TARGET_DIR:-native/target}
suffix=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("EXT_SUFFIX"))')
cp "$target/release/libpylog_native.so" "pylog/_native${suffix}"
echo "built pylog/_native${suffix}"
