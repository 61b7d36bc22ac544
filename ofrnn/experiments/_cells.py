"""Shared machinery of the paper's ablations (Table 1, Table 2, Fig. 3(e)): cells x folds, resumable.

An ablation is a grid of *cells* (one model variant each: settings overrides on top of a profile of
``experiments/train.toml``, and optionally another local motion block) evaluated on the SAME
subject-wise folds as ``make train`` (:func:`ofrnn.train.make_split`). One cell on one fold is
:func:`run_cell`: prepare the cohort (cached ROI sequences and flows, shared with ``make train``),
sample the training pixels, train with :func:`ofrnn.train.train_network`, apply the profile's threshold rule
(:func:`ofrnn.evaluate.choose_threshold`), evaluate the test fold with :func:`ofrnn.metrics.evaluate_rois`.
It writes ``<cell>/fold<k>.json`` and ``<cell>/fold<k>.npz`` (test probabilities and ROI masks, for the
figures) atomically when done, so a rerun skips finished cells and a killed one restarts only the cell
it was in (whose training itself resumes from its checkpoints). Each cell/fold is also one command
(``ofrnn experiment NAME --profile P`` with ``cells``/``folds`` in the profile), so a cluster scheduler
can spread them.
"""
from __future__ import annotations

import copy
import hashlib
import io
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from ..errors import OfrnnError
from ..metrics import mean_sd
from ..files import atomic_write_bytes, atomic_write_text, write_json

REPO = Path(__file__).resolve().parents[2]

#: headline metrics of every ablation table (myocardium pixels and all ROI pixels)
METRICS = ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc")
#: threshold-free myocardium metrics kept beside :data:`METRICS` (issue 10's target: sensitivity at
#: specificity >= 0.95); cells stored before they were kept lack them and summarise to None
CURVE_METRICS = ("pr_auc", "sensitivity_at_spec95")


# -- settings -------------------------------------------------------------------------------------------
def _merge(base, over):
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def resolve_plain(config, profile):
    """Top-level settings merged with ``[profile.<name>]`` (experiments without cells)."""
    profiles = config.get("profile", {})
    if profile == "full" and "full" not in profiles:
        # `ofrnn experiment NAME` without --profile asks for "full": these experiments call it default_profile
        profile = config.get("default_profile", "quick")
    if profile not in profiles:
        raise OfrnnError(f"unknown profile {profile!r} (have: {', '.join(profiles)})", field="profile")
    section = profiles[profile]
    if "extends" in section:  # a profile may start from another one (e.g. quick2 = quick on two folds)
        base = section["extends"]
        if base not in profiles or "extends" in profiles[base]:
            raise OfrnnError(f"extends {base!r}, which is not a plain profile", field=f"profile.{profile}.extends")
        section = _merge(profiles[base], {k: v for k, v in section.items() if k != "extends"})
    cfg = _merge({k: v for k, v in config.items() if k != "profile"}, section)
    cfg["profile"] = profile
    return cfg


def resolve(config, profile):
    """The experiment's settings for ``profile``: top level merged with ``[profile.<name>]``.

    Raises :class:`OfrnnError` for an unknown profile or missing keys (cohort, train_profile, cells).
    """
    cfg = resolve_plain(config, profile)
    for key in ("cohort", "train_profile", "cells", "folds"):
        if key not in cfg:
            raise OfrnnError("missing setting", field=key)
    if not isinstance(cfg["cells"], dict) or not cfg["cells"]:
        raise OfrnnError("must be a table of cells", field="cells")
    # one cell / fold per command (cluster schedulers): OFRNN_CELLS=a,b OFRNN_FOLDS=3,4 override the profile
    if os.environ.get("OFRNN_CELLS"):
        cfg["only"] = os.environ["OFRNN_CELLS"].split(",")
    if os.environ.get("OFRNN_FOLDS"):
        try:
            cfg["folds"] = [int(k) for k in os.environ["OFRNN_FOLDS"].split(",")]
            cfg["folds_from"] = "OFRNN_FOLDS"  # a bad fold is then blamed on the variable, not the file
        except ValueError:
            raise OfrnnError("must be fold numbers separated by commas", field="OFRNN_FOLDS") from None
    only = cfg.get("only")
    if only:
        unknown = set(only) - set(cfg["cells"])
        if unknown:
            raise OfrnnError(f"unknown cells {sorted(unknown)} (have: {', '.join(cfg['cells'])})", field="OFRNN_CELLS")
        cfg["cells"] = {k: v for k, v in cfg["cells"].items() if k in only}
    return cfg


