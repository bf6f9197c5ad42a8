# Myelin — run `make help` for the targets.
SHELL := /bin/bash
GO ?= go
BIN := bin/myelin
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.7.0
# go test timeout for the whole suite; CI budget is 30 minutes on 2 cores.
TEST_TIMEOUT ?= 20m
# goolm: mautrix-go's pure-Go Olm, so the end-to-end encryption tests run
# without libolm; without the tag they would be skipped.
TAGS := -tags goolm

.PHONY: help build run test unit lint ci conformance conformance-ci bench bench-smoke clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-16s %s\n", $$1, $$2}'

# The server is built static (CGO_ENABLED=0): nothing in it needs C
# (modernc.org/sqlite is pure Go), and without the dynamic loader and libc
# it runs on any Linux and idles in ~1.4 MB less memory.
build: ## build bin/myelin (static)
	CGO_ENABLED=0 $(GO) build -o $(BIN) ./cmd/myelin

run: build ## start the server on the default config (SQLite under ./data, client API on 127.0.0.1:8008)
	@echo "run: starting myelin with config.yaml (data in ./data); Ctrl-C stops it"
	./$(BIN) serve --config config.yaml

test: lint unit bench-smoke ## the whole test suite: lint, then every test on SQLite and PostgreSQL with -race

unit: ## go test -race ./... (installs PostgreSQL 15 from Debian if missing)
	@./scripts/ensure-postgres.sh
	@echo "test: go test -race on SQLite and PostgreSQL (throwaway clusters in temp dirs)"
	$(GO) test $(TAGS) -race -count=1 -timeout $(TEST_TIMEOUT) ./...

lint: ## gofmt, go vet, staticcheck
	@echo "lint: gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^conformance/') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	@echo "lint: go vet"
	$(GO) vet $(TAGS) ./...
	@echo "lint: staticcheck"
	$(GO) run $(STATICCHECK) $(TAGS) ./...

ci: test conformance-ci ## what CI runs (.ci/run)

bench: ## load tool against a fresh Myelin on SQLite and PostgreSQL + Go benchmarks; refreshes docs/performance.md (< 15 min; RUNS=1 for a quick run)
	@./scripts/bench.sh

bench-smoke: ## every Go benchmark once, so they keep compiling and running
	$(GO) test $(TAGS) -run='^$$' -bench=. -benchtime=1x ./...

conformance: ## Complement + matrix-js-sdk smoke against Myelin processes; rewrites docs/conformance*; fails on a regression
	conformance/run.sh run

conformance-ci: ## lint + unit tests of conformance/, then every test on the pass list; fails if one does not pass
	conformance/run.sh check
	conformance/run.sh ci

clean: ## remove build output (not ./data)
	rm -rf bin
