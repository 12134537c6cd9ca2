#!/usr/bin/env bash
# Regenerates gpu/kernels/kernels.ptx from kernels.cu (make ptx). Needs nvcc:
# $NVCC, else nvcc on PATH, else the unpacked copy that
# scripts/cuda-headers.sh --nvcc provides (no GPU and no install needed).
# The PTX is committed, so building the cuda binary needs no nvcc.
set -euo pipefail
cd "$(dirname "$0")"
if [[ -z ${NVCC:-} ]]; then
	if command -v nvcc >/dev/null; then
		NVCC=nvcc
	else
		eval "$(bash ../../scripts/cuda-headers.sh --nvcc)"
	fi
fi
# compute_80: the H100/H200 driver JIT-compiles it for sm_90; -lineinfo for
# profilers. No --use_fast_math: the kernels rely on IEEE sqrt and division
# to stay close to the CPU backend. -ccbin names the system compiler by path
# because Debian's nvcc directory has a gcc wrapper that looks for gcc-11.
"$NVCC" -ccbin "$(command -v g++)" -allow-unsupported-compiler \
	-arch=compute_80 -ptx -lineinfo -O3 -std=c++14 -o kernels.ptx kernels.cu
echo "ptx: $(wc -c <kernels.ptx) bytes, $(grep -c '^.visible .entry' kernels.ptx) kernels"
