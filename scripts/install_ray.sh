#!/usr/bin/env bash
# Ray for `embcc build RECIPE.toml --ray` and tests/test_recipe.py::test_ray_fan_out (which skips without it).
# Ray core only (about 240 MB); the dashboard extra (ray[default]) is not needed: embcc starts Ray without it.
set -euo pipefail
PY="${PYTHON:-python}"
"$PY" -m pip install "ray>=2.40"
"$PY" -c "import ray; print('ray', ray.__version__)"
