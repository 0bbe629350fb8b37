# ml-app: the two commands a newcomer needs are `make run` and `make test`.
# Both set everything up on a fresh machine (a .venv beside this file) and are fast the
# second time: the venv is rebuilt only when a requirements file changes.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
MODEL_URI ?= model/artifacts/digits/1
STAMP := $(VENV)/.installed
REQS := requirements.txt requirements-dev.txt requirements-policy.txt app/requirements.txt

.PHONY: setup run test test-fast lint snapshot bench bench-image bench-targets train release clean help

help:
	@echo "make run          serve MODEL_URI (digits/1; several: MODEL_URI=a,b) at http://127.0.0.1:$(PORT)"
	@echo "make test         set up and run every test (container tests need Docker, browser tests Chromium)"
	@echo "make test-fast    the tests without containers and the slow ones"
	@echo "make setup        only build .venv (run and test do it themselves)"
	@echo "make clean        remove .venv, caches, benchmark results and test screenshots"
	@echo "make lint         hadolint on the Dockerfile"
	@echo "make snapshot     regenerate tests/infra/snapshots (the offline preview diff)"
	@echo "make bench        serving benchmark: ours vs the fronts it was chosen over, FastAPI, KServe"
	@echo "                  and a Keras baseline; draws docs/figures/serving-*.svg"
	@echo "make bench-image  image benchmark: ours vs a seed-style image; draws docs/figures/image.svg"
	@echo "make bench-targets  the image's cold start per target: ECS, SageMaker serve, Lambda"
	@echo "make train        train the digits model and release it (VERSION=N, default: next)"
	@echo "make release      release any Keras model: MODEL=<.keras|.h5|SavedModel dir> NAME=<name>"
	@echo "                  [VERSION=N] INPUT_MIN=.. INPUT_MAX=.. [SAMPLE=file] [LABELS=a,b,..] [ARGS=..]"
	@echo "make preview      pulumi preview --diff of STACK=dev|staging|prod (output kept in a file)"
	@echo "make deploy       pulumi up of STACK (what the pipeline's Deploy stage runs)"
	@echo "make smoke        smoke-test STACK's deployment on its target (or URL=...): readiness,"
	@echo "                  each deployed model's manifest, a prediction from each"
	@echo "make check-approval  (Deploy stage) was STACK's approval given by one of its approvers?"
	@echo "make promote      (Deploy stage) publish the deployed revision to the next stack's pipeline"
	@echo "make pulumi-cli   install the pinned Pulumi CLI (PULUMI_VERSION) unless it is on PATH"
	@echo "make chromium     a Chromium for the browser tests where Debian's is not at hand"

setup: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-policy.txt
	@touch $@

run: $(STAMP)
	@echo "Serving $(MODEL_URI) at http://127.0.0.1:$(PORT)  (Ctrl-C stops)"
	MODEL_URI=$(MODEL_URI) BIND=127.0.0.1:$(PORT) SERVER_FRONT=$${SERVER_FRONT:-auto} $(PY) -m app.server

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not container and not slow"

lint: $(STAMP)
	$(VENV)/bin/hadolint Dockerfile

train: $(STAMP)
	$(PY) -m model.train $(if $(VERSION),--version "$(VERSION)") $(ARGS)

# NAME counts only from the command line: some shells (WSL) export NAME as the host name.
RELEASE_NAME = $(if $(filter command line,$(origin NAME)),$(NAME))
release: $(STAMP)
	@if [ -z "$(MODEL)" ] || [ -z "$(RELEASE_NAME)" ]; then \
	  echo "usage: make release MODEL=<model.keras|model.h5|SavedModel dir> NAME=<name> [VERSION=N]" >&2; \
	  echo "         INPUT_MIN=<number> INPUT_MAX=<number> [SAMPLE=<.npy|.json|.csv>] [LABELS=a,b,...]" >&2; \
	  echo "         [ARGS='<more flags: $(PY) -m model.release --help>']   (docs/model.md)" >&2; \
	  exit 2; fi
	$(PY) -m model.release "$(MODEL)" --name "$(RELEASE_NAME)" $(if $(VERSION),--version "$(VERSION)") \
	  $(if $(INPUT_MIN),--input-min="$(INPUT_MIN)") $(if $(INPUT_MAX),--input-max="$(INPUT_MAX)") \
	  $(if $(SAMPLE),--sample "$(SAMPLE)") $(if $(LABELS),--labels "$(LABELS)") $(ARGS)