def _path(p):
    p = Path(p)
    return p if p.is_absolute() else REPO / p


def cell_settings(cfg, cell):
    """Training settings of one cell (:class:`ofrnn.settings.TrainingSettings`): the train.toml
    profile, then the experiment's ``overrides``, then the cell's own settings."""
    from ..settings import apply_overrides, load_profile

    tcfg = load_profile(cfg["train_profile"], _path(cfg.get("train_settings", "experiments/train.toml")))
    own = {k: v for k, v in cfg["cells"][cell].items() if k not in ("block", "label")}
    tcfg = apply_overrides(apply_overrides(tcfg, cfg.get("overrides", {}), table="overrides"), own,
                           table=f"cells.{cell}")
    refuse_beyond_training(tcfg, cfg["train_profile"])
    return tcfg.replace(profile=f"{cfg['train_profile']}+{cfg['profile']}")


def refuse_beyond_training(tcfg, profile):
    """Refuse the training options that the ablations do not carry out. They train on their cohort's
    folds only, so a profile with an extra training cohort would be recorded as trained on it when
    it was not; and their cells build no wall segmenter (:mod:`ofrnn.wall`)."""
    if tcfg.extra_training_cohort:
        raise OfrnnError(f"train profile {profile!r} adds an extra training cohort, which the ablations do not "
                         "train on; use a profile without it", field="extra_training_cohort")
    if tcfg.wall_geometry != "none":
        raise OfrnnError(f"train profile {profile!r} reads learned wall geometry, which the ablations do not "
                         "build; use a profile without it", field="wall_geometry")


def fold_list(cfg, n_folds):
    folds = cfg["folds"]
    if folds == "all":
        return list(range(n_folds))
    if not isinstance(folds, list) or not all(isinstance(k, int) and 0 <= k < n_folds for k in folds):
        raise OfrnnError(f"must be 'all' or a list of fold numbers 0..{n_folds - 1}",
                         field=cfg.get("folds_from", "folds"))
    return folds


def cell_key(tcfg, block, cohort):
    """A short hash of everything that defines a cell's result: identical cells of different
    ablations (e.g. the full model in Tables 1 and 2 and N = 11 in Fig. 3(e)) are trained once."""
    st = Path(cohort).stat() if Path(cohort).exists() else None
    # a regenerated cohort (make data) is another cohort: its size and mtime are part of the key
    from ..settings import training_settings  # the localizer's settings do not change a cell's network
    from ..train import flow_settings

    blob = json.dumps(dict(cfg={k: v for k, v in training_settings(tcfg).items() if k != "profile"}, block=block,
                           threshold=tcfg.threshold,
                           flow=flow_settings(tcfg),
                           cohort=str(Path(cohort).resolve()), size=st and st.st_size, mtime=st and st.st_mtime_ns),
                      sort_keys=True, default=str)
    return hashlib.sha1(blob.encode()).hexdigest()[:10]


# -- data --------------------------------------------------------------------------------------------------
_PREPARED = {}


