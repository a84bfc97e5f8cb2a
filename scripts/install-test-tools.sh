#!/usr/bin/env bash
# Debian's python3-seccomp, for the tests that emulate a file system whose lock calls fail (tests/tools/noflock.py),
# and bindfs, for the tests that emulate two login nodes with their own FUSE mounts (tests/test_two_login_nodes.py).
# No-op when it is installed; needs root (apt-get) otherwise.
set -euo pipefail
/usr/bin/python3 -c "import seccomp" 2>/dev/null && command -v bindfs >/dev/null && exit 0
[[ $(id -u) == 0 ]] || { echo "install-test-tools: python3-seccomp or bindfs is missing; installing needs root" >&2; exit 1; }
echo "install-test-tools: installing python3-seccomp and bindfs (apt-get)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq >/dev/null
apt-get install -y -qq python3-seccomp bindfs >/dev/null
/usr/bin/python3 -c "import seccomp" && command -v bindfs >/dev/null
