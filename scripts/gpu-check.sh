#!/usr/bin/env bash
# The GPU check of the CUDA backend, for a session lent a GPU machine, run in
# ONE device call. That machine has no Go: the binaries are built beforehand
# on the session's own machine and carried over:
#
#   make gpu-bins      # bin/gpu/gpu.test (parity tests) and bin/gpu/gpubench, ~11 MB
#
# then the device tool: command "bash scripts/gpu-check.sh", carry
# ["bin/gpu"] (not "bin": with the daemon binaries it is over the 64 MiB the
# tool carries), timeout_s 540. About 3-5 min on an H200.
#
# Steps: (1) device and library report; (2) parity of the CUDA backend with
# the CPU backend: every op, two training steps of whole models in fp32 and
# bf16 GEMMs, bit-determinism, with cuBLAS and again with the own GEMM
# kernel; (3) throughput of the ~125M config in Go (bf16 GEMMs) and in
# PyTorch (gpu/bench_torch.py, bf16 autocast) when torch with CUDA is there.
# The last line is:
#   gpu-bench go_tok_s=… torch_tok_s=…|na ratio=…|na mfu=…
# Env: BENCH_STEPS (10), BENCH_BATCH (8), PEAK_FLOPS (790e12, H200 bf16 dense),
# GPU_CHECK_BIN (bin/gpu: where gpu.test and gpubench are).
#
# Dry run without a GPU: GPU_CHECK_EMULATOR=bin/emu runs this very script on
# the CPU emulator of the driver and cuBLAS (gpu/emu; make gpu-emu-test does
# it), with a small benchmark config and PyTorch on the CPU, so the one call
# a GPU session gets does not fail on a typo here. Its figures mean nothing.
set -uo pipefail
cd "$(dirname "$0")/.."

steps=${BENCH_STEPS:-10}
batch=${BENCH_BATCH:-8}
peak=${PEAK_FLOPS:-790e12}
bin=${GPU_CHECK_BIN:-bin/gpu}
emu=${GPU_CHECK_EMULATOR:-}
fail=0
say() { echo "gpu-check: $*"; }

for b in "$bin/gpu.test" "$bin/gpubench"; do
	if [[ ! -x $b ]]; then
		say "$b missing: build it first (make gpu-bins) and carry bin/gpu"
		echo "gpu-bench go_tok_s=na torch_tok_s=na ratio=na mfu=na"
		exit 2
	fi
done