def prepared(cohort, tcfg, cache_dir, progress=True):
    """Prepared subjects of the cohort by id (memoised per process; cached on disk with make train's)."""
    from ..pipeline import prepare_cohort

    key = (str(cohort), tcfg.frames, tcfg.roi, tcfg.flow, tcfg.roi_margin)
    if key not in _PREPARED:
        _PREPARED.clear()
        _PREPARED[key] = {r.id: r for r in prepare_cohort(cohort, frames=tcfg.frames, roi=tcfg.roi,
                                                          flow=tcfg.flow, margin=tcfg.roi_margin,
                                                          cache_dir=cache_dir, progress=progress)}
    return _PREPARED[key]


def split_for(cohort, fold, tcfg):
    """The subject ids of ``make train``'s split for ``fold`` (same ids, levels, seed and folds):
    {"train", "val", "test": [id, ...]}."""
    from ..store import open_cohort
    from ..train import make_split

    with open_cohort(cohort) as c:
        ids = list(c.ids)
        levels = [c.meta(s)["level"] for s in ids]
    split = make_split(ids, levels, str(fold), tcfg)
    return {k: split[k] for k in ("train", "val", "test")}


# -- one cell on one fold --------------------------------------------------------------------------
def run_cell(cohort, fold, tcfg, folder, *, block=None, learner=None, cache_dir=None, progress=True):
    """Train and evaluate one cell on one fold; returns the result (read back when already done).

    Parameters
    ----------
    cohort : path
    fold : int
    tcfg : ofrnn.settings.TrainingSettings
        Training settings (:func:`cell_settings`).
    folder : path
        The cell's folder; ``fold<k>.json`` / ``fold<k>.npz`` are its outputs, ``work/fold<k>``
        its checkpoints while it runs.
    block : dict, optional
        ``{"kind": ...}`` of another local motion classifier (Table 2); None is the LSTM-RNN.
    learner : callable, optional
        ``learner(block, train, val, tcfg, work) -> (predict, stage_times)`` that trains the model
        of a ``block`` (handed in by the experiment that defines the blocks,
        :func:`ofrnn.experiments.ablation_classifier.learner`), with ``predict(subjects) ->
        (probs, seconds per subject)``. Required with ``block``; without it the OF-RNN network
        with its LSTM-RNN is trained.
    """
    from .. import metrics as M
    from ..evaluate import choose_threshold, predict_all
    from ..train import train_network, training_batches

    folder = Path(folder)
    done = folder / f"fold{fold}.json"
    split = split_for(cohort, fold, tcfg)
    if done.is_file():
        old = json.loads(done.read_text())
        if old.get("split") == split:  # a result on other subjects (an older split) is redone
            return old
    if block is not None and learner is None:
        raise OfrnnError(f"block {block.get('kind')!r} needs its experiment's learner", field="block")
    t_start = time.perf_counter()
    subjects = prepared(cohort, tcfg, cache_dir, progress)
    tr, va, te = ([subjects[s] for s in split[k]] for k in ("train", "val", "test"))
    train, val = training_batches(tr, va, tcfg)
    work = folder / "work" / f"fold{fold}"
    t0 = time.perf_counter()
    if block is None:
        network, stage_times = train_network(train, val, tcfg, work)

        def predict(subs):
            return predict_all(network, subs, tcfg, progress=progress)
    else:
        predict, stage_times = learner(block, train, val, tcfg, work)
    train_s = time.perf_counter() - t0
    val_probs, _ = predict(va)
    probs, secs = predict(te)
    thr = choose_threshold(tcfg.threshold, va, val_probs)
    # the validation subjects (from the training folds) are where design choices may be compared
    val_metrics, _ = M.evaluate_rois(va, val_probs, thr)
    metrics, _ = M.evaluate_rois(te, probs, thr)
    metrics.pop("per_subject", None)
    result = dict(fold=fold, n_train=len(tr), n_val=len(va), n_test=len(te), threshold=thr,
                  metrics=dict(roi={k: metrics["roi"][k] for k in METRICS + ("pr_auc",)},
                               myocardium={k: metrics["myocardium"][k] for k in METRICS + CURVE_METRICS},
                               dice_myocardium_mean=metrics["dice_myocardium_mean"],
                               segments=metrics["segments"]["accuracy"]),
                  validation={k: val_metrics["myocardium"][k] for k in METRICS + CURVE_METRICS},
                  timings=dict(train_s=train_s, stages=stage_times, predict_s_per_subject=float(np.mean(secs)),
                               total_s=time.perf_counter() - t_start),
                  settings=tcfg.as_dict(), block=block, split=split)

    npz = io.BytesIO()
    np.savez_compressed(npz, ids=np.array([r.id for r in te]), levels=np.array([r.level for r in te]),
                        prob=np.stack(probs).astype(np.float16), infarct=np.stack([r.infarct for r in te]),
                        myocardium=np.stack([r.myocardium for r in te]),
                        image=np.stack([r.roi[0] for r in te]).astype(np.float16), threshold=thr)
    atomic_write_bytes(folder / f"fold{fold}.npz", npz.getvalue())
    write_json(done, result)
    shutil.rmtree(work, ignore_errors=True)
    if (folder / "work").is_dir() and not any((folder / "work").iterdir()):
        (folder / "work").rmdir()
    return result


