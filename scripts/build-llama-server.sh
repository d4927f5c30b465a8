#!/usr/bin/env bash
# Build llama.cpp's `llama-server` once, from the llama.cpp tree vendored in the pinned llama-cpp-python sdist
# (the same C++ our llama.cpp backend runs), into the cache. Used by `make llama-server`; the benches read
# $CACHE/bin/llama-server and skip the anchor with one line when it is absent. Never downloads a binary.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${SPECDECODE_CACHE:-$HOME/.cache/specdecode}/llama-server"
PY="${PY:-python3}"
if [ -x "$CACHE/bin/llama-server" ]; then echo "llama-server already built: $CACHE/bin/llama-server"; exit 0; fi
WORK="$CACHE/src"
rm -rf "$WORK" && mkdir -p "$WORK" "$CACHE/bin"
echo "fetching the llama-cpp-python $VERSION sdist from the package registry ..."
"$PY" -m pip download --quiet "llama-cpp-python==$VERSION" --no-deps --no-binary :all: -d "$WORK"
tar -xzf "$WORK"/llama_cpp_python-"$VERSION".tar.gz -C "$WORK"
SRC="$WORK/llama_cpp_python-$VERSION/vendor/llama.cpp"
echo "configuring $SRC (Release, native CPU, no curl) ..."
cmake -S "$SRC" -B "$WORK/build" -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_SERVER=ON \
  -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DBUILD_SHARED_LIBS=OFF > "$WORK/configure.log" 2>&1
echo "building llama-server (CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}; several minutes) ..."
CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-2}" cmake --build "$WORK/build" --target llama-server \
  > "$WORK/build.log" 2>&1 || { tail -20 "$WORK/build.log"; exit 1; }
cp "$WORK/build/bin/llama-server" "$CACHE/bin/llama-server.tmp" && mv "$CACHE/bin/llama-server.tmp" "$CACHE/bin/llama-server"
rm -rf "$WORK"
echo "built $CACHE/bin/llama-server"
