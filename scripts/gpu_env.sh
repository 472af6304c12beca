# Sourced by the scripts that run on a GPU machine over what scripts/gpu_pack.sh packed into .gpu/:
# unpacks the packed binaries (into .gpu/bin) and shared libraries, puts those libraries and the
# machine's CUDA libraries on the loader's path; makes $OUT (default: the first argument).
OUT="${OUT:-$1}"
mkdir -p "$OUT" /tmp/xq && tar -C /tmp/xq -xJf .gpu/lib.tar.xz
[ -f .gpu/bin.tar.xz ] && tar -C .gpu -xJf .gpu/bin.tar.xz
CUDA_LIBS=$(dirname "$(find / -name 'libcublasLt.so.13*' -not -path '*/proc/*' 2>/dev/null | head -1)")
export LD_LIBRARY_PATH="/tmp/xq/lib:${CUDA_LIBS}:${LD_LIBRARY_PATH:-}"
