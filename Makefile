# Two commands do all set-up: `make run` and `make test`. Both bootstrap what they need.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
SYSDEPS := .sysdeps-stamp
# torch for the `generate` extra, installed before it: on these machines `torch==2.13.0` is the CPU wheel on disk
# (pip's find-links); an unpinned torch would pull a multi-GB CUDA build. GPU images: see deploy/Dockerfile.gpu.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test lint bench clean sysdeps install

$(SYSDEPS):
	@bash scripts/ensure-system-deps.sh
	@touch $(SYSDEPS)

sysdeps: $(SYSDEPS)

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip wheel

$(STAMP): pyproject.toml requirements-nodeps.txt | $(BIN)/python
	$(BIN)/pip install -q '$(TORCH_SPEC)'
	$(BIN)/pip install -q -e '.[dev,generate]'
	$(BIN)/pip install -q --no-deps -r requirements-nodeps.txt
	@touch $(STAMP)

install: $(SYSDEPS) $(STAMP)

run: install
	$(BIN)/reelforge serve

# lint: style (ruff), types (mypy, [tool.mypy]) and layering (import-linter, [tool.importlinter])
lint: install
	$(BIN)/ruff check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

test: lint
	$(BIN)/python -m pytest -q

bench: install
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(SYSDEPS) data .pytest_cache