# -- the grid -------------------------------------------------------------------------------------------------
def run_grid(config, profile, out_dir, *, title, learner=None, progress=True):
    """Every cell x fold of an ablation (finished ones are read back), then the per-cell summary.

    Returns ``(cfg, summary)``; ``summary[cell]`` holds mean and sd over folds of the headline
    metrics, timings and the cell's folder.
    """
    from tqdm import tqdm

    cfg = resolve(config, profile)
    cohort = _path(cfg["cohort"])
    if not cohort.is_file():
        raise OfrnnError("no such cohort (run 'make data')", path=cohort, field="cohort")
    threads = cfg.get("threads", 0)
    if threads:
        import tensorflow as tf

        try:
            tf.config.threading.set_intra_op_parallelism_threads(threads)
            tf.config.threading.set_inter_op_parallelism_threads(threads)
        except RuntimeError:  # TensorFlow already running (e.g. a test): keep its threads
            pass
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    store = _path(cfg.get("cells_dir", "results/cells"))
    cache = _path(cfg.get("cache", "results/train/cache"))
    jobs = []
    for cell in cfg["cells"]:
        tcfg = cell_settings(cfg, cell)
        block = cfg["cells"][cell].get("block")
        for k in fold_list(cfg, tcfg.n_folds):
            jobs.append((cell, k, tcfg, block, store / cell_key(tcfg, block, cohort)))
    results = {}
    bar = tqdm(jobs, desc=title, unit="cell-fold", disable=not progress)
    for cell, k, tcfg, block, folder in bar:
        bar.set_postfix_str(f"{cell} fold {k}")
        results.setdefault(cell, []).append(run_cell(cohort, k, tcfg, folder, block=block, learner=learner,
                                                     cache_dir=cache, progress=progress))
        if block is None or block.get("kind") != "svm":
            import keras

            keras.backend.clear_session()
    folders = {cell: folder for cell, _, _, _, folder in jobs}
    return cfg, {cell: summarise(rs, folder=str(folders[cell])) for cell, rs in results.items()}


def summarise(results, *, folder=None):
    """Mean and sd over folds of the headline metrics and timings of one cell."""
    out = dict(folds=[r["fold"] for r in results], folder=folder, n_test=sum(r["n_test"] for r in results),
               seed=results[0]["settings"]["seed"], n_folds=results[0]["settings"]["n_folds"],
               total_s=float(sum(r["timings"]["total_s"] for r in results)))
    for group in ("myocardium", "roi"):
        out[group] = {k: mean_sd([r["metrics"][group][k] for r in results]) for k in METRICS}
    out["myocardium"].update({k: mean_sd([r["metrics"]["myocardium"].get(k) for r in results]) for k in CURVE_METRICS})
    out["dice_myocardium_mean"] = mean_sd([r["metrics"]["dice_myocardium_mean"] for r in results])
    if all("validation" in r for r in results):  # cells stored before validation metrics were kept lack them
        out["validation"] = {k: mean_sd([r["validation"].get(k) for r in results]) for k in METRICS + CURVE_METRICS}
    out["train_s"] = mean_sd([r["timings"]["train_s"] for r in results])
    out["predict_s_per_subject"] = mean_sd([r["timings"]["predict_s_per_subject"] for r in results])
    return out


