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

# ---- OF-RNN training, cross-validation, benchmark (issue 5; settings: experiments/train.toml) ----
# make train FOLD=k PROFILE=quick|paper: train on nine folds, evaluate fold k -> results/train/fold<k>/
# make cv: every fold (finished folds are skipped, a killed fold resumes) + mean +- sd -> results/train/cv/
# make bench: inference seconds per subject by stage and training throughput -> results/bench/
FOLD    ?= 3
PROFILE ?= quick
.PHONY: train cv bench

train: $(COHORT)
	$(OFRNN) train --cohort $(COHORT) --fold $(FOLD) --profile $(PROFILE) --out results/train/fold$(FOLD)

cv: $(COHORT)
	$(OFRNN) train --cohort $(COHORT) --fold all --profile $(PROFILE) --out results/train

results/train/fold3/model.keras: | $(COHORT)
	$(OFRNN) train --cohort $(COHORT) --fold 3 --profile $(PROFILE) --out results/train/fold3

bench: results/train/fold3/model.keras
	$(OFRNN) bench --model results/train/fold3 --cohort $(COHORT) --threads 2 --out results/bench
# ---- end OF-RNN ----
