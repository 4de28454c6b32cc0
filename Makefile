# `make demo` and `make test` set up .venv themselves; PYTHON picks the interpreter.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/demo
RUN ?= runs/demo

.PHONY: setup demo test clean

$(BIN)/aimonk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(BIN)/aimonk

$(DATA)/labels.txt: | setup
	$(BIN)/aimonk demo --out $(DATA)

demo: setup $(DATA)/labels.txt
	$(BIN)/aimonk summary $(DATA)
	$(BIN)/aimonk train $(DATA) --out $(RUN) --image-size 128 --epochs 12
	$(BIN)/aimonk evaluate $(DATA) --model $(RUN)/model.pt --out $(RUN)
	$(BIN)/aimonk predict $(DATA)/images --model $(RUN)/model.pt --format csv > $(RUN)/predictions.csv
	@echo "predictions written to $(RUN)/predictions.csv"

test: setup
	$(BIN)/python -m pytest

clean:
	rm -rf $(RUN) $(DATA)
