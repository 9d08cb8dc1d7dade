# ferry: build, test, demo, bench, lint.
# `make test` is the one command that proves the project works (.ci/run calls it).

GO        ?= go
TOOLS     := $(CURDIR)/.tools/bin
export PATH := $(TOOLS):$(PATH)

STATICCHECK_VERSION := v0.8.2
MINIO_VERSION       := v0.0.0-20260212201848-7aac2a2c5b7c
VERSITYGW_VERSION   := v1.8.0
RCLONE_VERSION      := v1.76.0
FAKEGCS_VERSION     := v1.56.1
# Azurite 3.35.0 is the last that runs on Node 20.
AZURITE_VERSION     := 3.35.0

TEST_TIMEOUT ?= 25m
# make test fuzzes every target for FUZZTIME (8 targets: about a minute in all);
# make fuzz-long for LONG_FUZZTIME each.
FUZZTIME     ?= 3s

.PHONY: all build test test-go lint vet fmt-check demo bench bench-quick fuzz-short fuzz-long fuzz-run tools postgres clean

all: build

# The version and commit certificates and --version name (the go command's own
# vcs.revision is missing under -buildvcs=false, so the commit is stamped too).
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD 2>/dev/null || echo +modified)
LDFLAGS := -X main.version=$(VERSION) -X github.com/ferrymigrate/ferry/migrate.Version=$(VERSION) -X github.com/ferrymigrate/ferry/migrate.Commit=$(COMMIT)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ferry ./cmd/ferry

# PostgreSQL: start it if it is not answering (the machine's command), then the tests.
postgres:
	@pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null || { \
		echo "starting PostgreSQL"; \
		pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; \
		for i in $$(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done; }

# Real servers for the integration tests, pinned, installed once into .tools/bin.
tools: $(TOOLS)/minio $(TOOLS)/versitygw $(TOOLS)/fake-gcs-server $(TOOLS)/azurite-blob

$(TOOLS)/minio:
	GOBIN=$(TOOLS) $(GO) install github.com/minio/minio@$(MINIO_VERSION)

$(TOOLS)/versitygw:
	GOBIN=$(TOOLS) $(GO) install github.com/versity/versitygw/cmd/versitygw@$(VERSITYGW_VERSION)

$(TOOLS)/fake-gcs-server:
	GOBIN=$(TOOLS) $(GO) install github.com/fsouza/fake-gcs-server@$(FAKEGCS_VERSION)

# Azurite from the npm registry into .tools/azurite; its blob service linked into .tools/bin.
$(TOOLS)/azurite-blob:
	mkdir -p $(TOOLS) $(CURDIR)/.tools/azurite
	npm install --no-audit --no-fund --prefix $(CURDIR)/.tools/azurite azurite@$(AZURITE_VERSION)
	ln -sf $(CURDIR)/.tools/azurite/node_modules/.bin/azurite-blob $@

$(TOOLS)/rclone:
	GOBIN=$(TOOLS) $(GO) install github.com/rclone/rclone@$(RCLONE_VERSION)

test: fmt-check vet tools postgres test-go fuzz-short

# Integration tests fail (never skip) when a server is missing.
test-go:
	FERRY_TOOLS=$(TOOLS) FERRY_REQUIRE_SERVERS=1 $(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./...

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

# ferry vs rclone vs a bare GET-then-PUT loop between two MinIO servers on loopback
# (table on stdout and in docs/benchmarks.md, about 4 min on 2 cores), then the Go
# benchmarks: pipeline records/s (with and without the journal of ferry's own access,
# and their ratio: BenchmarkPipelineJournalCost), checkpoint saves, a 1,000,000-record
# plan's RSS.
BENCH_FLAGS ?=
bench: tools postgres $(TOOLS)/rclone
	$(GO) run ./cmd/ferrybench -tools $(TOOLS) $(BENCH_FLAGS)
	# The PostgreSQL benchmarks among them fail, not skip, without the server.
	FERRY_REQUIRE_SERVERS=1 $(GO) test -run '^$$' -bench 'Pipeline' -benchtime 3x -timeout 60m ./migrate/
	FERRY_REQUIRE_SERVERS=1 $(GO) test -run '^$$' -bench . -benchmem -timeout 60m ./checkpoints/
	FERRY_REQUIRE_SERVERS=1 $(GO) test -run '^$$' -bench WorkersScaling -benchtime 1x -v -timeout 30m ./migrate/
	# GOGC=200 as the ferry binary runs its collector (cmd/ferry: gcPercent).
	GOGC=200 FERRY_BIG_PLAN=1000000 $(GO) test -run '^$$' -bench PlanMemory -benchtime 1x -timeout 60m ./migrate/

bench-quick: tools $(TOOLS)/rclone
	$(GO) run ./cmd/ferrybench -tools $(TOOLS) -small-records 500 -large-count 2 -large-size 32MiB -runs 1 -out ''

# Fuzz every parser of untrusted input (spec, manifest, certificate, proof, keys,
# file-site keys): briefly in make test (test-go already runs each seed corpus),
# longer with make fuzz-long. Only packages that hold a Fuzz target are listed.
FUZZ_PKGS = $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u)
LONG_FUZZTIME ?= 5m

fuzz-short:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_FOR=$(FUZZTIME)

fuzz-long:
	@$(MAKE) --no-print-directory fuzz-run FUZZ_FOR=$(LONG_FUZZTIME)

# A finding is saved under testdata/fuzz and fails at once; a run that failed without
# one (the fuzzing engine's workers lost under load) is tried once more.
fuzz-run:
	@for pkg in $(FUZZ_PKGS); do \
		for fn in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== fuzz $$pkg $$fn ($(FUZZ_FOR))"; \
			before=$$(ls $$pkg/testdata/fuzz/$$fn 2>/dev/null | wc -l); \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZ_FOR) $$pkg && continue; \
			[ "$$(ls $$pkg/testdata/fuzz/$$fn 2>/dev/null | wc -l)" = "$$before" ] || exit 1; \
			echo "== fuzz $$pkg $$fn failed without a finding: once more"; \
			$(GO) test -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZ_FOR) $$pkg || exit 1; \
		done; done

clean:
	rm -rf bin $(DEMO_DIR)
