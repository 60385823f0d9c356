#!/usr/bin/env bash
# Developer build: compiles csrc/ into build/dev and copies the extension into o1search/ so that
# `PYTHONPATH=$PWD python -c "import o1search"` uses the working tree. Serialized with flock so
# several shells can call it at once. Extra arguments go to the CMake configure step, e.g.
#   tools/dev_build.sh -DO1SEARCH_SANITIZE=address,undefined      (with BUILD_DIR=build/asan)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build/dev}
mkdir -p build
exec 9>build/.dev_build.lock
flock 9
PYBIND11_DIR=$(python -c "import pybind11; print(pybind11.get_cmake_dir())")
if [ ! -f "$BUILD_DIR/build.ninja" ] || [ $# -gt 0 ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=${BUILD_TYPE:-Release} \
    -Dpybind11_DIR="$PYBIND11_DIR" -DPython_EXECUTABLE="$(command -v python)" \
    -DO1SEARCH_BUILD_PYTHON=ON "$@" >/dev/null
fi
cmake --build "$BUILD_DIR" -j2
[ -e o1search/kernels ] || ln -s ../kernels o1search/kernels
if [ "${NO_COPY:-0}" != 1 ]; then
  # Copy then rename: overwriting the file in place would change the pages of a _core that a
  # running Python process has mapped (and crash it); a rename leaves that inode alone.
  for so in "$BUILD_DIR"/_core*.so; do
    cp -f "$so" "o1search/.$(basename "$so").tmp"
    mv -f "o1search/.$(basename "$so").tmp" "o1search/$(basename "$so")"
  done
fi
