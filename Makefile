# One-command set-up: `make run` (main job) and `make test` (test suite) work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real datasets: ../shared/datasets beside the clone unless KINESIS_NEURO_DATA points elsewhere.
export KINESIS_NEURO_DATA ?= $(abspath ../shared/datasets)
OUT ?= out

.PHONY: setup run test figures clean

setup: $(VENV)/.installed

# torch==2.13.0 first: it is the CPU wheel; any other torch requirement would pull a CUDA build.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

run: setup
	$(BIN)/kinesis-neuro datasets list
	$(BIN)/kinesis-neuro pipeline --policy policies/myolegs-walk --emg moco-walk --episodes 10 --out $(OUT)/main
	$(BIN)/kinesis-neuro pipeline --policy policies/myolegs-library --emg moco-walk --episodes 10 --out $(OUT)/main-library

test: setup
	KINESIS_NEURO_OFFLINE=1 $(BIN)/python -m pytest -n 2 -q

figures: setup
	$(BIN)/python -m kinesis_neuro.notebooks notebooks/*.ipynb --figures figures

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
