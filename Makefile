# clade: build, test, benchmark, fuzz. `make test` is what CI runs.
GO      ?= go
PKGS    ?= ./...
FUZZTIME ?= 20s

.PHONY: all build test fmt-check vet unit bench fuzz clean

all: build

build:
	$(GO) build -o bin/clade ./cmd/clade

test: fmt-check vet unit

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet $(PKGS)

unit:
	$(GO) test -race -count=1 -timeout 12m $(PKGS)

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
