#!/usr/bin/env bash
# The CUDA backend's checks on a machine without a GPU (make gpu-emu-test,
# part of make test): the cuda build runs against gpu/emu, a CPU emulator of
# the CUDA driver API and of cublasGemmEx that executes kernels.cu itself.
#
#   1. the emulator's self-test (its checks fire on hostile kernels and calls);
#   2. the gpu package's parity tests (every op, two training steps of whole
#      models, determinism) with the own GEMM kernel and the reverse thread
#      order inside blocks;
#   3. scripts/gpu-check.sh as a dry run: the same tests with the emulated
#      cuBLAS (fp32 and bf16) and a shuffled thread order, then gpubench and
#      PyTorch on a small config (the programs run; their speed means nothing);
#   4. the cuda daemon, `replayd-cuda demo --device cuda` (evaluation on
#      the emulated GPU too), until it has evaluated, passed the gate and
#      published a checkpoint, then SIGTERM: exit 0 and a checkpoint on disk.
#
# What it cannot check: anything about real GPU hardware (the PTX JIT, the
# memory model beyond barriers, warp scheduling, speed); that is
# scripts/gpu-check.sh on a lent GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
out=bin/emu
say() { echo "gpu-emu: $*"; }

bash gpu/emu/build.sh "$out"
"$out/selftest" gpu/kernels/kernels.ptx 2>"$out/selftest.log" || { cat "$out/selftest.log"; exit 1; }
say "emulator self-test ok"

eval "$(bash scripts/cuda-headers.sh)"
go test -c -tags cuda -o "$out/gpu.test" ./gpu
go build -tags cuda -o "$out/gpubench" ./gpu/cmd/gpubench
go build -tags cuda -o "$out/replayd-cuda" ./cmd/replayd

export LD_LIBRARY_PATH=$PWD/$out${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
parity() { # label, env...
	local label=$1 log="$out/parity-$1.log"
	shift
	if ! env "$@" "$out/gpu.test" -test.v -test.count 1 -test.timeout 10m >"$log" 2>&1; then
		grep -E -- '--- FAIL|panic|replayd-emu|Error|error [0-9.e+-]+ >' "$log" | head -40
		say "parity ($label) FAILED, full log: $log"
		exit 1
	fi
	say "parity ($label): $(grep -c -- '--- PASS' "$log") passed; $(grep -E 'backend ' "$log" | head -1 | sed 's/.*backend //')"
	grep -E 'worst gradient|worst weight' "$log" | sed 's/^ *gpu_test.go:[0-9]*: /    /' | head -8
}
parity own-gemm-reverse REPLAYD_GPU_NOCUBLAS=1 REPLAYD_EMU_SCHEDULE=reverse

# The GPU session's one-call script itself, as a dry run: parity with the
# emulated cuBLAS (shuffled thread order), then gpubench and PyTorch on a
# small config.
log="$out/gpu-check.log"
if ! GPU_CHECK_EMULATOR=$out GPU_CHECK_BIN=$out PYTHON=${PYTHON:-/usr/bin/python3} bash scripts/gpu-check.sh >"$log" 2>&1; then
	grep -E -- '--- FAIL|panic|replayd-emu|FAILED|error [0-9.e+-]+ >' "$log" | head -40
	say "scripts/gpu-check.sh dry run FAILED, full log: $log"
	exit 1
fi
line=$(tail -1 "$log")
[[ $line =~ ^gpu-bench\ go_tok_s=[0-9.]+\ torch_tok_s=[0-9.]+\ ratio=[0-9.]+\ mfu=[0-9.]+$ ]] ||
	{ say "scripts/gpu-check.sh dry run ended with: $line"; exit 1; }
say "scripts/gpu-check.sh dry run: $line"

# The daemon on the CUDA backend until its first gated publish.
dir=$(mktemp -d)
pid=""
cleanup() {
	if [[ -n $pid ]]; then kill "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT
REPLAYD_CUBLAS="$PWD/$out/libcublas.so" "$out/replayd-cuda" demo --data_dir "$dir" --http.addr 127.0.0.1:0 \
	--device cuda --eval.every_steps 15 --train.checkpoint_every 1000 --log.level warn >"$dir/out.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
	grep -q 'published=step-' "$dir/out.log" && break
	kill -0 "$pid" 2>/dev/null || break
	sleep 1
done
if ! grep -q 'published=step-' "$dir/out.log"; then
	tail -30 "$dir/out.log"
	say "the cuda daemon published nothing"
	exit 1
fi
kill -TERM "$pid"
st=0
wait "$pid" || st=$?
if [[ $st -ne 0 || ! -f $dir/checkpoint/model.safetensors ]]; then
	tail -30 "$dir/out.log"
	ls -R "$dir/checkpoint" 2>/dev/null | head
	say "the cuda daemon exited $st after SIGTERM, or left no checkpoint"
	exit 1
fi
say "cuda daemon: $(grep -m1 'published=step-' "$dir/out.log" | sed 's/.*\(eval step=\)/\1/' | cut -c1-160); SIGTERM: exit 0, checkpoint written"
say "ok"
