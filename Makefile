# replayd build, test and benchmark targets. Targets named in the issues print
# their result as the last line, in key=value form.

GO      ?= go
BIN     ?= bin/replayd
# OpenBLAS is used for the CPU GEMM when its headers are installed
# (Debian: libopenblas-dev); without them the build falls back to pure Go.
BLAS_TAG := $(shell test -f /usr/include/x86_64-linux-gnu/cblas.h -o -f /usr/include/cblas.h -o -f /usr/include/openblas/cblas.h && echo openblas)
TAGS    ?= $(BLAS_TAG)
GOFLAGS_TAGS := $(if $(strip $(TAGS)),-tags '$(TAGS)',)
PYTHON  ?= /usr/bin/python3

.PHONY: all build run test vet fmt parity bench-train bench-tokenizer bench-ingest \
        bench-mixer bench-e2e policies experiments experiments-quick build-cuda ptx cuda-vet gpu-bins gpu-emu-test clean

all: build

build:
	$(GO) build $(GOFLAGS_TAGS) -o $(BIN) ./cmd/replayd

run: build
	./$(BIN) demo

test:
	TAGS='$(TAGS)' PYTHON=$(PYTHON) bash scripts/test.sh

vet:
	$(GO) vet $(GOFLAGS_TAGS) ./...

fmt:
	gofmt -l -w .

parity:
	TAGS='$(TAGS)' PYTHON=$(PYTHON) bash scripts/parity.sh

bench-train:
	TAGS='$(TAGS)' PYTHON=$(PYTHON) bash scripts/bench-train.sh

bench-tokenizer:
	TAGS='$(TAGS)' bash scripts/bench-tokenizer.sh

bench-ingest:
	TAGS='$(TAGS)' bash scripts/bench-ingest.sh

bench-mixer:
	TAGS='$(TAGS)' bash scripts/bench-mixer.sh

bench-e2e:
	TAGS='$(TAGS)' bash scripts/bench-e2e.sh

policies:
	bash scripts/build-policies.sh

experiments: build
	./$(BIN) experiment experiments/paper.yaml

experiments-quick: build
	./$(BIN) experiment --quick experiments/paper.yaml

ptx:
	bash gpu/kernels/build-ptx.sh

# No $(TAGS): an openblas build would need libopenblas on the GPU machine.
build-cuda:
	eval "$$(bash scripts/cuda-headers.sh)" && $(GO) build -tags cuda -o bin/replayd-cuda ./cmd/replayd

# The CI compile check: CUDA 11.8 headers and link stubs only, no GPU.
cuda-vet:
	eval "$$(bash scripts/cuda-headers.sh)" && $(GO) vet -tags cuda ./gpu/... && $(GO) build -tags cuda ./...

# The binaries scripts/gpu-check.sh runs on a GPU machine: bin/gpu/ (about
# 11 MB; carry only that folder, the device tool carries 64 MiB at most).
gpu-bins:
	eval "$$(bash scripts/cuda-headers.sh)" && $(GO) test -c -tags cuda -o bin/gpu/gpu.test ./gpu && $(GO) build -tags cuda -o bin/gpu/gpubench ./gpu/cmd/gpubench

# The cuda build's tests on the CPU emulator of the driver and cuBLAS (gpu/emu):
# no GPU needed; part of make test.
gpu-emu-test:
	bash scripts/gpu-emu-test.sh

clean:
	rm -rf bin
