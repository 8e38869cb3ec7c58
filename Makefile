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
	$(BIN)/kinesis-neuro datasets path moco-walk
	$(BIN)/kinesis-neuro emg events moco-walk/grf_walk.mot
	$(BIN)/kinesis-neuro emg process moco-walk --preset processed --events moco-walk/grf_walk.mot \
		--out $(OUT)/moco-walk_cycles.nc --plot $(OUT)/moco-walk_cycles.png
	$(BIN)/kinesis-neuro emg process musclesynergies --preset musclesynergies --events musclesynergies \
		--split 100,100 --out $(OUT)/musclesynergies_cycles.nc --plot $(OUT)/musclesynergies_cycles.png
	$(BIN)/kinesis-neuro motion check --motion moco-walk
	$(BIN)/kinesis-neuro simulate --controller static-opt --motion moco-walk --emg moco-walk --out $(OUT)/static-opt.nc
	$(BIN)/kinesis-neuro simulate --controller static-opt --motion moco-walk --periodic 4 --out $(OUT)/static-opt-periodic.nc
	$(BIN)/kinesis-neuro compare --recording $(OUT)/static-opt-periodic.nc --emg moco-walk --out $(OUT)/compare-moco-walk

test: setup
	KINESIS_NEURO_OFFLINE=1 $(BIN)/python -m pytest -n 2 -q

figures: setup
	$(BIN)/python -m kinesis_neuro.notebooks notebooks/*.ipynb --figures figures

clean:
	rm -rf $(VENV) $(OUT) .pytest_cache
