#!/usr/bin/env bash
# embcc's GPU checks in one script, for a machine with an NVIDIA GPU and no package registry.
#
#   scripts/gpu_check.sh [ARGS]         set up (below), then run scripts/gpu_check.py ARGS: fp16 parity on every
#                                       family (ONNX Runtime CUDA, TensorRT, torch CUDA) and speed at 1x16, 32x128,
#                                       1x8192; prints a table and what it could not run, writes $OUT/gpu_check.json
#   scripts/gpu_check.sh --dry-run      the same on any machine, CUDA or not: v2 only, tiny, short timings (a check
#                                       of this script and the Python side; CPU rows stand in for CUDA ones)
#   scripts/gpu_check.sh wheelhouse DIR on a machine that reaches PyPI: download the wheels a GPU machine may lack
#                                       (embcc's pure-Python and binary deps, onnxruntime-gpu) for Python 3.12 x86-64
#                                       into DIR/batch-NN folders of at most EMBCC_GPU_PART_MB (48) MiB each; wheels
#                                       larger than that (onnxruntime-gpu, ~255 MB) are split into parts
#   python scripts/gpu_check.py --help  what is measured, the options
#
# Setup, changing nothing of the machine's own environment (its CUDA torch stays as it is):
#   - wheels under EMBCC_GPU_WHEELS (default .gpu-wheels/, any depth): split parts (NAME.whl.part-NN-of-MM) are
#     joined and checked against NAME.whl.sha256; a wheel is installed only when its distribution is missing here
#     (onnxruntime-gpu always: it must shadow the CPU onnxruntime), with pip --no-deps --no-index --target
#     .gpu-site/ (or unzipped there where pip is missing);
#   - embcc itself: pip install --no-deps --no-build-isolation --target .gpu-site/ (where pip and setuptools are
#     here), and the checkout first on PYTHONPATH either way, so the code that runs is this checkout's;
#   - PYTHONPATH=<checkout>:.gpu-site; then an import check that says which module is missing and what to carry.
#
# Carrying the wheels to a machine that allows at most 64 MiB per call: one batch per call into the same path
# (e.g. carry .gpu-wheels/batch-03); what earlier calls carried stays while the machine is warm, and this script
# says which parts are still missing. Without onnxruntime-gpu the CUDA rows fall back to torch CUDA (listed).
#
# A full run (4 families, TensorRT fp16, speed) may take longer than one call allows: split it, e.g.
#   scripts/gpu_check.sh --no-speed            then   scripts/gpu_check.sh --families v2 --no-tensorrt
#   (fixtures, exports and engines stay in .gpu-work/ and are reused while the machine is warm)
#   scripts/gpu_check.sh --trt-precisions fp32 fp16 int8   adds TensorRT fp32 and int8 engines to the parity.
#
# Environment: EMBCC_GPU_PYTHON (python3), EMBCC_GPU_WHEELS, EMBCC_GPU_SITE (.gpu-site), EMBCC_GPU_WORK
# (.gpu-work), EMBCC_GPU_OUT (default $OUT, else gpu-check-out/), EMBCC_GPU_PART_MB (48), EMBCC_ORT_GPU_VERSION (wheelhouse: onnxruntime-gpu version,
# default the newest; match the machine's CUDA major: the script prints torch's CUDA and onnxruntime's).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 2
REPO=$(pwd)
PY=${EMBCC_GPU_PYTHON:-python3}
WHEELS=${EMBCC_GPU_WHEELS:-$REPO/.gpu-wheels}
SITE=${EMBCC_GPU_SITE:-$REPO/.gpu-site}
OUTDIR=${EMBCC_GPU_OUT:-${OUT:-$REPO/gpu-check-out}}
PART_MB=${EMBCC_GPU_PART_MB:-48}

say() { echo "gpu_check: $*"; }

# Packages embcc imports on the paths this check runs (versions: embcc's own tested environment), without torch,
# numpy or onnxruntime, which the GPU machine brings.
PACKAGES=(
  "transformers==5.24.0" "tokenizers==0.23.3" "safetensors==0.8.0" "huggingface_hub==2.4.0" "hf-xet==1.8.0"
  "peft==0.21.2" "accelerate==1.15.0" "psutil==7.2.2" "sentencepiece==0.2.3" "protobuf==7.36.2"
  "onnx==1.23.2" "onnxscript==0.7.2" "onnx-ir==1.1.0" "ml_dtypes==0.7.0" "sympy==1.14.0" "mpmath==1.3.0"
  "tqdm==4.70.1" "regex==2026.11.19" "PyYAML==6.0.4" "packaging==26.4" "filelock==4.3.1" "fsspec==2026.9.0"
  "typing_extensions==4.16.0" "typer==0.29.2" "click==8.5.1" "shellingham==1.5.4" "rich==15.0.0"
  "markdown-it-py==4.3.0" "mdurl==0.1.2" "Pygments==2.21.0" "annotated-doc==0.0.7" "httpx2==2.16.2"
  "httpcore2==2.16.2" "h11==0.16.0" "anyio==4.16.0" "idna==3.20" "certifi==2026.10.19.post1" "gguf==0.19.0"
)
# import name : distribution, for the check after setup (required first, then optional)
REQUIRED="torch:torch numpy:numpy onnxruntime:onnxruntime onnx:onnx onnxscript:onnxscript onnx_ir:onnx-ir
tokenizers:tokenizers safetensors:safetensors transformers:transformers peft:peft google.protobuf:protobuf
ml_dtypes:ml_dtypes tqdm:tqdm"
OPTIONAL="tensorrt:tensorrt cuda.bindings:cuda-python sentencepiece:sentencepiece"

