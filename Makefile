# Two commands on a fresh machine: `make run` (service on :8080 with the
# bundled demo model and plans) and `make test` (the whole suite). Every other
# Python command runs in the same venv: .venv/bin/python ... (`make venv` builds
# it without starting the service).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PORT ?= 8080
HOST ?= 127.0.0.1

# Demo data (README "换成真实模型和培养方案"): a grade export to try the CLI or
# the console with, and the bundled plans and model regenerated.
YEAR ?= 2024
STUDENTS ?= 200
OUT ?= demo_grades_$(YEAR).xlsx

.PHONY: venv run test lint bench bench-api demo-grades demo-plans demo-model system-deps clean

$(VENV)/.runtime: requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

$(VENV)/.dev: $(VENV)/.runtime requirements-dev.txt
	$(PY) -m pip install -q -r requirements-dev.txt
	touch $@

venv: $(VENV)/.runtime

run: $(VENV)/.runtime
	$(PY) async_api_server.py --port $(PORT) --host $(HOST)

lint: $(VENV)/.dev
	$(PY) -m ruff check .

test: $(VENV)/.dev
	$(PY) -m ruff check .
	$(PY) -m pytest -q -ra

bench: $(VENV)/.runtime
	$(PY) -m destination_predictor.bench

bench-api: $(VENV)/.runtime
	$(PY) scripts/bench_api.py

demo-grades: $(VENV)/.runtime
	$(PY) -m destination_predictor.demo.grades --year $(YEAR) --students $(STUDENTS) --out $(OUT)

demo-plans: $(VENV)/.runtime
	$(PY) -m destination_predictor.demo.curricula --out plans

demo-model: $(VENV)/.runtime
	$(PY) -m destination_predictor.demo.model --out models --seed 0

# Debian packages the real-process tests use (browser, database, SSH).
system-deps:
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		chromium fonts-wqy-microhei postgresql openssh-server openssh-client rsync nginx redis-server >/dev/null

clean:
	rm -rf $(VENV) bench-out test-artifacts .pytest_cache .ruff_cache
