# ferry: build, test, demo, bench, lint.
# `make test` is the one command that proves the project works (.ci/run calls it).

GO        ?= go
TOOLS     := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

STATICCHECK_VERSION := 2025.1.1
MINIO_VERSION       := v0.0.0-20260212201848-7aac2a2c5b7c
VERSITYGW_VERSION   := v1.8.0
RCLONE_VERSION      := v1.76.0

TEST_TIMEOUT ?= 25m
FUZZTIME     ?= 10s

.PHONY: all build test test-go lint vet fmt-check demo bench fuzz fuzz-long tools postgres clean

all: build

build:
	$(GO) build -o bin/ferry ./cmd/ferry

# PostgreSQL: start it if it is not answering (the machine's command), then the tests.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

test: fmt-check vet test-go

test-go:
	$(GO) test -race -timeout $(TEST_TIMEOUT) ./...

vet:
	$(GO) vet ./...

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go' -not -path './.tools/*')); \
	if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

lint: fmt-check vet $(TOOLS)/staticcheck
	$(TOOLS)/staticcheck ./...

$(TOOLS)/staticcheck:
	GOBIN=$(TOOLS) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

# The main job on the embedded default: generated local sites, SQLite state.
DEMO_DIR ?= ferry-demo
demo:
	rm -rf $(DEMO_DIR)
	$(GO) run ./cmd/ferry demo $(DEMO_DIR)

# Benchmarks: pipeline records/s on SQLite with in-memory stores, hot paths, and the
# RSS of a 1,000,000-record plan.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 1x -timeout 60m ./migrate/ ./checkpoints/
	FERRY_BIG_PLAN=1000000 $(GO) test -run TestPlanMemory -v -timeout 60m ./migrate/

# Fuzz every parser of untrusted input for longer than make test does.
FUZZ_TARGETS := ./migrate/spec:FuzzParse
fuzz-long:
	@for t in $$($(GO) test -list 'Fuzz.*' ./... | grep -E '^(Fuzz|ok)' | awk '/^ok/{pkg=$$2} /^Fuzz/{print pkg":"$$1}'); do \
		pkg=$${t%%:*}; fn=$${t##*:}; echo "== $$pkg $$fn"; \
		$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(or $(LONG_FUZZTIME),5m) $$pkg || exit 1; done

clean:
	rm -rf bin $(DEMO_DIR)
