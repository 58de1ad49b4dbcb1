#!/usr/bin/env bash
# Debian's Chromium for tests/test_report.py::test_parity_html_renders_in_headless_chromium, which screenshots
# parity.html headless and is skipped without a chromium binary. Needs root (or sudo) and the Debian registry.
# Measured on Debian 12 (bookworm), packages already listed: about 40 s (apt-get install -y chromium, ~100 deps).
set -euo pipefail
if command -v chromium >/dev/null 2>&1; then
    chromium --version
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends chromium
chromium --version
