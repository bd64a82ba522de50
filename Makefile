# Everything a developer or CI runs. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
CARGO ?= cargo
VENV := .venv
TOOLS_VENV := .venv-tools
BUILD_VENV := .venv-build
# The pinned SAM CLI (tools/requirements-tools.txt); no telemetry calls.
SAM := SAM_CLI_TELEMETRY=0 $(CURDIR)/$(TOOLS_VENV)/bin/sam
EVENT ?= events/rotation-create-secret.json
FUNCTION ?= rotate-postgres

.PHONY: help demo test test-majors compat-table postgres-majors unit lint fmt build invoke invoke-local sam-invoke sam-build deploy bench clean venv tools-venv build-venv
.PHONY: build-RotationFunction build-BackupFunction build-BackupDrillFunction

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 18

demo: venv postgres-majors ## Rotate and back up a secret locally (PostgreSQL + moto + the real Lambda binaries)
	$(CARGO) run --quiet -p demo

test: venv tools-venv postgres-majors build-venv ## Every test: unit, end to end (real PostgreSQL, moto, Lambda binaries, the arm64 artifact), every major, cfn-lint, sam validate
	tools/run-tests
	$(PYTHON) tools/compat-table --check README.md
	$(TOOLS_VENV)/bin/cfn-lint template.yaml vault-source-roles.yaml spoke-role.yaml
	@echo "cfn-lint: template.yaml, vault-source-roles.yaml and spoke-role.yaml clean"
	$(SAM) validate --lint
	$(SAM) validate --lint --template vault-source-roles.yaml
	$(SAM) validate --lint --template spoke-role.yaml

# tools/run-tests orders the whole suite for a 2-core machine: the arm64 release build (`make
# build`) in the background at a lower priority while the debug build and the tests run, the whole
# suite on the newest major (18), the rotation suites and the compatibility matrix on the others
# two majors at a time, then the artifact's tests (tests/arm64_artifact.rs) once it is built.
test-majors: venv postgres-majors ## Rotation end-to-end suites and the compatibility matrix on PostgreSQL 13-17
	tools/run-tests majors

compat-table: ## Rewrite the README's compatibility table from the last test records (target/compat)
	$(PYTHON) tools/compat-table --write README.md

postgres-majors: ## Fetch the pinned PostgreSQL 13-18 server binaries into .cache/postgres (once)
	$(PYTHON) tools/fetch-postgres

unit: ## Fast unit tests only (no PostgreSQL, no moto)
	$(CARGO) test --workspace --lib

lint: tools-venv ## rustfmt check, clippy -D warnings, cfn-lint, sam validate --lint (every template)
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(TOOLS_VENV)/bin/cfn-lint template.yaml vault-source-roles.yaml spoke-role.yaml
	$(SAM) validate --lint
	$(SAM) validate --lint --template vault-source-roles.yaml
	$(SAM) validate --lint --template spoke-role.yaml

fmt: ## Format the code
	$(CARGO) fmt --all

# `-p`: the features of the shipped packages only (not the test crate's fail points and in-memory
# adapters, which every debug build at the workspace root unifies in).
build: build-venv ## Release build for Lambda (arm64, cargo-lambda + zig, no Docker)
	PATH="$(CURDIR)/$(BUILD_VENV)/bin:$$PATH" $(CARGO) lambda build --release --arm64 -p rotate-postgres -p backup --bin rotate-postgres --bin backup-lambda
	@ls -l target/lambda/*/bootstrap

invoke: venv ## Docker-free local invoke: make invoke EVENT=events/x.json [FUNCTION=rotate-postgres]
	$(CARGO) run --quiet -p testkit --bin lambda-invoke -- --bin $(FUNCTION) --event $(EVENT)

# EVENT may name several files, run in order against one stack: EVENT="events/a.json events/b.json".
invoke-local: venv postgres-majors ## No AWS account: the rotation function on EVENT against local PostgreSQL + moto (the demo's stack)
	$(CARGO) build --quiet --bin rotate-postgres
	$(CARGO) run --quiet -p demo --bin invoke-local -- $(foreach e,$(EVENT),--event $(e))

sam-build: build tools-venv ## make build, then sam build: SAM packages exactly make build's bootstraps (samconfig.toml)
	$(SAM) build

# SAM's makefile build method (template.yaml: BuildMethod: makefile) runs build-<LogicalId> for
# each function, in the source folder (samconfig.toml: build_in_source) with ARTIFACTS_DIR set
# to the function's folder under .aws-sam/build. They copy `make build`'s bootstraps unchanged:
# what tests/arm64_artifact.rs ran is what SAM packages (it checks the copies byte for byte).
LAMBDA_BOOTSTRAP = @test -f target/lambda/$(1)/bootstrap || { echo "target/lambda/$(1)/bootstrap is missing: run make build (make sam-build does)" >&2; exit 1; }; \
	cp target/lambda/$(1)/bootstrap "$(ARTIFACTS_DIR)/bootstrap"
build-RotationFunction:
	$(call LAMBDA_BOOTSTRAP,rotate-postgres)
build-BackupFunction build-BackupDrillFunction:
	$(call LAMBDA_BOOTSTRAP,backup-lambda)

sam-invoke: sam-build ## sam local invoke with an event (needs Docker)
	$(SAM) local invoke RotationFunction -e $(EVENT)

deploy: sam-build ## sam deploy --guided (needs AWS credentials)
	$(SAM) deploy --guided

bench: venv ## Benchmarks: cold init, peak RSS, calls per rotation, artifact size, application load during rotations (BENCH_PART=cold-rotation|load: one part; BENCH_PART=scale: backup at 1k/10k/100k secrets against the quota emulator)
	$(CARGO) run --quiet -p demo --bin bench

clean: ## Remove build output and virtualenvs
	$(CARGO) clean
	rm -rf $(VENV) $(TOOLS_VENV) $(BUILD_VENV) .aws-sam

venv: $(VENV)/.installed

$(VENV)/.installed: tools/requirements-test.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-test.txt
	touch $@

tools-venv: $(TOOLS_VENV)/.installed

$(TOOLS_VENV)/.installed: tools/requirements-tools.txt
	$(PYTHON) -m venv $(TOOLS_VENV)
	$(TOOLS_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-tools.txt
	touch $@

build-venv: $(BUILD_VENV)/.installed

$(BUILD_VENV)/.installed: tools/requirements-build.txt
	$(PYTHON) -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-build.txt
	rustup target add aarch64-unknown-linux-gnu
	touch $@