# (1) The device. cu's package init exits the process when cuInit fails, so
# check for a driver and a device before running any binary.
if [[ -n $emu ]]; then
	say "DRY RUN on the CPU emulator in $emu: no GPU is used, the figures mean nothing"
	export LD_LIBRARY_PATH=$PWD/$emu${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	export REPLAYD_CUBLAS=$PWD/$emu/libcublas.so
elif ! ls /dev/nvidia0 >/dev/null 2>&1 || ! ldconfig -p 2>/dev/null | grep -q 'libcuda.so.1'; then
	say "no NVIDIA device or no libcuda.so.1 here: nothing to check"
	echo "gpu-bench go_tok_s=na torch_tok_s=na ratio=na mfu=na"
	exit 2
fi
nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv,noheader 2>/dev/null || true

# cuBLAS is dlopen'ed: find any libcublas.so.N (system CUDA, or the one
# pip's torch wheels bundle) unless REPLAYD_CUBLAS already names one.
if [[ -z ${REPLAYD_CUBLAS:-} ]]; then
	lib=$(ldconfig -p 2>/dev/null | awk '/libcublas\.so\.[0-9]+ / {print $NF; exit}')
	if [[ -z $lib ]]; then
		lib=$(ls /usr/local/cuda*/lib64/libcublas.so.[0-9]* /usr/local/cuda*/targets/*/lib/libcublas.so.[0-9]* 2>/dev/null | head -1)
	fi
	if [[ -z $lib ]] && command -v python3 >/dev/null; then
		lib=$(python3 - <<'EOF' 2>/dev/null
import glob, site, sys
for d in site.getsitepackages() + [site.getusersitepackages()]:
    for f in sorted(glob.glob(d + "/nvidia/cublas/lib/libcublas.so.*")):
        print(f); sys.exit()
EOF
		)
	fi
	if [[ -n $lib ]]; then
		export REPLAYD_CUBLAS=$lib
		# libcublas needs its libcublasLt neighbour.
		export LD_LIBRARY_PATH=$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
	fi
fi
say "cuBLAS: ${REPLAYD_CUBLAS:-none found (own GEMM kernel only)}"

# (2) Parity. The PTX (1.4 MB) is JIT-compiled at the first New and cached
# by the driver for the other ~20 backends the tests create: give the cache a
# writable place and room, or every New compiles again.
export CUDA_CACHE_PATH=${CUDA_CACHE_PATH:-$PWD/.nv-cache} CUDA_CACHE_MAXSIZE=${CUDA_CACHE_MAXSIZE:-1073741824}
mkdir -p "$CUDA_CACHE_PATH"
say "parity with cuBLAS (or own GEMM when none was found)"
timeout 600 "$bin/gpu.test" -test.v -test.timeout 540s -test.run 'OpsParity|TrainParity|Determinism|TensorCore' 2>&1 |
	grep -E '^(--- |PASS|FAIL|ok|panic)|relative error|backend|worst|step [0-9]|\.go:[0-9]+' | tail -200
st=${PIPESTATUS[0]}
if [[ $st -ne 0 ]]; then fail=1; say "parity FAILED (exit $st)"; fi
say "parity with the own GEMM kernel (ops only)"
REPLAYD_GPU_NOCUBLAS=1 timeout 300 "$bin/gpu.test" -test.v -test.timeout 280s -test.run 'OpsParity' 2>&1 |
	grep -E '^(--- |FAIL|ok|PASS|panic)|matmul|backend' | tail -60
st=${PIPESTATUS[0]}
if [[ $st -ne 0 ]]; then fail=1; say "own-GEMM parity FAILED (exit $st)"; fi

# (3) Throughput, 125M config, both with bf16 GEMMs.
cfg=(--hidden 768 --layers 12 --heads 12 --kv-heads 4 --intermediate 2048 --vocab 32768 --seq 1024 --batch "$batch" --steps "$steps" --warmup 2)
torchdev=()
if [[ -n $emu ]]; then
	cfg=(--hidden 128 --layers 2 --heads 2 --kv-heads 1 --intermediate 256 --vocab 512 --seq 128 --batch 2 --steps 2 --warmup 1)
	torchdev=(--device cpu)
fi
# Go's flag package reads --name value like -name value.
goline=$(timeout 300 "$bin/gpubench" -precision bf16 -peak "$peak" "${cfg[@]}" 2>&1 | tail -1)
say "$goline"
go_tok=$(sed -n 's/.* tok_s=\([0-9.]*\).*/\1/p' <<<"$goline")
mfu=$(sed -n 's/.* mfu=\([0-9.]*\).*/\1/p' <<<"$goline")
[[ -n $go_tok ]] || { go_tok=na; mfu=na; fail=1; }
# For comparison only: the same with the float32 attention kernels.
say "$(timeout 300 "$bin/gpubench" -precision bf16 -plain-attention -peak "$peak" "${cfg[@]}" 2>&1 | tail -1)"

torch_tok=na
py=${PYTHON:-python3}
torchcheck='import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)'
[[ -n $emu ]] && torchcheck='import torch'
if command -v "$py" >/dev/null && "$py" -c "$torchcheck" 2>/dev/null; then
	tline=$(timeout 300 "$py" gpu/bench_torch.py "${cfg[@]}" "${torchdev[@]}" 2>&1 | tail -1)
	say "$tline"
	torch_tok=$(sed -n 's/^torch tok_s=\([0-9.]*\).*/\1/p' <<<"$tline")
	[[ -n $torch_tok ]] || { torch_tok=na; fail=1; say "the PyTorch benchmark FAILED"; }
else
	say "no torch with CUDA on this machine: torch_tok_s=na"
fi
ratio=na
if [[ $go_tok != na && $torch_tok != na ]]; then
	ratio=$(awk -v g="$go_tok" -v t="$torch_tok" 'BEGIN {printf "%.3f", g / t}')
fi
[[ $fail -eq 0 ]] || say "some checks FAILED (see above)"
echo "gpu-bench go_tok_s=$go_tok torch_tok_s=$torch_tok ratio=$ratio mfu=$mfu"
exit $fail
