# clade: build, test, benchmark, fuzz. `make test` is what CI runs.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 20s
# The end-to-end tests too slow for make test (each skips without CLADE_TEST_LONG,
# saying so); make test-long runs them, and CI runs both.
LONG_TESTS ?= TestBatchScale

# The longest test packages, named first so go test builds and starts them first
# (it schedules in the order given): the rest share the other core meanwhile.
FIRST   ?= $(if $(filter ./...,$(PKGS)),./internal/cli ./internal/serve)

SHELL := /bin/bash

.PHONY: all build test test-long fmt-check vet staticcheck unit node-deps conformance bench fuzz clean

all: build

build:
	$(GO) build -o bin/clade ./cmd/clade

test: fmt-check vet staticcheck unit

fmt-check:
	@echo "== gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	@echo "== go vet $(PKGS) (compiles every package: a few minutes on a cold build cache, seconds after)"
	$(GO) vet $(PKGS)

# staticcheck is a tool dependency in go.mod (go tool): the module proxy is all it
# needs. On this 2-core machine it takes about 1 s when nothing changed, 20-60 s
# after changes, about 70 s after a cold vet on a fresh GOCACHE.
staticcheck:
	@echo "== staticcheck $(PKGS) (up to a minute or so; longer on a cold build cache)"
	$(GO) tool staticcheck $(PKGS)

# The real clients the tests drive (testdata/node/package.json: Playwright, the
# TypeScript SDK, the Vercel AI SDK, LangChain JS, Claude Code), installed once
# with npm when npm is here; without it those tests skip (and fail under CI).
node-deps:
	@if command -v npm >/dev/null 2>&1; then \
	  if [ ! -f testdata/node/node_modules/.package-lock.json ] || \
	     [ testdata/node/package-lock.json -nt testdata/node/node_modules/.package-lock.json ]; then \
	    echo "== npm ci in testdata/node (the real clients the tests drive; about a minute)"; \
	    npm ci --no-audit --no-fund --loglevel=error --prefix testdata/node; \
	  fi; \
	else echo "== npm not found: the real-client and browser tests will skip"; fi

# go test's own output waits for the packages listed before each one; go test
# -json through .ci/testprogress.go prints each package as it finishes, the output
# of any that fails, every minute the ones still running, then the slowest tests.
# -parallel 4: most end-to-end tests wait (child processes, emulator latency, batch
# clocks), so four at a time in a package use the two cores that two left idle
# (docs/benchmarks.md, make test).
unit: node-deps
	@echo "== go test -race $(PKGS) (one line per package as it finishes)"
	set -o pipefail; $(GO) test -race -count=1 -parallel 4 -timeout 12m -json $(FIRST) $(PKGS) 2>&1 | $(GO) run .ci/testprogress.go

# The slow end-to-end tests (LONG_TESTS) that make test skips. CI runs it after
# make test.
test-long:
	@echo "== long end-to-end tests: $(LONG_TESTS)"
	set -o pipefail; CLADE_TEST_LONG=1 $(GO) test -race -count=1 -timeout 20m -json -run '^($(subst $() $(),|,$(strip $(LONG_TESTS))))$$' ./internal/cli 2>&1 | $(GO) run .ci/testprogress.go

# The real-client conformance suite alone (internal/conformance: the TypeScript
# SDK, the AI SDK, LangChain JS and Claude Code against clade emulate, directly
# and through clade serve; docs/emulator.md). make test runs it too.
conformance: node-deps
	@echo "== real-client conformance (testdata/node/conformance)"
	$(GO) test -race -count=1 -timeout 5m -v -run TestRealClients ./internal/conformance

# Go benchmarks of hot paths. End-to-end figures: see docs/benchmarks.md.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count=1 $(PKGS)

# Run every native fuzz target for FUZZTIME each.
fuzz:
	@for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

clean:
	rm -rf bin