# Progress on stderr, the table and a one-line summary on stdout; the JSON goes to
# bench/results/ and the figures of docs/performance.md are drawn from it (bench/report.py).
bench: $(STAMP)
	$(PY) bench/serving.py

# The offline preview: re-render tests/infra/snapshots/<stack>.txt from the Pulumi program
# under mocks (no AWS, no pulumi CLI). Commit the result; test_snapshot.py compares.
snapshot: $(STAMP)
	$(PY) -m tests.infra.snapshot

# Our image vs bench/seed.Dockerfile (size, cold build, code-only rebuild, cold start, req/s).
# On CI-style hosts ../shared/tools/docker-env.sh provides the engine; elsewhere your Docker.
bench-image: $(STAMP)
	@if [ -f ../shared/tools/docker-env.sh ]; then eval "$$(bash ../shared/tools/docker-env.sh)"; fi; \
	$(PY) bench/image.py

# The image started as ECS, SageMaker (`serve`) and Lambda (awslambdaric + a fake Runtime API)
# start it: cold start to first answer per target (bench/targets.py; bench-image runs it too).
bench-targets: $(STAMP)
	@if [ -f ../shared/tools/docker-env.sh ]; then eval "$$(bash ../shared/tools/docker-env.sh)"; fi; \
	$(PY) bench/targets.py

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.json test-results

# --- Deploy pipeline (docs/pipeline.md) ------------------------------------------------------
# Called by ci/buildspecs/*.yml in CodeBuild and usable by hand. STACK is dev, staging or prod.
# The Pulumi backend comes from the environment: PULUMI_ACCESS_TOKEN (Pulumi Cloud) or
# PULUMI_BACKEND_URL=s3://<bucket>?region=<region> (self-managed S3 backend).
STACK ?=
PULUMI_VERSION ?= 3.272.0
PULUMI ?= $(shell command -v pulumi 2>/dev/null || echo $(HOME)/.pulumi/bin/pulumi)
PREVIEW_OUT ?= preview-$(STACK).txt
# Stack outputs the smoke test reads (infra/__main__ exports them)
SMOKE_URL_OUTPUT ?= serviceUrl
SMOKE_API_KEY_OUTPUT ?= apiKeySecretName
URL ?=

.PHONY: check-stack pulumi-cli preview deploy smoke check-approval promote chromium
# The pipeline of the stack (infra/pipeline.py names it after the stack).
PIPELINE_NAME ?= ml-app-$(STACK)

check-stack:
	@case "$(STACK)" in dev|staging|prod) ;; \
	  *) echo "STACK must be dev, staging or prod (got '$(STACK)'): make $(MAKECMDGOALS) STACK=dev" >&2; exit 2;; esac

# Installs the pinned Pulumi CLI into ~/.pulumi unless that version is already on PATH.
pulumi-cli:
	@if [ -x "$(PULUMI)" ] && [ "$$($(PULUMI) version)" = "v$(PULUMI_VERSION)" ]; then \
	  echo "pulumi v$(PULUMI_VERSION) present"; \
	else curl -fsSL https://get.pulumi.com | sh -s -- --version $(PULUMI_VERSION); fi

# `pulumi preview --diff`: the log shows it and $(PREVIEW_OUT) keeps it (a pipeline artifact).
preview: check-stack
	$(PULUMI) install
	set -o pipefail; $(PULUMI) preview --stack $(STACK) --diff --non-interactive 2>&1 | tee $(PREVIEW_OUT)

deploy: check-stack
	$(PULUMI) install
	$(PULUMI) up --yes --stack $(STACK) --diff --non-interactive

