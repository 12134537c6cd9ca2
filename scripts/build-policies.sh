#!/usr/bin/env bash
# Builds the policy modules (make policies):
#   policies/<name>/main.go                  -> policies/wasm/<name>.wasm
#   policies/testdata/hostile/<name>/main.go -> policies/testdata/hostile/<name>.wasm
# as WASI reactors (GOOS=wasip1 GOARCH=wasm -buildmode=c-shared). The flags
# make the output reproducible: -trimpath drops file system paths,
# -buildvcs=false drops the commit stamp, -ldflags '-s -w' drops symbol
# and DWARF sections. policies/rebuild_test.go checks a rebuild is
# byte-identical to the committed modules.
# Usage: scripts/build-policies.sh [OUTDIR]   (OUTDIR: build there instead,
# with the same layout, for comparison)
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-.}
build() { # pkgdir outfile
	mkdir -p "$(dirname "$2")"
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS= go build -trimpath -buildvcs=false \
		-ldflags='-s -w' -buildmode=c-shared -o "$2" "./$1"
}
# The bytes depend on the toolchain: record which one built them (the
# rebuild test compares only under the same version).
mkdir -p "$out/policies/wasm"
go env GOVERSION > "$out/policies/wasm/GOVERSION"
for dir in policies/*/; do
	name=$(basename "$dir")
	[[ -f "$dir/main.go" ]] || continue
	build "$dir" "$out/policies/wasm/$name.wasm"
	echo "built $out/policies/wasm/$name.wasm"
done
for dir in policies/testdata/hostile/*/; do
	name=$(basename "$dir")
	[[ -f "$dir/main.go" ]] || continue
	build "$dir" "$out/policies/testdata/hostile/$name.wasm"
	echo "built $out/policies/testdata/hostile/$name.wasm"
done
