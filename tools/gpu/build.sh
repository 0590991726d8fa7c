#!/usr/bin/env bash
# Builds lcb with CUDA on the GPU machine (no network) into build-gpu. Sourced by the other
# scripts in tools/gpu/; needs OUT_DIR (for build.log) and DEB_DIR (the carried .deb files with
# the SQLite headers, unpacked into a private prefix, never into /). LCB_GPU_TARGETS (optional)
# names the targets to build, e.g. "lcb lcb_bench"; default: everything.
PREFIX=/tmp/lcb-prefix
BUILD=build-gpu
mkdir -p "$PREFIX"
for f in "$DEB_DIR"/*.deb; do [ -e "$f" ] && dpkg -x "$f" "$PREFIX"; done
SQLITE_LIB=$(ldconfig -p | awk '/libsqlite3\.so\.0 .*x86-64/ {print $NF; exit}')
SQLITE_INC=$PREFIX/usr/include
[ -f "$SQLITE_INC/sqlite3.h" ] || { echo "sqlite3.h missing: bring libsqlite3-dev's .deb in $DEB_DIR"; exit 1; }
t0=$(date +%s)
TORCH_PREFIX=$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null)
if cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DLCB_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 \
     -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" -DSQLite3_INCLUDE_DIR="$SQLITE_INC" -DSQLite3_LIBRARY="$SQLITE_LIB" \
     >"$OUT_DIR/build.log" 2>&1 && cmake --build "$BUILD" -j"$(nproc)" ${LCB_GPU_TARGETS:+--target $LCB_GPU_TARGETS} >>"$OUT_DIR/build.log" 2>&1; then
  echo "build: ok in $(( $(date +%s) - t0 )) s"
else
  tail -n 40 "$OUT_DIR/build.log"; echo "build failed"; exit 1
fi
# ptxas reports it as "info", yet a kernel whose wgmma it serialises (C75xx, "Potential Performance
# Loss") runs 7-10% slower or worse: name every such kernel of what this build compiled.
LCB_PTXAS_SERIALISED=$(grep -h "Potential Performance Loss" "$OUT_DIR/build.log" |
  sed -E "s/.*\((C75[0-9]+)\).*function '([^']+)'.*/\1 \2/" | sort -u)
if [ -n "$LCB_PTXAS_SERIALISED" ]; then
  echo "ptxas serialised the wgmma of $(echo "$LCB_PTXAS_SERIALISED" | wc -l) kernel(s):"
  echo "$LCB_PTXAS_SERIALISED" | { command -v c++filt >/dev/null && c++filt || cat; } | cut -c1-200
else
  echo "ptxas: no wgmma serialised"
fi
