#!/usr/bin/env bash
# Debian's chromium, for the test that opens `orch report`'s page in a real headless browser.
# No-op when it is installed; needs root (apt-get) otherwise.
set -euo pipefail
command -v chromium >/dev/null && exit 0
[[ $(id -u) == 0 ]] || { echo "install-test-browser: chromium is missing and installing it needs root" >&2; exit 1; }
echo "install-test-browser: installing chromium (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq chromium >/dev/null
command -v chromium >/dev/null
