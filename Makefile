# Two entry points: `make demo` (main job on the built-in synthetic data) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO_OUT ?= runs/demo
# 1: bit-identical demo runs (oneDNN off, ~1.6x slower MoCo); `make demo DETERMINISTIC=0` for speed.
DETERMINISTIC ?= 1

.PHONY: install demo test bench clean

$(STAMP): pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	ECG_MOCO_DETERMINISTIC=$(DETERMINISTIC) $(BIN)/ecg-moco reproduce --flagfile=flags/demo.flags \
		--out=$(DEMO_OUT)

test: $(STAMP)
	$(BIN)/python -m pytest -q -n 2 --durations=15

bench: $(STAMP)
	for b in benchmarks/bench_*.py; do $(BIN)/python $$b; done

clean:
	rm -rf $(VENV) runs *.egg-info
