#!/usr/bin/env bash
# Issue 16: cd22scan installs and runs without a Rust toolchain.
# usage: bash scripts/check_wheel.sh WHEEL
# Installs WHEEL (the abi3 wheel scripts/test.sh builds with `pip wheel --no-deps .`) into a
# fresh virtual environment whose PATH holds no cargo/rustc (checked), then runs the built-in
# demo from that environment and checks its cohort report. pip fetches the runtime
# dependencies (pysam, polars, numpy, biopython, tqdm) as wheels; nothing is compiled.
set -euo pipefail
wheel=$(realpath "$1")
case "$(basename "$wheel")" in
    *-abi3-*.whl) ;;
    *) echo "check_wheel: $wheel is not an abi3 wheel (one wheel for every CPython >= 3.10)" >&2; exit 1 ;;
esac
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
python -m venv "$work/venv"
# PATH without any folder that holds cargo, rustc or maturin: the wheel must need none of them.
clean_path=""
IFS=: read -ra parts <<< "$PATH"
for dir in "${parts[@]}"; do
    if [ -x "$dir/cargo" ] || [ -x "$dir/rustc" ] || [ -x "$dir/maturin" ]; then continue; fi
    clean_path="${clean_path:+$clean_path:}$dir"
done
export PATH="$work/venv/bin:$clean_path"
unset VIRTUAL_ENV CARGO_HOME RUSTUP_HOME
for tool in cargo rustc maturin; do
    if command -v "$tool" >/dev/null 2>&1; then
        echo "check_wheel: $tool is still on PATH ($(command -v "$tool"))" >&2; exit 1
    fi
done
echo "== check_wheel: installing $(basename "$wheel") into a fresh venv without cargo/rustc"
# --only-binary: a dependency that would need compiling fails here instead of passing silently
python -m pip install -q --disable-pip-version-check --only-binary :all: "$wheel"
cd "$work"
core=$(python -c 'import cd22scan._core as c; print(c.__file__)')
case "$core" in
    "$work"/venv/*abi3.so) ;;
    *) echo "check_wheel: cd22scan._core came from $core, not the wheel's abi3 module" >&2; exit 1 ;;
esac
cd22scan --version
cd22scan demo --out "$work/demo" >"$work/demo.log" 2>&1 || { cat "$work/demo.log"; exit 1; }
report="$work/demo/cohort/report.html"
if [ ! -s "$report" ] || ! grep -q "cd22scan" "$report"; then
    echo "check_wheel: the demo wrote no cohort report at $report" >&2; cat "$work/demo.log"; exit 1
fi
echo "== check_wheel: ok (core $(basename "$core"); demo report $(wc -c < "$report") bytes)"
