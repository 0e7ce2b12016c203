# Every target works on all modules of the go.work workspace. From the
# repository root, which is no module itself, `./...` matches nothing in
# workspace mode, so the package patterns are derived from the modules go.work
# lists: one DIR/... per module. Narrow a run with, for example,
# `make test PKGS=./pkg/miniotest/...`.

GO ?= go
# Recursive (=) so go list runs only for the targets that use it.
MODULE_DIRS = $(shell $(GO) list -m -f '{{.Dir}}')
PKGS = $(addsuffix /...,$(MODULE_DIRS))

TEST_FLAGS ?= -race -count=1 -timeout 15m

.PHONY: run test fuzz test-mssql vet bench build fmt-check tools proto proto-check k8s-check k8s-schemas ui-vendor

## run: run coffer (every service in one process) with a simulated SQL Server
run: build
	bin/coffer up --demo

## test: vet, then run every test: unit and service tests with the race
## detector, then each fuzz target for FUZZTIME (make fuzz), then the long end-to-end tests without it, side by side
## (sixty days of a policy; fifty restores to random seconds of two days;
## a daylight-saving week; the fleet under SIGKILL chaos; two scheduler
## replicas, one killed mid-minute; every hostile database name of
## services/coffer/testdata/database-names.json, in both modes; 1,000
## single-byte flips in a vault; 3,000 backups raced against garbage
## collection; a backup across a 60-second outage of the object store)
test: tools proto-check vet k8s-check
	$(GO) test $(TEST_FLAGS) -short $(PKGS)
	$(MAKE) --no-print-directory fuzz
	$(GO) test -count=1 -timeout 25m -parallel 4 -run '^(TestSixtyDays|TestRandomPointsInTime|TestDaylightSavingWeek|TestFleetChaos|TestSchedulersTakeOver|TestHostileNames|TestThousandFlips|TestCollectRace|TestStoreOutage)$$' ./services/coffer/ ./services/scheduler/ ./pkg/vault/

# FUZZ lists the fuzz targets of the decoders of outside input, as
# package:Target; FUZZTIME is how long `make fuzz` runs each. Go fuzzes
# one target per package at a time, so they run one after another. A
# plain `go test` runs every target on its seed corpus only.
FUZZTIME ?= 3s
FUZZ = \
	./pkg/vault:FuzzSealedChunk ./pkg/vault:FuzzManifest ./pkg/vault:FuzzDecodeIndex \
	./pkg/vault:FuzzDecodeGeneration ./pkg/vault:FuzzKeyRecord \
	./pkg/bus:FuzzDecode \
	./pkg/catalog:FuzzSplitKey ./pkg/catalog:FuzzKeyRoundTrip \
	./pkg/mssqlsim/tds:FuzzReadMessage ./pkg/mssqlsim/tds:FuzzLogin ./pkg/mssqlsim/tds:FuzzRequest \
	./pkg/s3endpoint:FuzzHeaders ./pkg/s3endpoint:FuzzRequest \
	./pkg/policy:FuzzPolicy ./pkg/policy:FuzzParseDuration \
	./services/gateway:FuzzRequestBodies

## fuzz: run each fuzz target of FUZZ for FUZZTIME (default 3s); a
## failing input is written under the package's testdata/fuzz/, where
## it becomes a seed: commit it with the fix (scripts/fuzz.sh; it tries a
## target again when Go 1.26's fuzzer trips on its own deadline)
fuzz:
	@GO=$(GO) scripts/fuzz.sh $(FUZZTIME) $(FUZZ)

## test-mssql: the conformance suite against a real SQL Server: the
## portable end-to-end test (backup, chain healing, restores to random
## seconds checked by pkg/oracle) on the server COFFER_TEST_MSSQL_DSN names,
## and a restore onto COFFER_TEST_MSSQL_DSN2 when set. `docker compose
## --profile conformance up --exit-code-from conformance` runs it against
## SQL Server 2019 and 2022.
test-mssql:
	@if [ -z "$$COFFER_TEST_MSSQL_DSN" ]; then \
		echo "make test-mssql: set COFFER_TEST_MSSQL_DSN to a sysadmin login on a SQL Server, e.g." >&2; \
		echo "  COFFER_TEST_MSSQL_DSN='sqlserver://sa:PASSWORD@localhost:1433?encrypt=disable' make test-mssql" >&2; \
		echo "or run it against SQL Server 2019 and 2022 in containers:" >&2; \
		echo "  docker compose --profile conformance up --exit-code-from conformance" >&2; \
		exit 1; \
	fi
	$(GO) test -count=1 -timeout 20m -v -run '^TestPortableOracle$$/^external$$' ./services/coffer/

## vet: go vet every package
vet:
	$(GO) vet $(PKGS)

## bench: run every benchmark, no tests (BenchmarkBackup10GiB only
## with COFFER_BENCH_BIG=1: see README's Benchmarks)
bench:
	$(GO) test -run '^$$' -bench . -benchmem -timeout 60m $(PKGS)

## build: build the coffer command into bin/coffer
build:
	$(GO) build -o bin/coffer ./services/coffer

## fmt-check: fail, listing the files, if any Go file is not gofmt-formatted
fmt-check:
	@files="$$(gofmt -l $(MODULE_DIRS))"; \
	if [ -n "$$files" ]; then echo "not gofmt-formatted:"; echo "$$files"; exit 1; fi

## k8s-check: validate deploy/k8s (rendered by kustomize), its Secret
## templates and examples offline with kubeconform -strict against the
## schemas vendored in deploy/k8s/schemas, check that the manifests in
## deploy/k8s/testdata/invalid are rejected, and that every image in
## docker-compose.yml and deploy/k8s is pinned (scripts/check-k8s.sh)
k8s-check:
	scripts/check-k8s.sh

## k8s-schemas: regenerate deploy/k8s/schemas from the Kubernetes OpenAPI
## spec and KEDA's CRDs (module proxy; versions in scripts/k8s-schemas)
k8s-schemas:
	cd scripts/k8s-schemas && GOWORK=off $(GO) run . -out ../../deploy/k8s/schemas

## ui-vendor: re-fetch the dashboard's front-end libraries (Preact, htm)
## at the versions pinned in scripts/vendor-ui.sh from the npm registry
## into services/gateway/ui/vendor; the files are committed, so neither
## make run nor make test needs npm
ui-vendor:
	scripts/vendor-ui.sh

## tools: install the pinned external tools the tests need (MinIO, nats-server, tsql, protoc, protoc-gen-go, kubeconform, kustomize, Chromium)
tools:
	scripts/install-tools.sh

PROTOS = coffer/v1/types.proto coffer/v1/events.proto coffer/v1/auth.proto
PROTOC = protoc --proto_path=. --go_opt=module=github.com/cofferhq/coffer/proto

## proto: regenerate the Go code of the event contracts in proto/
proto:
	cd proto && $(PROTOC) --go_out=. $(PROTOS)

## proto-check: fail when the committed generated code is stale
proto-check:
	@tmp="$$(mktemp -d)"; trap 'rm -rf "$$tmp"' EXIT; \
	(cd proto && $(PROTOC) --go_out="$$tmp" $(PROTOS)) && \
	for f in $$(cd "$$tmp" && find . -name '*.pb.go'); do \
		cmp -s "$$tmp/$$f" "proto/$$f" || { echo "proto/$$f is stale: run make proto"; exit 1; }; \
	done
