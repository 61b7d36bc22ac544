# ofrnn: every user-facing job is a target here. Settings live in experiments/*.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OFRNN  := $(BIN)/ofrnn
COHORT ?= data/phantom.h5
SEED   ?= 0
JOBS   ?= 2

.PHONY: install test data info constraints clean

install: $(BIN)/activate
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e '.[test]'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

test:
	$(BIN)/python -m pytest -q tests

# The default cohort (114 subjects, seed 0), built once; later jobs reuse it.
data: $(COHORT)
$(COHORT):
	$(OFRNN) simulate --subjects 114 --seed $(SEED) --jobs $(JOBS) --out $(COHORT)

info: $(COHORT)
	$(OFRNN) info $(COHORT)

constraints:
	$(BIN)/pip freeze --exclude-editable | sed '1i # Exact versions CI installs (pip install -c constraints.txt). Regenerate with `make constraints`.' > constraints.txt

clean:
	rm -rf results
