#!/usr/bin/env bash
# Copies the built binaries and the shared libraries they link into PREFIX/bin and PREFIX/lib, for
# an image's runtime stage: glibc and the CUDA libraries are left out (every base image, and the
# CUDA runtime image, has its own). Usage: scripts/install.sh PREFIX [BUILD_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
prefix="${1:?usage: scripts/install.sh PREFIX [BUILD_DIR]}"
build="${2:-build/release}"
mkdir -p "$prefix/bin" "$prefix/lib"
bins=()
for name in xquant-server xquant-eval xquant-bench; do
  path="$(find "$build" -maxdepth 2 -type f -name "$name" -perm -u+x | head -n 1)"
  [ -n "$path" ] || continue
  install -m 0755 "$path" "$prefix/bin/$name"
  bins+=("$prefix/bin/$name")
done
[ "${#bins[@]}" -gt 0 ] || { echo "install.sh: no binaries in $build" >&2; exit 1; }
# ldd lists the whole closure ("libfoo.so.1 => /path (0x...)"); libcuda is the driver's, absent
# at build time ("not found"), and mounted into the container at run time.
ldd "${bins[@]}" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}' | sort -u |
  while read -r soname path; do
    case "$soname" in
      libc.so* | libm.so* | libpthread.so* | libdl.so* | librt.so* | libresolv.so*) continue ;;
      ld-linux*) continue ;;
      libcuda.so* | libcudart.so* | libcublas*.so* | libcusolver*.so* | libcusparse*.so* | \
        libnvJitLink*.so* | libnvidia*) continue ;;
    esac
    case "$path" in /usr/local/cuda*) continue ;; esac
    cp -L "$path" "$prefix/lib/$soname"
  done
echo "install.sh: ${bins[*]} and $(ls "$prefix/lib" | wc -l) libraries in $prefix"
