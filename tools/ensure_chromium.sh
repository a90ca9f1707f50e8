#!/usr/bin/env bash
# Make Debian's Chromium available for the browser tests (Playwright's own download does not work offline).
# Installs it with apt-get when missing and this user can (root, or sudo without a password).
# In CI (CI=true) a browser that cannot be installed fails the run; locally the tests then skip and say why.
set -uo pipefail
CHROMIUM=/usr/bin/chromium
[ -x "$CHROMIUM" ] && exit 0
if command -v apt-get >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif sudo -n true 2>/dev/null; then SUDO="sudo -n"; else SUDO="none"; fi
  if [ "$SUDO" != none ]; then
    echo "Installing Chromium for the browser tests (apt-get install chromium)…"
    $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
    [ -x "$CHROMIUM" ] && exit 0
  fi
fi
if [ "${CI:-}" = true ]; then
  echo "error: $CHROMIUM is missing and could not be installed; the browser tests are required in CI." >&2
  exit 1
fi
echo "note: $CHROMIUM is missing and cannot be installed here (needs apt-get and root or sudo); browser tests will skip." >&2
exit 0