# The smoke test of the stack's target (ci/smoke.py), bounded retries. URL=... to test any
# ECS-style deployment; otherwise the stack's outputs say where and what to check: on ECS
# the service URL and API key, and that ECS runs the task definition this deploy made; on
# SageMaker that the endpoint runs the configuration this deploy made, then InvokeEndpoint
# (JSON and CSV, and each model); on Lambda that the live alias points at the version this deploy published,
# then the Function URL with SigV4. The models output too: on ECS and Lambda the service
# serves exactly those versions, each one's manifest, and a prediction from each; on
# SageMaker each version is invoked by CustomAttributes and its answer must name it and its
# pinned manifest. A stack deployed before `target` existed is ECS.
# SageMaker and Lambda need botocore: the program's venv (`pulumi install` made it) has it.
SMOKE_PYTHON ?= $(if $(wildcard $(PY)),$(PY),$(PYTHON))
smoke:
	@url="$(URL)"; target=ecs; \
	if [ -z "$$url" ]; then \
	  case "$(STACK)" in dev|staging|prod) ;; *) echo "smoke: pass URL=... or STACK=dev|staging|prod" >&2; exit 2;; esac; \
	  out() { $(PULUMI) stack output "$$1" --stack $(STACK); }; \
	  target="$$(out target 2>/dev/null)" || target=ecs; target="$${target:-ecs}"; \
	  SMOKE_MODELS="$$(out models)" || exit 1; \
	  export SMOKE_MODELS; \
	  case "$$target" in \
	    sagemaker) \
	      url="$$(out invocationUrl)" && SMOKE_ENDPOINT="$$(out endpointName)" \
	        && SMOKE_ENDPOINT_CONFIG="$$(out endpointConfigName)" || exit 1; \
	      export SMOKE_ENDPOINT SMOKE_ENDPOINT_CONFIG;; \
	    lambda) \
	      url="$$(out serviceUrl)" && SMOKE_FUNCTION="$$(out functionName)" \
	        && SMOKE_FUNCTION_VERSION="$$(out functionVersion)" || exit 1; \
	      export SMOKE_FUNCTION SMOKE_FUNCTION_VERSION;; \
	    *) \
	      url="$$(out $(SMOKE_URL_OUTPUT))" || exit 1; \
	      SMOKE_ECS_CLUSTER="$$(out clusterName)" && SMOKE_ECS_SERVICE="$$(out serviceName)" || exit 1; \
	      SMOKE_TASK_DEFINITION="$$(out taskDefinitionArn)" || exit 1; \
	      export SMOKE_ECS_CLUSTER SMOKE_ECS_SERVICE SMOKE_TASK_DEFINITION; \
	      secret="$$(out $(SMOKE_API_KEY_OUTPUT) 2>/dev/null || true)"; \
	      if [ -z "$${API_KEY:-}" ] && [ -n "$$secret" ]; then \
	        API_KEY="$$(aws secretsmanager get-secret-value --secret-id "$$secret" --query SecretString --output text)" || exit 1; \
	        export API_KEY; \
	      fi;; \
	  esac; \
	fi; \
	$(SMOKE_PYTHON) ci/smoke.py --target "$$target" --url "$$url"

# Before a deploy that had an approval: was it given by one of the stack's approvers?
# (ci/approval.py; APPROVERS and PIPELINE_EXECUTION_ID come from the Deploy stage.)
check-approval: check-stack
	@if [ -z "$${APPROVERS:-}" ]; then echo "check-approval: $(STACK) has no approval stage"; \
	else $(PYTHON) ci/approval.py --pipeline "$(PIPELINE_NAME)"; fi

# After a deploy and its smoke test: publish the deployed revision to the next stack's
# pipeline (ci/promote.py; PROMOTE_TO comes from the Deploy stage, empty: nothing to do).
promote: check-stack
	$(PYTHON) ci/promote.py

# A Chromium for the browser tests where Debian's is not at hand (ci/install-chromium.sh):
# GitHub's runners and the pipeline's Test stage; set CHROMIUM to where it must be.
chromium:
	bash ci/install-chromium.sh
