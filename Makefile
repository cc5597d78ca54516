# Parley's developer entry points. `make up` runs the constellation; `make test` runs every
# test (unit, component, end-to-end) with the race detector.
SHELL := /bin/bash
.DEFAULT_GOAL := help

BIN     := $(CURDIR)/.bin
export PATH := $(BIN):$(PATH)
# Every Go module of the workspace shares this prefix, so one pattern tests them all.
PKGS    := github.com/parleyhq/parley/...
MODULES := gen libs services/router services/pii-scrubber services/cache services/provider-worker services/audit cli integration deploy tilt examples
# Modules outside the workspace, so that their heavy dependencies stay out of the services'
# build: the alert-rule and dashboard tests use Prometheus's PromQL engine.
STANDALONE := deploy/monitoring/rulestest

.PHONY: help
help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

.PHONY: up
up: ## run the whole constellation locally (Ctrl-C stops it); WORKERS=echo=2,... adds workers per component; COMPONENTS=dir loads another folder; NATS_NODES=3 runs NATS as a cluster; TRACES=1 prints each trace
	go build -o $(BIN)/parley-up ./integration/cmd/parley-up
	$(BIN)/parley-up -workers '$(WORKERS)' -nats-nodes '$(or $(NATS_NODES),1)' $(if $(COMPONENTS),-components '$(COMPONENTS)') $(if $(TRACES),-traces)

.PHONY: install
install: ## install the parley command line into GOBIN (default: $(go env GOPATH)/bin)
	cd cli && GOWORK=off go install ./cmd/parley
	@bin=$$(go env GOBIN); echo "installed $${bin:-$$(go env GOPATH)/bin}/parley"

.PHONY: test
test: ## run every test with -race (starts what the tests need)
	go build -o $(BIN)/parley-test ./integration/cmd/parley-test
	$(BIN)/parley-test -race -count=1 -timeout 15m $(PKGS)
	$(MAKE) test-allocations
	$(MAKE) test-monitoring

.PHONY: test-allocations
test-allocations: ## the tests that count allocations, without -race (its sync.Pool drops values at random)
	go test -count=1 -run 'TestScrubAllocations|TestScrubLinearWork' ./services/pii-scrubber/internal/scrub/
	go test -count=1 -run 'TestTracingOffAllocations' ./libs/telemetry/

.PHONY: test-monitoring
test-monitoring: ## evaluate the alert rules over synthetic series; check the rules and the dashboard against the metrics contract
	cd deploy/monitoring/rulestest && GOWORK=off go test -count=1 ./...

.PHONY: test-short
test-short: ## unit tests only: nothing external
	go test -short -race -count=1 $(PKGS)

.PHONY: test-modules
test-modules: ## test each module alone (GOWORK=off), as its own go.sum resolves it
	@for m in $(MODULES) $(STANDALONE); do echo "== $$m"; (cd $$m && GOWORK=off go test -short -count=1 ./...) || exit 1; done

.PHONY: bench
bench: ## measure each path against the one-hop floor (BENCH_FLAGS, e.g. -paths miss,hit -duration 2s)
	go build -o $(BIN)/parley-bench ./integration/cmd/parley-bench
	$(BIN)/parley-bench $(BENCH_FLAGS)

$(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go: tools/go.mod tools/go.sum
	cd tools && GOWORK=off go build -o $(BIN)/ github.com/bufbuild/buf/cmd/buf google.golang.org/protobuf/cmd/protoc-gen-go connectrpc.com/connect/cmd/protoc-gen-connect-go

$(BIN)/golangci-lint: tools/golangci/go.mod tools/golangci/go.sum
	cd tools/golangci && GOWORK=off go build -o $(BIN)/ github.com/golangci/golangci-lint/v2/cmd/golangci-lint

$(BIN)/grpcurl: tools/grpcurl/go.mod tools/grpcurl/go.sum
	cd tools/grpcurl && GOWORK=off go build -o $(BIN)/ github.com/fullstorydev/grpcurl/cmd/grpcurl

.PHONY: tools
tools: $(BIN)/buf $(BIN)/protoc-gen-go $(BIN)/protoc-gen-connect-go ## build buf and the protoc plugins into .bin

.PHONY: generate
generate: tools ## regenerate gen/ from proto/ with local plugins
	buf lint
	buf generate

.PHONY: check-generated
check-generated: generate console ## fail when gen/ or the console's build differs from what buf and npm make
	@git add -N gen >/dev/null 2>&1 || true
	@if ! git diff --quiet -- gen; then echo "gen/ is stale: run make generate and commit"; git diff --stat -- gen; exit 1; fi
	@if [ -n "$$(git status --porcelain -- $(CONSOLE))" ]; then echo "the console's build is stale: run make console and commit"; git status --short -- $(CONSOLE); exit 1; fi
	@echo "gen/ and the console's build are current"

# The web console: TypeScript sources in $(CONSOLE)/web, the committed build in $(CONSOLE)/dist
# (embedded in the router, so make up needs no Node). Node and npm rebuild it.
CONSOLE := services/router/internal/console

.PHONY: console
console: tools ## rebuild the web console: npm ci, buf generate for TypeScript, type check and build into dist/
	cd $(CONSOLE)/web && npm ci --no-audit --no-fund --ignore-scripts
	buf generate --template buf.gen.console.yaml
	cd $(CONSOLE)/web && npm run --silent build

.PHONY: fmt-check
fmt-check: ## fail on unformatted Go files
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "not gofmt-ed:"; echo "$$out"; exit 1; fi

.PHONY: vet
vet: ## go vet every module
	go vet $(PKGS)

.PHONY: lint
lint: fmt-check vet tools $(BIN)/golangci-lint ## gofmt, go vet, buf lint and golangci-lint
	buf lint
	golangci-lint run $(addsuffix /...,$(addprefix ./,$(filter-out gen,$(MODULES))))
	golangci-lint run -c .golangci.gen.yml ./gen/...

.PHONY: tidy
tidy: ## go mod tidy every module, then sync the workspace
	@for m in $(MODULES) $(STANDALONE); do (cd $$m && GOWORK=off go mod tidy) || exit 1; done
	go work sync

.PHONY: clean
clean: ## remove built tools and local data (.bin, .data)
	rm -rf .bin .data
