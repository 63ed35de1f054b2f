#!/usr/bin/env bash
# System packages the slow tests use: Chromium (the Argilla web-UI test, driven by Playwright) and
# redis-server (Argilla's queue; without it the server runs on an in-process stand-in). Installed
# from Debian's packages when missing and apt is usable; otherwise the browser test skips and says why.
set -uo pipefail
missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1 && SUDO="sudo -n"
if command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing ${missing[*]} (apt)"
    $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/prefcurate-apt.log 2>&1 \
        || { $SUDO apt-get update -q >/dev/null 2>&1 && $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >/tmp/prefcurate-apt.log 2>&1; } \
        || echo "setup: could not install ${missing[*]} (see /tmp/prefcurate-apt.log); the tests that need them will say so"
else
    echo "setup: no apt-get; install ${missing[*]} yourself for the browser test (it skips, saying why, otherwise)"
fi
exit 0
