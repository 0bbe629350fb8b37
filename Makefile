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

.PHONY: setup run test test-fast lint snapshot bench bench-image train clean help

help:
	@echo "make run          serve the default model version at http://127.0.0.1:$(PORT)"
	@echo "make test         set up and run every test (container tests need Docker)"
	@echo "make lint         hadolint on the Dockerfile"
	@echo "make snapshot     regenerate tests/infra/snapshots (the offline preview diff)"
	@echo "make bench        serving benchmark: ours vs a Keras baseline"
	@echo "make bench-image  image benchmark: ours vs a seed-style image"
	@echo "make train        train a new model version (VERSION=N)"

setup: $(STAMP)

$(STAMP): $(REQS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip==26.3
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-policy.txt
	@touch $@

run: $(STAMP)
	@echo "Serving $(MODEL_URI) at http://127.0.0.1:$(PORT)  (Ctrl-C stops)"
	MODEL_URI=$(MODEL_URI) BIND=127.0.0.1:$(PORT) $(VENV)/bin/gunicorn -c app/gunicorn_conf.py app.wsgi:app

test: $(STAMP)
	$(PY) -m pytest

test-fast: $(STAMP)
	$(PY) -m pytest -m "not container and not slow"

lint: $(STAMP)
	$(VENV)/bin/hadolint Dockerfile

train: $(STAMP)
	$(PY) -m model.train --version $(VERSION)

bench: $(STAMP)
	$(PY) bench/serving.py

clean:
	rm -rf $(VENV) .pytest_cache bench/results/*.json