# ---- wheelhouse (a machine with registry access) ----------------------------------------------------------------

make_batches() {  # SRC DST: pack SRC/*.whl into DST/batch-NN (<= PART_MB MiB each), splitting larger wheels
  local src=$1 dst=$2 limit=$((PART_MB * 1024 * 1024)) n=0 used=0 size name parts i total
  mkdir -p "$dst"
  next_batch() { n=$((n + 1)); used=0; mkdir -p "$dst/$(printf 'batch-%02d' "$n")"; }
  next_batch
  for whl in "$src"/*.whl; do
    [ -e "$whl" ] || continue
    size=$(stat -c %s "$whl"); name=$(basename "$whl")
    if [ "$size" -gt "$limit" ]; then
      total=$(( (size + limit - 1) / limit ))
      tmp=$(mktemp -d); split -b "$limit" -d -a 2 "$whl" "$tmp/p"
      i=0
      for part in "$tmp"/p*; do
        i=$((i + 1)); next_batch
        mv "$part" "$dst/$(printf 'batch-%02d' "$n")/$name.part-$(printf %02d "$i")-of-$(printf %02d "$total")"
        [ "$i" -eq 1 ] && sha256sum "$whl" | cut -d' ' -f1 > "$dst/$(printf 'batch-%02d' "$n")/$name.sha256"
      done
      rm -rf "$tmp"; next_batch
      continue
    fi
    if [ $((used + size)) -gt "$limit" ]; then next_batch; fi
    cp "$whl" "$dst/$(printf 'batch-%02d' "$n")/"; used=$((used + size))
  done
  find "$dst" -maxdepth 1 -name 'batch-*' -type d -empty -delete
  i=0  # renumber 01.. without gaps
  for b in $(find "$dst" -maxdepth 1 -name 'batch-*' -type d | sort); do
    i=$((i + 1)); [ "$b" = "$dst/$(printf 'batch-%02d' "$i")" ] || mv "$b" "$dst/$(printf 'batch-%02d' "$i")"
  done
  say "batches in $dst:"; du -sh "$dst"/batch-* 2>/dev/null | sed 's/^/  /'
}

wheelhouse() {
  local dir=${1:?usage: scripts/gpu_check.sh wheelhouse DIR}
  local all=$dir/all
  mkdir -p "$all"
  local target=(--only-binary=:all: --no-deps --python-version 3.12 --implementation cp --abi cp312 --abi abi3
                --abi none --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64
                --platform manylinux2014_x86_64 --platform any -d "$all")
  "$PY" -m pip download --quiet "${target[@]}" "${PACKAGES[@]}" || { say "pip download failed"; return 1; }
  "$PY" -m pip download --quiet "${target[@]}" "onnxruntime-gpu${EMBCC_ORT_GPU_VERSION:+==$EMBCC_ORT_GPU_VERSION}" \
    || say "onnxruntime-gpu: download failed (the CUDA rows will use torch CUDA)"
  make_batches "$all" "$dir"
  say "carry each $dir/batch-NN into $WHEELS/ on the GPU machine (one per call if calls are capped at 64 MiB)"
}

# ---- setup on the GPU machine -------------------------------------------------------------------------------------

reassemble() {  # NAME.whl.part-NN-of-MM anywhere under WHEELS -> WHEELS/NAME.whl
  local first name total have out expect got
  while IFS= read -r first; do
    name=$(basename "$first"); name=${name%.part-*}
    total=${first##*-of-}
    out=$WHEELS/$name
    [ -f "$out" ] && continue
    mapfile -t parts < <(find "$WHEELS" -name "$name.part-*-of-$total" -printf '%f\t%p\n' | sort | cut -f2)
    have=${#parts[@]}
    if [ "$have" -ne "$((10#$total))" ]; then
      say "$name: $have of $((10#$total)) parts here; carry the missing batches (found: $(printf '%s ' "${parts[@]##*/}"))"
      continue
    fi
    cat "${parts[@]}" > "$out.tmp"
    expect=$(find "$WHEELS" -name "$name.sha256" -exec cat {} \; -quit)
    got=$(sha256sum "$out.tmp" | cut -d' ' -f1)
    if [ -n "$expect" ] && [ "$expect" != "$got" ]; then
      say "$name: joined parts do not match $name.sha256; carry the parts again"; rm -f "$out.tmp"; continue
    fi
    mv "$out.tmp" "$out"; say "joined $name from $have parts${expect:+ (sha256 checked)}"
  done < <(find "$WHEELS" -name '*.whl.part-01-of-*' 2>/dev/null | sort)
}

