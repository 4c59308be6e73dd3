# nuthatch — `make run` to try it, `make test` to check it.
SHELL   := /bin/bash
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -s -w -X main.version=$(VERSION)
BIN     := bin/nuthatch
export GOFLAGS ?= -mod=mod

.PHONY: all build deps test unit integration run bench package lint clean fuzz

all: build

build:
	$(GO) build -trimpath -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/nuthatch

deps:
	@test/scripts/deps.sh

# The whole suite: formatting and vet, unit tests with the race detector, a
# short fuzz budget per parser, and the integration suites against real
# redis-server, memcached and nutcracker.
test: deps lint build
	NUTHATCH_BIN=$(CURDIR)/$(BIN) $(GO) test -race -count=1 -timeout 15m ./...
	$(MAKE) --no-print-directory fuzz FUZZTIME=10s

# FUZZTIME per target; `make fuzz FUZZTIME=10m` for a longer run.
FUZZTIME ?= 10s
fuzz:
	@set -e; for pkg in $$(go list ./pkg/...); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz' || true); do \
	    echo "fuzz $$pkg $$f ($(FUZZTIME))"; \
	    $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg >/dev/null; \
	  done; \
	done

run: deps build
	@test/scripts/run-example.sh $(BIN) etc/nuthatch/example.hcl

bench: deps build
	$(GO) test -run '^$$' -bench . -benchmem ./pkg/...

# dist/nuthatch_<version>_<arch>.{deb,rpm} for amd64 and arm64, built by
# packaging/build.sh with nfpm (a Go tool pinned in go.mod). The version comes
# from git (packaging/version.sh) unless VERSION is given: make package VERSION=1.2.3
package:
	@GO="$(GO)" $(if $(filter command line environment,$(origin VERSION)),VERSION="$(VERSION)") packaging/build.sh dist

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean:
	rm -rf bin dist
