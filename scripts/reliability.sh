#!/usr/bin/env bash
# The campaign beyond what CI runs: the heavy tests (fault injection with EMBCC_FAULT_KILLS signals per artifact
# kind, every signal; a full-size v5-nano verified at 32K tokens, scripts/verify_long.py), a longer property-based
# text fuzz (EMBCC_FUZZ_EXAMPLES batches per artifact kind), and the export memory ceiling on a full-size v3
# fixture (scripts/measure_export_memory.py, limit 1.5x the fp32 weight bytes). Takes tens of minutes on 2 cores;
# run from the repository root after scripts/install test.
set -euo pipefail
cd "$(dirname "$0")/.."
export EMBCC_FAULT_KILLS=${EMBCC_FAULT_KILLS:-6} EMBCC_FUZZ_EXAMPLES=${EMBCC_FUZZ_EXAMPLES:-200}
.venv/bin/python -m pytest -q -p no:cacheprovider -m heavy tests/
.venv/bin/python -m pytest -q -p no:cacheprovider -s tests/test_fuzz_texts.py
work=${EMBCC_RELIABILITY_WORK:-$(mktemp -d)}
.venv/bin/python scripts/measure_export_memory.py --fixture jina-v3 --size full --work "$work" --limit 1.5
