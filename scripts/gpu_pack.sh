#!/usr/bin/env bash
# Builds the CUDA configuration here and packs what a GPU machine needs to run its tests and
# benchmark into .gpu/ (git-ignored): the binaries and the non-system shared libraries they link
# (both compressed), and a small test model. scripts/gpu_check.sh runs them there.
#   ./scripts/gpu_pack.sh [build-dir]      (default build/cuda)
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build/cuda}"
cmake -S . -B "$BUILD" -G Ninja -DXQ_WITH_CUDA=ON -DCMAKE_BUILD_TYPE=Release >/dev/null
BINS=(tests/engine_cuda_ops_test tests/engine_cuda_paged_rows_test tests/kernels_cuda_attention_test
      tests/engine_cuda_model_test tests/engine_cuda_model_rings_test tests/engine_cuda_xquant_decode_test tests/engine_cuda_sample_test
      tests/engine_cuda_edit_rows_test
      tests/engine_cuda_latent_svd_test tests/engine_cuda_cl_rows_test tests/engine_cuda_cl_plan_test
      tests/engine_cuda_channel_blocks_test tests/engine_cuda_cl_channel_rows_test
      xquant-server xquant-bench xquant-eval)
TARGETS=()
for b in "${BINS[@]}"; do TARGETS+=("$(basename "$b")"); done
ninja -C "$BUILD" -j2 "${TARGETS[@]}"
rm -rf .gpu && mkdir -p .gpu/bin .gpu/lib
for b in "${BINS[@]}"; do cp "$BUILD/$b" .gpu/bin/; done
# Shared libraries from Debian packages the GPU image lacks (CUDA's own come from its toolkit).
ldd .gpu/bin/* | awk '/=>/ {print $3}' | sort -u | grep -v -E '/(libc|libm|libstdc\+\+|libgcc_s|libpthread|libdl|librt)\.so|/cuda' \
  | while read -r lib; do cp -L "$lib" .gpu/lib/; done
strip .gpu/bin/* 2>/dev/null || true
# The binaries travel compressed too (~41 MB -> ~6 MB; gpu_env.sh unpacks them): a device call
# carries 64 MiB in all, and .peer/ (llama.cpp for the side-by-side runs) must fit beside .gpu/.
tar -C .gpu -cf - bin | xz -T2 >.gpu/bin.tar.xz && rm -rf .gpu/bin
tar -C .gpu -cJf .gpu/lib.tar.xz lib && rm -rf .gpu/lib
.venv/bin/python - <<'PY'
import sys
sys.path.insert(0, "tests/python")
from make_test_model import make_test_model
make_test_model(".gpu/model", layers=4, hidden=256, intermediate=512, heads=8, kv_heads=8, dtype="bf16")
PY
grep -qx '/.gpu/' .git/info/exclude 2>/dev/null || echo '/.gpu/' >> .git/info/exclude
du -sh .gpu
