#!/usr/bin/env bash
# Installs the system tools ReelForge shells out to (ffmpeg/ffprobe, espeak-ng, a font for captions), and
# Debian's chromium, which the dashboard tests drive through Playwright (no browser is downloaded), and
# Debian's prometheus for its promtool, which checks the /metrics output in tests.
# Uses apt when something is missing and we are root; otherwise says exactly what to install.
set -euo pipefail
missing=()
command -v ffmpeg >/dev/null 2>&1 || missing+=(ffmpeg)
command -v ffprobe >/dev/null 2>&1 || missing+=(ffmpeg)
command -v espeak-ng >/dev/null 2>&1 || missing+=(espeak-ng)
[ -e /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || missing+=(fonts-dejavu-core)
[ -x /usr/bin/chromium ] || missing+=(chromium)  # tests/e2e/test_dashboard.py
command -v promtool >/dev/null 2>&1 || missing+=(prometheus)  # tests: `promtool check metrics` (tests/metrics_check.py)
if [ ${#missing[@]} -eq 0 ]; then exit 0; fi
pkgs=$(printf '%s\n' "${missing[@]}" | sort -u | tr '\n' ' ')
if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
  echo "Installing system packages: $pkgs"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  # shellcheck disable=SC2086
  apt-get install -y -qq --no-install-recommends $pkgs >/dev/null
else
  echo "ReelForge needs these system packages: $pkgs" >&2
  echo "Install them with: sudo apt-get install -y $pkgs" >&2
  exit 1
fi
