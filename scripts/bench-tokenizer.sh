#!/usr/bin/env bash
# Tokenizer throughput: replayd's byte-level BPE against tiktoken-go, same
# text (the held-out shared data) and same GPT-2 vocabulary. Last line:
#   bench-tokenizer ours_mb_s=… tiktoken_mb_s=… ratio=… ours_2cores_mb_s=…
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
TAGS=${TAGS:-}
go run ${TAGS:+-tags "$TAGS"} ./tokenizer/internal/benchtok -data "$DATA" -min "${BENCH_MIN:-3s}"
