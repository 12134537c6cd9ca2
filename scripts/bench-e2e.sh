#!/usr/bin/env bash
# bench-e2e: the daemon trains config small from the stream beside the bare
# trainer on the same batches. Last line: bench-e2e daemon_tok_s=… bare_tok_s=… ratio=…
set -euo pipefail
cd "$(dirname "$0")/.."
TAGS=${TAGS:-}
tagflag=()
if [[ -n "${TAGS// /}" ]]; then tagflag=(-tags "$TAGS"); fi
go run "${tagflag[@]}" ./cmd/bench-e2e -data ../shared/data "$@"
