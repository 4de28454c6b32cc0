# `make demo` and `make test` set up .venv themselves; PYTHON picks the interpreter.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
DATA ?= data/demo
RUN ?= runs/demo

.PHONY: setup demo figures demo-cli test test-all docs clean

$(BIN)/aimonk: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -e ".[dev]"
	touch $@

setup: $(BIN)/aimonk

$(DATA)/labels.txt: | setup
	$(BIN)/aimonk demo --out $(DATA)

# The main job: the four numbered notebooks, headless, on the demo data (executed copies and figures in $(RUN)).
demo: setup $(DATA)/labels.txt
	$(BIN)/aimonk notebooks --data $(DATA) --out $(RUN) -p image_size 128 --overwrite

# The same run, refreshing the README's figures in figures/ (tracked files: for maintainers).
figures: setup $(DATA)/labels.txt
	$(BIN)/aimonk notebooks --data $(DATA) --out $(RUN) --figures figures -p image_size 128 --overwrite

# The same job from the command line, without notebooks.
demo-cli: setup $(DATA)/labels.txt
	$(BIN)/aimonk summary $(DATA)
	$(BIN)/aimonk train $(DATA) --out $(RUN)-cli --image-size 128 --overwrite
	$(BIN)/aimonk evaluate $(DATA) --model $(RUN)-cli/model.pt --out $(RUN)-cli --overwrite
	$(BIN)/aimonk predict $(DATA)/images --model $(RUN)-cli/model.pt --format csv > $(RUN)-cli/predictions.csv

# The fast tier: unit and small integration tests (tests/README.md says what only the slow tier checks).
test: setup
	$(BIN)/python -m pytest -m "not slow"

# Everything, the slow tier too (notebooks end to end, torchrun, chromium, a wheel, the README replay): what CI runs.
test-all: setup
	$(BIN)/python -m pytest

# The documentation site into site/ (open site/index.html), offline; warnings are errors. Its notebook pages are
# the executed notebooks of $(RUN) (make demo's run; AIMONK_DOCS_RUN=DIR names another), made first when missing.
DOCS_RUN ?= $(or $(AIMONK_DOCS_RUN),$(RUN))
docs: setup
	@test -f $(DOCS_RUN)/05_label.ipynb || $(MAKE) demo RUN=$(DOCS_RUN)
	AIMONK_DOCS_RUN=$(DOCS_RUN) NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

clean:
	rm -rf $(RUN) $(RUN)-cli $(DATA) site
