#!/usr/bin/env bash
# Builds the CPU emulator of the CUDA driver and cuBLAS (gpu/emu) into DIR
# (default bin/emu): DIR/libcuda.so.1 and DIR/libcublas.so. Needs g++ and
# the CUDA headers scripts/cuda-headers.sh fetches (for cuda.h and
# cublas_v2.h, so every emulated function has the real prototype).
#
# Use: LD_LIBRARY_PATH=DIR REPLAYD_CUBLAS=DIR/libcublas.so bin/gpu.test
# (make gpu-emu-test does it all).
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-bin/emu}
mkdir -p "$out"
eval "$(bash scripts/cuda-headers.sh)"
src=gpu/emu
# -U_FORTIFY_SOURCE: fibers longjmp between stacks, which glibc's fortified
# longjmp refuses. -fno-fast-math and no -march: IEEE float32 as in
# kernels.cu's comments (no contraction to FMA on baseline x86-64).
flags=(-std=c++17 -O2 -g -fPIC -pthread -Wall -Werror -Wno-unknown-pragmas -Wno-sign-compare -U_FORTIFY_SOURCE
	-ffp-contract=off -I"$src/include" -I"$REPLAYD_CUDA_ROOT/usr/include")
g++ "${flags[@]}" -shared -Wl,-soname,libcuda.so.1 -o "$out/libcuda.so.1" \
	"$src/driver.cc" "$src/exec.cc" "$src/kernels_host.cc"
g++ "${flags[@]}" -shared -Wl,-soname,libcublas.so -o "$out/libcublas.so" "$src/cublas.cc" \
	"$out/libcuda.so.1" -Wl,-rpath,'$ORIGIN'
echo "emu: built $out/libcuda.so.1 and $out/libcublas.so" >&2
g++ "${flags[@]}" -o "$out/selftest" "$src/selftest.cc" "$out/libcuda.so.1" "$out/libcublas.so" -Wl,-rpath,'$ORIGIN'