installed() {  # DIST: is this distribution importable here (machine or .gpu-site)?
  "$PY" - "$1" <<'PY' 2>/dev/null
import sys
from importlib.metadata import PackageNotFoundError, version
try:
    version(sys.argv[1])
except PackageNotFoundError:
    sys.exit(1)
PY
}

install_wheel() {  # WHEEL -> .gpu-site (pip --target, else unzip)
  if "$PY" -m pip --version >/dev/null 2>&1; then
    "$PY" -m pip install --quiet --disable-pip-version-check --no-deps --no-index --upgrade --target "$SITE" "$1" \
      && return 0
  fi
  "$PY" -c "import sys, zipfile; zipfile.ZipFile(sys.argv[1]).extractall(sys.argv[2])" "$1" "$SITE"
}

setup() {
  mkdir -p "$SITE"
  # the checkout first (the code that runs is always this checkout's), then the carried packages; both come before
  # the machine's site-packages, so onnxruntime-gpu in .gpu-site shadows a CPU onnxruntime there
  export PYTHONPATH="$REPO:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  command -v "$PY" >/dev/null || { say "no $PY here; set EMBCC_GPU_PYTHON"; exit 2; }
  say "python: $("$PY" -c 'import sys; print(sys.executable, sys.version.split()[0])')"
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total \
    --format=csv,noheader 2>/dev/null | sed 's/^/gpu_check: gpu: /'
  if [ -d "$WHEELS" ]; then
    reassemble
    local whl dist
    while IFS= read -r whl; do
      dist=$(basename "$whl" | cut -d- -f1)
      if [ "$dist" = onnxruntime_gpu ] || ! installed "${dist//_/-}"; then
        if install_wheel "$whl"; then say "installed $(basename "$whl") into .gpu-site"; else say "could not install $whl"; fi
      fi
    done < <(find "$WHEELS" -name '*.whl' | sort)
    if [ -d "$SITE/onnxruntime" ] && "$PY" -c "import onnxruntime" 2>/dev/null; then
      say "onnxruntime from .gpu-site (onnxruntime-gpu) shadows the machine's CPU package"
    fi
  else
    say "no wheels at $WHEELS (nothing to install; see the header of this script for carrying them)"
  fi
  if "$PY" -m pip --version >/dev/null 2>&1 && "$PY" -m pip install --quiet --disable-pip-version-check --no-deps \
       --no-build-isolation --no-index --target "$SITE" "$REPO" >/dev/null 2>&1; then
    say "embcc installed into .gpu-site with --no-deps (the machine's torch is untouched; .gpu-site/bin/embcc);" \
        "the checkout, first on PYTHONPATH, is what runs"
  else
    say "embcc runs from the checkout on PYTHONPATH (pip could not build it here; nothing else changes)"
  fi
  local missing=0 pair mod dist ver
  for pair in $REQUIRED; do
    mod=${pair%%:*}; dist=${pair##*:}
    if ver=$("$PY" -c "import importlib, sys; m = importlib.import_module(sys.argv[1]); print(getattr(m, '__version__', 'ok'))" "$mod" 2>/dev/null); then
      say "  $mod $ver"
    else
      say "  $mod MISSING: carry the $dist wheel (scripts/gpu_check.sh wheelhouse)"; missing=1
    fi
  done
  for pair in $OPTIONAL; do
    mod=${pair%%:*}
    ver=$("$PY" -c "import importlib, sys; m = importlib.import_module(sys.argv[1]); print(getattr(m, '__version__', 'ok'))" "$mod" 2>/dev/null) \
      && say "  $mod $ver" || say "  $mod not here (optional)"
  done
  if [ "$missing" -ne 0 ]; then
    say "modules embcc needs are missing (above); running what can run anyway"
  fi
}

case "${1:-}" in
  wheelhouse) shift; wheelhouse "$@"; exit $? ;;
  _batches) shift; make_batches "$@"; exit $? ;;  # for tests: SRC DST
  _join) shift; WHEELS=$1; reassemble; exit $? ;;  # for tests: DIR
  -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d' | sed 's/^# \{0,1\}//'; exit 0 ;;
esac
setup
mkdir -p "$OUTDIR"
say "results go to $OUTDIR"
"$PY" "$REPO/scripts/gpu_check.py" --out "$OUTDIR" --work "${EMBCC_GPU_WORK:-$REPO/.gpu-work}" "$@"
