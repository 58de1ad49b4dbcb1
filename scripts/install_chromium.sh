#!/usr/bin/env bash
# Debian's Chromium for tests/test_report.py::test_parity_html_renders_in_headless_chromium, which screenshots
# parity.html headless and is skipped without a chromium binary. Needs root (or sudo) and the Debian registry.
# Measured on Debian 12 (bookworm), package lists already fetched: 39 s wall for apt-get install -y chromium
# (115 new packages, 113 MB downloaded, 479 MB on disk). Recommends are kept: they bring the fonts the page needs.
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    chromium --version
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium
chromium --version
