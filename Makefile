# attestd — run `make help` for the targets.
SHELL := /usr/bin/env bash
GO    ?= go
BIN   := $(CURDIR)/bin
PKGS  := ./...
# Count-based: a duration races a deadline in go1.26 fuzzing (golang/go#75804).
FUZZTIME ?= 20000x
FUZZLONG ?= 600
DRILL_KILLS ?= 8

export ATTESTD_COSIGN2 := $(BIN)/cosign2
export ATTESTD_COSIGN3 := $(BIN)/cosign3
export ATTESTD_LOCAL_KMS := $(BIN)/local-kms
export ATTESTD_CRANE := $(BIN)/crane
export ATTESTD_KYVERNO := $(BIN)/kyverno

.DEFAULT_GOAL := help

help: ## Show the targets
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN{FS=":.*?## "}{printf "  \033[36m%-12s\033[0m %s\n",$$1,$$2}'

build: ## Build attestd and attestctl into bin/
	$(GO) build -o $(BIN)/attestd ./cmd/attestd
	$(GO) build -o $(BIN)/attestctl ./cmd/attestctl

tools: $(BIN)/cosign2 $(BIN)/cosign3 $(BIN)/crane $(BIN)/local-kms $(BIN)/kyverno ## Build the pinned test tools (cosign v2 and v3, crane, local-kms, the Kyverno CLI) from tools/

$(BIN)/cosign2: tools/cosign2/go.mod tools/cosign2/go.sum
	cd tools/cosign2 && $(GO) build -o $(BIN)/cosign2 github.com/sigstore/cosign/v2/cmd/cosign
$(BIN)/cosign3: tools/cosign3/go.mod tools/cosign3/go.sum
	cd tools/cosign3 && $(GO) build -o $(BIN)/cosign3 github.com/sigstore/cosign/v3/cmd/cosign
$(BIN)/crane: tools/crane/go.mod tools/crane/go.sum
	cd tools/crane && $(GO) build -o $(BIN)/crane github.com/google/go-containerregistry/cmd/crane
$(BIN)/local-kms: tools/localkms/go.mod tools/localkms/go.sum
	cd tools/localkms && $(GO) build -o $(BIN)/local-kms github.com/nsmithuk/local-kms
$(BIN)/kyverno: tools/kyverno/go.mod tools/kyverno/go.sum
	cd tools/kyverno && $(GO) build -o $(BIN)/kyverno github.com/kyverno/kyverno/cmd/cli/kubectl-kyverno
$(BIN)/syft: tools/syft/go.mod tools/syft/go.sum
	cd tools/syft && $(GO) build -o $(BIN)/syft github.com/anchore/syft/cmd/syft
$(BIN)/golangci-lint: tools/lint/go.mod tools/lint/go.sum
	cd tools/lint && $(GO) build -o $(BIN)/golangci-lint github.com/golangci/golangci-lint/v2/cmd/golangci-lint

VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
PLATFORMS ?= linux/amd64,linux/arm64

image: ## Build the multi-arch OCI image from scratch, no Docker daemon (bin/attestd-image.tar, an OCI layout)
	@set -e; for p in $$(echo $(PLATFORMS) | tr , ' '); do \
	  os=$${p%/*}; arch=$${p#*/}; echo "== $$os/$$arch"; \
	  for c in attestd attestctl; do \
	    CGO_ENABLED=0 GOOS=$$os GOARCH=$$arch $(GO) build -trimpath -ldflags '-s -w' -o $(BIN)/image/$${os}_$${arch}/$$c ./cmd/$$c; \
	  done; \
	done
	SOURCE_DATE_EPOCH=$$(git log -1 --format=%ct 2>/dev/null || echo 0) $(GO) run ./internal/imagebuild/mkimage \
	  --bin-dir $(BIN)/image --platforms $(PLATFORMS) --version $(VERSION) --revision "$(REVISION)" --out $(BIN)/attestd-image.tar

release: ## Build binaries and image; a throw-away attestd signs the image, writes its provenance and SBOM; cosign verifies all three (bin/release/)
	scripts/release

run: build ## Run attestd with zero configuration (data in ./attestd-data)
	$(BIN)/attestd serve

test: tools $(BIN)/syft ## Run every test, with the real registry, local-kms, cosign and syft CLIs and race detector
	scripts/with-services $(GO) test -race -shuffle=on -count=1 $(PKGS)

