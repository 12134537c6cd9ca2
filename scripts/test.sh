#!/usr/bin/env bash
# The test suite: formatting, vet, unit and integration tests, brief fuzzing.
set -euo pipefail
cd "$(dirname "$0")/.."
TAGS=${TAGS:-}
tagflag=()
if [[ -n "${TAGS// /}" ]]; then tagflag=(-tags "$TAGS"); fi

unformatted=$(gofmt -l $(git ls-files '*.go'))
if [[ -n "$unformatted" ]]; then
	echo "gofmt needed on:"; echo "$unformatted"; exit 1
fi
go vet "${tagflag[@]}" ./...
# The ablation harness end to end on real data, at CI size (about a minute).
if [[ -d ../shared/data ]]; then
	make --no-print-directory experiments-quick TAGS="$TAGS"
fi

go test "${tagflag[@]}" -count=1 -timeout 40m ./...

# The cuda build's tests on the CPU emulator of the CUDA driver (no GPU).
make --no-print-directory gpu-emu-test

# Brief fuzzing of the decoders (the seed corpora already ran above).
fuzz() { # package target
	timeout 180 go test "${tagflag[@]}" -run '^$' -fuzz "^$2\$" -fuzztime 10s "$1"
}
fuzz ./ingest FuzzDecode
fuzz ./model FuzzSafetensorsHeader
fuzz ./tokenizer FuzzPreTokenizers