def environment(cfg):
    """Versions, CPU, seeds and profile of a run, for metrics.json."""
    import keras
    import sklearn
    import tensorflow as tf

    from .._version import __version__
    from ..distribute import describe, training_strategy

    return dict(ofrnn=__version__, python=platform.python_version(), tensorflow=tf.__version__,
                keras=keras.__version__, numpy=np.__version__, sklearn=sklearn.__version__,
                cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count(),
                gpus=len(tf.config.list_physical_devices("GPU")), **describe(training_strategy()),
                profile=cfg["profile"], train_profile=cfg["train_profile"], folds=cfg["folds"])


def env_line(env):
    """One readable line of :func:`environment` for report.md files."""
    return (f"ofrnn {env['ofrnn']}, Python {env['python']}, TensorFlow {env['tensorflow']}, Keras {env['keras']}, "
            f"NumPy {env['numpy']}, scikit-learn {env['sklearn']}; {env['cpu_count']} CPU cores ({env['cpu']}), "
            f"{env['gpus']} GPUs, {env['strategy']} x {env['replicas']}.")


def footer(env, summary):
    """The environment and seeds line that ends every ablation report."""
    first = summary[next(iter(summary))]
    return (f"Environment: {env_line(env)} Seeds: {first['seed']} for the folds (`ofrnn.splits.kfold`, "
            f"{first['n_folds']} folds), pixel sampling and weight initialisation.")


def scope(cfg, summary):
    """The lines that open every ablation report: what was run, on which data, and how far one fold reads.

    Parameters
    ----------
    cfg : dict
        The resolved experiment settings (:func:`resolve`).
    summary : dict
        {cell: :func:`summarise` result}.
    """
    from ..fold_report import cohort_description, describe_data

    first = summary[next(iter(summary))]
    folds = first["folds"]
    spread = ("one fold only, so no spread over folds: each value is that fold's" if len(folds) == 1 else
              f"mean ± sd over {len(folds)} folds")
    return [f"**What this is.** Profile `{cfg['profile']}` (training settings `{cfg['train_profile']}` of "
            f"experiments/train.toml + {cfg.get('overrides', {})}); test fold(s) {folds} of `make train`'s "
            f"{first['n_folds']}-fold subject-wise cross-validation, {first['n_test']} test slices in all. Data: "
            f"{describe_data(cohort_description(_path(cfg['cohort'])))}. Ours: {spread}; myocardium pixels (all-ROI "
            "pixels in brackets).", "",
            "The paper's columns come from its 114 patients at full scale: read them for the ordering of the rows, "
            f"not for the values. A fold holds about a dozen test slices, so one fold's Dice carries a wide 95 % "
            f"interval (a bootstrap over its subjects: `results/train/fold{folds[0]}/report.md`), and rows a few "
            "points apart are not told apart by one fold. Design choices are compared on validation subjects from "
            "the training folds, never on the test fold.", ""]


def pct(s, digits=1):
    """'mean +- sd' in percent of a :func:`summarise` entry (or 'n/a')."""
    if s is None or s.get("mean") is None:
        return "n/a"
    return f"{100 * s['mean']:.{digits}f}" + (f" ± {100 * s['sd']:.{digits}f}" if s.get("sd") else "")


def write_outputs(out_dir, result, report_lines):
    """metrics.json and report.md of an ablation, atomically."""
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", result)
    atomic_write_text(out_dir / "report.md", "\n".join(report_lines) + "\n")
