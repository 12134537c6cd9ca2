#!/usr/bin/env bash
# Ingest read-path throughput: the shared data set is published to an
# embedded JetStream, then read back through validation, tokenization and the
# chat template (parallel across cores, in sequence order). Only the read is
# timed. Last line:
#   bench-ingest samples_s=… mb_s=… tokens_s=…
# DATA overrides the data folder; TOKENIZER a tokenizer.json (default: GPT-2
# ranks with the chat special tokens).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${DATA:-../shared/data}
TAGS=${TAGS:-}
bin=$(mktemp -d)/benchingest
trap 'rm -rf "$(dirname "$bin")"' EXIT
go build ${TAGS:+-tags "$TAGS"} -o "$bin" ./ingest/internal/benchingest
"$bin" -data "$DATA" ${TOKENIZER:+-tokenizer "$TOKENIZER"}
