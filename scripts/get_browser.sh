#!/usr/bin/env bash
# Fetch a headless Chromium for the demo page's render test (tests/test_demo_browser.py) into .cache/browser/.
# Best effort and idempotent: no root needed (apt-get download + dpkg -x, no install); if a browser is already
# on PATH or in .cache/browser, or apt-get is unavailable, or the download fails, it says so and exits 0 (the test
# then skips with the reason). Debian/Ubuntu packages: chromium-headless-shell and the libraries it needs that a
# slim image lacks (about 30 MB of .debs).
#   bash scripts/get_browser.sh            # into .cache/browser
#   MEDGEN_BROWSER_DIR=/elsewhere bash scripts/get_browser.sh
set -u
cd "$(dirname "$0")/.."
DEST="${MEDGEN_BROWSER_DIR:-.cache/browser}"
SHELL_BIN="$DEST/usr/lib/chromium/chromium-headless-shell"
PACKAGES=(chromium-headless-shell chromium-common libopenh264-7 libdouble-conversion3 libopus0 libharfbuzz-subset0
  libxnvctrl0 libpulse0 libflac12 libminizip1 libogg0 libsndfile1 libasyncns0 libvorbis0a libvorbisenc2
  libmpg123-0 libmp3lame0)

if [ -x "$SHELL_BIN" ]; then
  echo "get_browser: $SHELL_BIN is already there"
  exit 0
fi
for name in chromium-headless-shell chromium chromium-browser google-chrome google-chrome-stable headless_shell; do
  if command -v "$name" >/dev/null 2>&1; then
    echo "get_browser: $(command -v "$name") is on PATH; nothing to fetch"
    exit 0
  fi
done
if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg >/dev/null 2>&1; then
  echo "get_browser: apt-get/dpkg not available; install Chromium or Chrome yourself to run the demo render test"
  exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
if ! (cd "$work" && apt-get download "${PACKAGES[@]}" >"$work/apt.log" 2>&1); then
  echo "get_browser: apt-get download failed (offline, or packages unknown here; see below); the render test will skip"
  tail -n 3 "$work/apt.log"
  exit 0
fi
mkdir -p "$DEST.partial"
for deb in "$work"/*.deb; do
  dpkg -x "$deb" "$DEST.partial" || { echo "get_browser: could not unpack $deb"; rm -rf "$DEST.partial"; exit 0; }
done
rm -rf "$DEST"
mv "$DEST.partial" "$DEST"
echo "get_browser: headless Chromium in $DEST ($(du -sh "$DEST" | cut -f1))"