test-short: ## Run the fast unit tests only
	$(GO) test -short $(PKGS)

lint: $(BIN)/golangci-lint ## Run gofmt, go vet, golangci-lint, and refuse tracked binaries and big files
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }
	$(GO) vet $(PKGS)
	$(BIN)/golangci-lint run $(PKGS)
	scripts/check-tracked

# Fuzz targets as package:Target; add each new one here.
FUZZ_TARGETS := ./attest:FuzzParseBundle ./attest:FuzzParsePayloads ./attest:FuzzValidatePredicate ./storage/oci:FuzzParse ./api:FuzzDecodeSign ./internal/app:FuzzConfigFile ./storage/archive:FuzzLoadImage ./service/policy:FuzzParse ./service/workload:FuzzAdmission ./service/policy:FuzzEval ./service/identity:FuzzClaims ./tlog:FuzzCheckpoint ./sbom/vers:FuzzParse ./sbom/inventory:FuzzRead ./attest/pack:FuzzRead

fuzz: ## Run each fuzz target for FUZZTIME executions (default 20000x)
	@set -e; for t in $(FUZZ_TARGETS); do \
	  p=$${t%%:*}; f=$${t##*:}; echo "fuzz $$p $$f ($(FUZZTIME))"; \
	  $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$p; \
	done

export ATTESTD_SYFT := $(BIN)/syft

# SBOMs the package index benchmark indexes into each database; the README
# reports BENCH_SBOMS=100000 (about an hour for both databases on 2 cores).
BENCH_SBOMS ?= 10000

# Benchmarks that measure one round whatever b.N (attestd as a separate
# process, minutes of uploads or idling): run once, with -benchtime 1x.
BENCH_ONCE := BenchmarkUploadMemory|BenchmarkIdleCPU

bench: tools $(BIN)/syft ## Run the benchmarks, then print one table: each figure, its baseline from the same run, ratio, goal (raw output: bin/bench.txt; BENCH_SBOMS for the package index)
	@mkdir -p $(BIN)
	@( ATTESTD_BENCH_SBOMS=$(BENCH_SBOMS) scripts/with-services $(GO) test -run '^$$' -bench . -skip '$(BENCH_ONCE)' -benchtime 20x -count=1 -timeout 240m $(PKGS); r1=$$?; \
	  $(GO) test -run '^$$' -bench '$(BENCH_ONCE)' -benchtime 1x -count=1 -timeout 30m ./internal/e2e; r2=$$?; exit $$((r1 | r2)) ) 2>&1 | tee $(BIN)/bench.txt; \
	rc=$${PIPESTATUS[0]}; echo; scripts/bench-table $(BIN)/bench.txt; exit $$rc

drill: tools ## Crash drill (SIGKILL under load, DRILL_KILLS times) and fault drills (registry, KMS, database, disk down for 5 s)
	set -o pipefail; ATTESTD_DRILL_KILLS=$(DRILL_KILLS) scripts/with-services $(GO) test -tags drill -count=1 -v -timeout 30m -run 'Drill' ./cmd/attestd ./internal/e2e 2>&1 | grep -vE '^=== (RUN|PAUSE|CONT)' | grep -E '^(---|ok|FAIL|PASS)|_test.go'

load: tools ## 100,000 verifies and 10,000 signs on one process, then on two replicas; p50/p99, peak RSS, counts
	set -o pipefail; scripts/with-services $(GO) test -tags load -count=1 -v -timeout 90m -run 'TestLoad' ./cmd/attestd 2>&1 | grep -E '^(---|ok|FAIL|PASS)|load_test'

fuzz-long: ## Run each fuzz target for FUZZLONG seconds (default 600), stopped by a timer (see FUZZTIME)
	@for t in $(FUZZ_TARGETS); do \
	  p=$${t%%:*}; f=$${t##*:}; echo "fuzz $$p $$f ($(FUZZLONG) s)"; \
	  timeout -s INT $(FUZZLONG) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime 1000000000x $$p; rc=$$?; \
	  case $$rc in 0|124|130) ;; *) exit $$rc;; esac; \
	done

tidy-check: ## Fail if go.mod or go.sum is not tidy
	$(GO) mod tidy -diff

.PHONY: help build tools run test test-short lint fuzz fuzz-long bench drill load tidy-check image release
