#!/usr/bin/env bash
# Build, once, the separate environments that client tests need where a client's pins conflict with embcc's.
#
#   scripts/client_envs.sh                 build st-onnx if it is missing
#   scripts/client_envs.sh --rebuild       build it again from scratch
#   scripts/client_envs.sh llama-server    also build llama.cpp's own llama-server (opt-in, ~5-10 min on 2 cores)
#
# st-onnx: sentence-transformers' ONNX backend (SentenceTransformer(dir, backend="onnx"), through optimum-onnx's
# ORTModelForFeatureExtraction). Every optimum-onnx release pins transformers < 4.58 while embcc needs
# transformers >= 5, and sentence-transformers 6.x needs transformers >= 5, so `sentence-transformers[onnx]`
# resolves only up to 5.4: it cannot live in embcc's .venv. torch is pinned to embcc's version (the CPU build on
# these machines). The environment lives in EMBCC_CLIENT_ENVS (default ~/.cache/embcc/envs); tests/test_clients.py
# runs a small script in it through subprocess and skips, saying so, when it is absent. CI does not build it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=${EMBCC_CLIENT_ENVS:-${XDG_CACHE_HOME:-$HOME/.cache}/embcc/envs}
rebuild=
want_server=
for arg in "$@"; do
  case "$arg" in
    --rebuild) rebuild=--rebuild ;;
    llama-server) want_server=1 ;;
    *) echo "scripts/client_envs.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
python=${PYTHON:-python3}

build() {  # name, then pip requirements
  local name=$1; shift
  local env="$root/$name"
  if [ -x "$env/bin/python" ] && [ -f "$env/.complete" ] && [ "$rebuild" != "--rebuild" ]; then
    echo "scripts/client_envs.sh: $env exists (--rebuild to build it again)"
    return
  fi
  # a venv names its interpreter by absolute path, so it is built in place; .complete (pip freeze) is written
  # last: a build cut short has none and is redone from scratch next time
  rm -rf "$env"
  mkdir -p "$root"
  "$python" -m venv "$env"
  "$env/bin/python" -m pip install --quiet --disable-pip-version-check "$@"
  "$env/bin/python" -m pip freeze > "$env/.complete"
  echo "scripts/client_envs.sh: built $env:"
  grep -i -E '^(sentence-transformers|optimum|optimum-onnx|transformers|onnxruntime|torch|tokenizers)==' "$env/.complete" | sed 's/^/  /'
}

# llama-server: llama.cpp's HTTP server (the one with POST /lora-adapters), which no pip package ships. Built
# from the source distribution of the llama-cpp-python version embcc pins (its vendored llama.cpp), portably
# and with AMX off as scripts/install builds the library (README: llama.cpp build). Tests find it at
# $root/llama-server/bin/llama-server (or EMBCC_LLAMA_SERVER) and skip without it.
build_llama_server() {
  local env="$root/llama-server"
  if [ -x "$env/bin/llama-server" ] && [ "$rebuild" != "--rebuild" ]; then
    echo "scripts/client_envs.sh: $env/bin/llama-server exists (--rebuild to build it again)"
    return
  fi
  local version
  version=$(sed -n 's/.*"llama-cpp-python==\([0-9][0-9.]*\)".*/\1/p' pyproject.toml | head -1)
  local work
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  "$python" -m pip download --quiet --disable-pip-version-check --no-deps --no-binary :all: \
    "llama-cpp-python==$version" -d "$work"
  tar -xzf "$work"/llama_cpp_python-"$version".tar.gz -C "$work"
  local src="$work/llama_cpp_python-$version/vendor/llama.cpp"
  cmake -S "$src" -B "$work/build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON \
    -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF -DGGML_NATIVE=OFF -DGGML_AVX2=ON \
    -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF >/dev/null
  cmake --build "$work/build" --target llama-server -j "$(nproc)" >/dev/null
  mkdir -p "$env/bin"
  cp "$work/build/bin/llama-server" "$env/bin/llama-server.tmp" && mv "$env/bin/llama-server.tmp" "$env/bin/llama-server"
  rm -rf "$work" && trap - EXIT
  echo "scripts/client_envs.sh: built $env/bin/llama-server (llama.cpp of llama-cpp-python $version)"
}

build st-onnx "torch==2.13.0" "sentence-transformers[onnx]>=5.0,<=5.4.1"
[ -z "$want_server" ] || build_llama_server
