#!/usr/bin/env bash
# Training throughput of the Go CPU backend against PyTorch (2 threads) on
# the small (batch 8) and base (batch 4) presets (make bench-train). Each
# measurement runs in its own process so peak memory is its own. The last
# line is the summary:
#   bench-train small go_tok_s=… torch_tok_s=… ratio=… base go_tok_s=… torch_tok_s=… ratio=… …
set -euo pipefail
cd "$(dirname "$0")/.."
TAGS=${TAGS:-}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${BENCH_THREADS:-2}
tagflag=()
if [[ -n "${TAGS// /}" ]]; then tagflag=(-tags "$TAGS"); fi
bin=$(mktemp -d)
trap 'rm -rf "$bin"' EXIT
go build "${tagflag[@]}" -o "$bin/benchtrain" ./model/cmd/benchtrain

field() { sed -n "s/.* $2=\([^ ]*\).*/\1/p" <<<"$1"; }
summary="bench-train"
peaks=""
for spec in "small 8 5" "base 4 2"; do
	read -r preset batch steps <<<"$spec"
	g=$("$bin/benchtrain" -preset "$preset" -batch "$batch" -steps "$steps" -warmup 1 -threads "$THREADS")
	echo "$g"
	if "$PYTHON" -c 'import torch' 2>/dev/null; then
		p=$("$PYTHON" model/parity/bench.py --preset "$preset" --batch "$batch" --steps "$steps" --warmup 1 --threads "$THREADS")
		echo "$p"
	else
		echo "torch not available in $PYTHON: torch figures are 0" >&2
		p="torch tok_s=0 peak_mb=0"
	fi
	gt=$(field "$g" tok_s) pt=$(field "$p" tok_s)
	ratio=$(awk -v a="$gt" -v b="$pt" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "inf" }')
	summary+=" $preset go_tok_s=$gt torch_tok_s=$pt ratio=$ratio"
	peaks+=" ${preset}_go_peak_mb=$(field "$g" peak_mb) ${preset}_torch_peak_mb=$(field "$p" peak_mb)"
done
echo "bench-train peak memory:$peaks"
echo "$summary$peaks"
