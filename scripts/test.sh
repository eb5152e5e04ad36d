#!/usr/bin/env bash
# Install everything the tests need (Debian packages, the package itself) and run them.
# Works on a fresh machine (root, Debian, Python 3.11); .ci/run calls this script.
set -euo pipefail
cd "$(dirname "$0")/.."

if command -v apt-get >/dev/null 2>&1; then
    export DEBIAN_FRONTEND=noninteractive
    # real PDFs with Latin and CJK text; nginx in front of the server (tests/test_nginx.py);
    # Chromium and CJK fonts for the web page (tests/test_web.py, driven by Playwright);
    # Redis for replicas that share their live runs (tests/test_replicas.py)
    packages=(fonts-dejavu-core fonts-droid-fallback nginx chromium fonts-noto-cjk redis-server)
    missing=()
    for package in "${packages[@]}"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        apt-get update -qq
        apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
fi

python3 -m pip install --quiet --disable-pip-version-check -e ".[test]"
python3 -m ruff check src tests bench
python3 -m ruff format --check src tests bench

status=0
python3 -m pytest "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "pytest collected no tests: failing" >&2
    exit 1
fi
exit "$status"
