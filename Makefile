# ofrnn: every user-facing job is a target here. Settings live in experiments/*.toml.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
OFRNN  := $(BIN)/ofrnn
COHORT ?= data/phantom.h5
SEED   ?= 0
JOBS   ?= 2

.PHONY: install test data data-extra info constraints clean

install: $(BIN)/activate
	$(BIN)/pip install --upgrade pip
	$(BIN)/pip install -c constraints.txt -e '.[test]'

$(BIN)/activate:
	$(PYTHON) -m venv $(VENV)

test:
	$(BIN)/python -m pytest -q tests

# The default cohort (114 subjects, seed 0), built once; later jobs reuse it. It is rebuilt when
# the simulator changes, so no job runs on a cohort the code would no longer produce.
data: $(COHORT)
$(COHORT): $(wildcard ofrnn/simulate/*.py)
	$(OFRNN) simulate --subjects 114 --seed $(SEED) --jobs $(JOBS) --out $(COHORT)

# Beyond the paper (issue 10): more simulated subjects for training only (`extra_training_cohort` of
# experiments/train.toml, the more-subjects profiles): twice the default cohort's size,
# another seed. The profiles name this path, so it is fixed here.
EXTRA_COHORT := data/phantom-extra.h5
data-extra: $(EXTRA_COHORT)
$(EXTRA_COHORT): $(wildcard ofrnn/simulate/*.py)
	$(OFRNN) simulate --subjects 228 --seed 2026 --jobs $(JOBS) --out $(EXTRA_COHORT)

info: $(COHORT)
	$(OFRNN) info $(COHORT)

constraints:
	$(BIN)/pip freeze --exclude-editable | sed '1i # Exact versions CI installs (pip install -c constraints.txt). Regenerate with `make constraints`.' > constraints.txt

clean:
	rm -rf results

# ---- OF-RNN training, cross-validation, benchmark (issue 5; settings: experiments/train.toml) ----
# make train FOLD=k PROFILE=quick|paper|cnn|...: train on nine folds (profiles: experiments/train.toml), evaluate
#   fold k -> results/train/fold<k>/ (PROFILE=paper -> results/train-paper/fold<k>/, and so on; the
#   more-subjects profiles, beyond the paper, also train on data/phantom-extra.h5, made first)
# make cv: every fold (finished folds are skipped, a killed fold resumes) + mean +- sd -> results/train/cv/
# make train-holdout: the paper's segment-level split (2/3 train, 1/3 test) -> results/train/holdout/
# make bench: inference seconds per subject by stage and training throughput -> results/bench/
# FOLD_LOCALIZER=none skips each fold's own heart localization layers (about 6 min a fold): OF-RNN's
# scores with annotated ROIs are the same; the end-to-end rows and `predict` on raw cines need them
FOLD    ?= 3
PROFILE ?= quick
FOLD_LOCALIZER ?=
TRAIN_FLAGS = --profile $(PROFILE) $(if $(FOLD_LOCALIZER),--fold-localizer $(FOLD_LOCALIZER))
# each profile other than the default writes its own folder (results/train-cnn/, ...): a fold folder
# holds one run's settings
TRAIN_OUT = results/train$(if $(filter-out quick,$(PROFILE)),-$(PROFILE))
# the extra cohort too when the profile's settings name it (extra_training_cohort), read from experiments/train.toml
# rather than guessed from the profile's name; asked only for a profile other than quick (about 0.5 s)
TRAIN_DATA = $(COHORT) $(if $(filter-out quick,$(PROFILE)),$(filter $(EXTRA_COHORT),$(shell $(BIN)/python -c \
  "from ofrnn.settings import load_profile; print(load_profile('$(PROFILE)').extra_training_cohort or '')" 2>/dev/null)))
.PHONY: train cv train-holdout bench

train: $(TRAIN_DATA)
	$(OFRNN) train --cohort $(COHORT) --fold $(FOLD) $(TRAIN_FLAGS) --out $(TRAIN_OUT)/fold$(FOLD)

cv: $(TRAIN_DATA)
	$(OFRNN) train --cohort $(COHORT) --fold all $(TRAIN_FLAGS) --out $(TRAIN_OUT)

train-holdout: $(TRAIN_DATA)
	$(OFRNN) train --cohort $(COHORT) --fold holdout $(TRAIN_FLAGS) --out $(TRAIN_OUT)/holdout

results/train/fold3/model.keras: | $(COHORT)
	$(OFRNN) train --cohort $(COHORT) --fold 3 $(TRAIN_FLAGS) --out results/train/fold3

bench: results/train/fold3/model.keras
	$(OFRNN) bench --model results/train/fold3 --cohort $(COHORT) --threads 2 --out results/bench
# ---- end OF-RNN ----

# ---- heart localization layers (issue 4; settings: experiments/localization.toml) ----
# make localize: train the Fast R-CNN LV detector on the simulated training subjects, evaluate it on
# held-out simulated subjects and on real Sunnybrook/ACDC frames (never trained on) ->
# results/localization/ (model/ bundle for 'ofrnn localize --model', metrics.json, report.md, figures)
LOCALIZE_PROFILE ?= full
.PHONY: localize

localize: $(COHORT)
	$(OFRNN) experiment localization --profile $(LOCALIZE_PROFILE) --out results/localization
# make localize-seeds: the phantom-only detector trained with seeds 1 and 2 as well (about 15 min
# each), then mean +- sd over the three seeds -> results/localization-seeds/report.md (run make
# localize first: it is seed 0)
.PHONY: localize-seeds
localize-seeds: $(COHORT)
	$(OFRNN) experiment localization --profile seed1 --out results/localization-seed1
	$(OFRNN) experiment localization --profile seed2 --out results/localization-seed2
	$(OFRNN) experiment localization_seeds --out results/localization-seeds
# make localize-rule: the sequence rule (frames detected on, motion-prior exponent, motion proposals)
# chosen on calibration data only, with the three seeds' bundles -> results/localization-rule/report.md
# (4 min quiet); set its choice in experiments/localization.toml [detect], then make
# localize-rescore scores the three bundles again under it and writes it into them, without retraining
# them (seed 0's fine-tuned variant is fine-tuned again)
.PHONY: localize-rule localize-rescore
localize-rule: data/realism-tune.h5
	$(OFRNN) experiment localization_rule --out results/localization-rule
localize-rescore: $(COHORT)
	$(OFRNN) experiment localization --profile rescore --out results/localization
	$(OFRNN) experiment localization --profile rescore-seed1 --out results/localization-seed1
	$(OFRNN) experiment localization --profile rescore-seed2 --out results/localization-seed2
	$(OFRNN) experiment localization_seeds --out results/localization-seeds
# ---- end heart localization ----

# ---- global motion: optical-flow benchmark (issue 3; settings: experiments/flow.toml) ----
# make flow-bench: paper Table 3 on the simulated LV ROI sequences + FlyingChairs, motorcycle,
# Sunnybrook and ACDC tracking, Sunnybrook's contour tracking on the simulated cohort (exact truth)
# + Fig. 4 -> results/flow/ (metrics.json, report.md, PNG figures).
# make flow-tune: parameter search on a separately simulated training cohort (seed 1001) ->
# results/flow/tuning.{json,md}; the library defaults in ofrnn/flow come from it.
# make flow-tune-matching: the deep OF's matching weight on all training data (that cohort,
# FlyingChairs 0000000-0000002, flow/tiny) -> results/flow/tuning-matching.{json,md}.
# make flow-tune-data: then the data term's brightness weight, on the same sets plus the ACDC
# calibration patients' ED->ES cavity -> results/flow/tuning-data.{json,md}.
# make flow-tune-smoothing: then its pre-smoothing and smoothness weight, on the same sets plus the
# Sunnybrook calibration patient's contour tracking -> results/flow/tuning-smoothing.{json,md}.
# make flow-tune-filtering: then its median filter and edge-aware smoothness, on the same sets ->
# results/flow/tuning-filtering.{json,md}.
# make flow-tune-tracking: the smoothing measured once more with chained contour tracking on the
# training cohort added -> results/flow/tuning-tracking.{json,md}.
FLOW_PROFILE ?= full
.PHONY: flow-bench flow-tune flow-tune-matching flow-tune-data flow-tune-smoothing flow-tune-filtering flow-tune-tracking

flow-bench: $(COHORT)
	$(OFRNN) experiment flow --profile $(FLOW_PROFILE) --out results/flow

flow-tune:
	$(OFRNN) experiment flow --profile tune --out results/flow

flow-tune-matching:
	$(OFRNN) experiment flow --profile tune-matching --out results/flow

flow-tune-data:
	$(OFRNN) experiment flow --profile tune-data --out results/flow

flow-tune-smoothing:
	$(OFRNN) experiment flow --profile tune-smoothing --out results/flow

flow-tune-filtering:
	$(OFRNN) experiment flow --profile tune-filtering --out results/flow

flow-tune-tracking:
	$(OFRNN) experiment flow --profile tune-tracking --out results/flow
# ---- end global motion ----

# ---- phantom physiology report (issue 2; settings: experiments/phantom.toml) ----
# make phantom-stats: EF, wall thickening (remote vs scar), area conservation, infarct sizes of the
# default cohort, measured on its masks -> results/phantom/{metrics.json,report.md,physiology.png,gallery.png}
.PHONY: phantom-stats
phantom-stats: $(COHORT)
	$(OFRNN) experiment phantom --profile full

# ---- paper experiments and report (issue 6; settings: experiments/ablation_*.toml, figures.toml, report.toml) ----
# make ablation-features   Table 1 + Fig. 3(c, d): local only / global only / both  -> results/ablation_features/
# make ablation-classifier Table 2: SVM-RBF, SAE-3, DBN-3, CNN, RNN, LSTM-RNN        -> results/ablation_classifier/
# make ablation-patchsize  Fig. 3(e): N = 3, 5, ..., 17, accuracy and time           -> results/ablation_patchsize/
# make figures             Figs. 2, 3(a-e), 4 from stored results (no training)     -> results/figures/
# make report              results/REPORT.md from results/ alone (no training)
# EXP_PROFILE=quick (one fold, reduced; 2 CPU cores) | paper (all ten folds) | smoke. Same subject-wise folds
# as `make train`. Finished cells/folds are kept in results/cells/ and skipped; one cell/fold per command:
#   OFRNN_CELLS=both OFRNN_FOLDS=4 make ablation-features   (see README, "Distributed and cluster use")
# make reproduce: everything at the quick profile; each finished step leaves a stamp in results/.reproduce/
# and is skipped when rerun, the experiments resume inside a step (rm -r results/.reproduce to redo all).
EXP_PROFILE            ?= quick
REPRO_FLOW_PROFILE     ?= full
REPRO_LOCALIZE_PROFILE ?= full
STAMPS                 := results/.reproduce
.PHONY: ablation-features ablation-classifier ablation-patchsize figures report reproduce

ablation-features: $(COHORT)
	$(OFRNN) experiment ablation_features --profile $(EXP_PROFILE) --out results/ablation_features

ablation-classifier: $(COHORT)
	$(OFRNN) experiment ablation_classifier --profile $(EXP_PROFILE) --out results/ablation_classifier

ablation-patchsize: $(COHORT)
	$(OFRNN) experiment ablation_patchsize --profile $(EXP_PROFILE) --out results/ablation_patchsize

figures:
	$(OFRNN) experiment figures --profile $(EXP_PROFILE) --out results/figures

report:
	$(OFRNN) experiment report --profile $(EXP_PROFILE) --out results/report

REPRO_STEPS := phantom-stats flow-bench localize train ablation-features ablation-classifier ablation-patchsize
reproduce: $(COHORT)
	$(MAKE) $(addprefix $(STAMPS)/,$(REPRO_STEPS))
	$(MAKE) figures EXP_PROFILE=quick
	$(MAKE) report EXP_PROFILE=quick

$(STAMPS)/phantom-stats $(STAMPS)/ablation-features $(STAMPS)/ablation-classifier $(STAMPS)/ablation-patchsize:
	$(MAKE) $(notdir $@) EXP_PROFILE=quick
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/flow-bench:
	$(MAKE) flow-bench FLOW_PROFILE=$(REPRO_FLOW_PROFILE)
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/localize:
	$(MAKE) localize LOCALIZE_PROFILE=$(REPRO_LOCALIZE_PROFILE)
	@mkdir -p $(STAMPS) && touch $@

$(STAMPS)/train:
	$(MAKE) train FOLD=3 PROFILE=quick
	@mkdir -p $(STAMPS) && touch $@
# ---- end paper experiments and report ----

# ---- phantom realism (issue 12; settings: experiments/realism.toml) ----
# make realism: simulated frames beside real Sunnybrook/ACDC frames (../shared/data): galleries, tissue
# intensity ratios, geometry, texture, real-vs-simulated classifiers -> results/realism/
REALISM_PROFILE ?= full
.PHONY: realism realism-calibrate

realism: $(COHORT)
	$(OFRNN) experiment realism --profile $(REALISM_PROFILE) --out results/realism

# tuning the phantom: a separately seeded 40-subject cohort against the calibration real frames only
data/realism-tune.h5: $(wildcard ofrnn/simulate/*.py)
	$(OFRNN) simulate --subjects 40 --seed 1002 --jobs $(JOBS) --out $@
realism-calibrate: data/realism-tune.h5
	$(OFRNN) experiment realism --profile calibrate --out results/realism-calibrate
# ---- end phantom realism ----

# ---- yardstick (issue 10; settings: experiments/ceiling.toml) ----
# make ceiling: scikit-learn gradient boosting per myocardium pixel on hand-made features (own motion,
# wall geometry, slice context; position only as the floor), from the exact and the estimated flow, on
# the folds of `make train` -> results/ceiling/ (metrics.json, report.md, dice.png; finished fits kept in cells/)
CEILING_PROFILE ?= full
.PHONY: ceiling

ceiling: $(COHORT)
	$(OFRNN) experiment ceiling --profile $(CEILING_PROFILE) --out results/ceiling
# ---- end yardstick ----
