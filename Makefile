# Retain — the two commands are `make demo` and `make test`; both bootstrap .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev
export OPENBLAS_NUM_THREADS := 1
export PIP_DISABLE_PIP_VERSION_CHECK := 1

#: typed seams checked with mypy --strict (the rest of campaigns/ is checked with the default flags)
STRICT := recommender campaigns/store/protocols.py campaigns/kinds/base.py campaigns/senders/base.py \
	campaigns/senders/policy.py campaigns/status.py campaigns/leases.py campaigns/summary.py \
	campaigns/dispatch/base.py

.PHONY: demo test test-fast lint bench preview clean install tools

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

## tools: the npm packages the email checks run (axe-core, caniemail) into tools/node_modules, from the
## committed package-lock.json; needs Node >= 20.19 and npm (apt-get install nodejs npm)
tools: tools/node_modules/.installed
tools/node_modules/.installed: tools/package.json tools/package-lock.json
	cd tools && npm ci --no-audit --no-fund --loglevel=error
	touch $@

## demo: import the bundled Online Retail data into var/, report KPIs, train, evaluate, send to the outbox
demo: $(STAMP)
	$(BIN)/python -m campaigns.demo

## test: the whole suite (servers on 127.0.0.1 are used when present; RETAIN_REQUIRE_SERVICES=1 makes them mandatory)
test: $(STAMP)
	$(BIN)/python -m pytest -q

test-fast: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not browser"

lint: $(STAMP)
	$(BIN)/ruff check campaigns recommender scheduler.py tests bench
	$(BIN)/ruff format --check campaigns recommender scheduler.py tests bench
	$(BIN)/mypy campaigns recommender scheduler.py
	$(BIN)/mypy --strict $(STRICT)

## bench: every benchmark in bench/ (minutes; prints ratios against baselines measured in the same run)
bench: $(STAMP)
	$(BIN)/python -m bench

preview: $(STAMP)
	$(BIN)/retain preview

clean:
	rm -rf var/retain.db* var/outbox var/model
