"""Training of OF-RNN on one fold of a cohort (paper Sec. 2 and Sec. 3).

:func:`run_fold` is ``ofrnn train``: split the cohort subject-wise (:mod:`ofrnn.splits`), prepare
ROI sequences and flows (:mod:`ofrnn.pipeline`), train in stages, have :mod:`ofrnn.evaluate`
choose the threshold and score the held-out subjects, and hand the result to
:mod:`ofrnn.fold_report` for the figures and report.md. The stages:

1. **local motion layers**: the LSTM-RNN with its own softmax (Eq. 1), supervised, on P_l(p);
2. **greedy pre-training** of the three encoding layers, each as a one-layer auto-encoder on the
   codes of the layers below, starting from P(p) = [LSTM feature, standardised P_g(p)];
3. optionally (``head_epochs``), **the discriminate layers alone** (encoders and softmax),
   supervised, on P(p) computed once with the local motion layers frozen;
4. **fine-tuning** of the whole network end to end with the softmax.

With ``wall_geometry = "learned"`` (beyond the paper) a myocardium segmenter is trained first, on
the training subjects only, and every subject's wall maps join P_l(p) (:mod:`ofrnn.wall`). All
stages use RMSProp (Sec. 3) and the weighted, stratified pixel samples of
:func:`ofrnn.pipeline.sample_pixels`. Each completed stage leaves a weights file in
``checkpoints/`` and Keras' BackupAndRestore keeps the epoch within a stage, so a killed run
resumes where it stopped. The decision threshold is the profile's: a number (0.5: the softmax's
argmax) or a rule applied to validation subjects drawn from the training folds, never to the test
fold (:func:`ofrnn.evaluate.choose_threshold`).

With ``localizer = "train"`` (the default) the fold also trains the heart localization layers on its
training and validation subjects (:func:`fold_localizer`), puts them in the bundle (``localizer/``),
so that ``ofrnn predict --model`` runs on raw cines, and scores the test fold a second time on the
ROIs they find (the paper's end-to-end setting) beside the annotated-ROI scores.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import time
from pathlib import Path

import numpy as np

from . import metrics as M
from . import splits
from ._version import __version__
from .errors import OfrnnError
from .files import read_toml, write_json
from .evaluate import choose_segment_cut, choose_threshold, evaluate_end_to_end, predict_all, threshold_transfer
from .fold_report import (PAPER, cohort_description, overlays as write_overlays, plot_curves, plot_fold_bullseyes,
                          plot_training, read_training_log, write_report)
from .pipeline import PixelBatches, batch_settings, prepare_cohort, sample_pixels
from .predict import LOCALIZER_DIR, MODEL_FILE, save_bundle
from .settings import PROFILES, load_profile, training_settings
from .store import open_cohort
from .wall import SEGMENTER_FILE, WALL_CHANNELS, fit_segmenter, load_segmenter, save_segmenter, with_wall

#: settings of the heart localization layers (``make localize``), also used for a fold's own localizer
LOCALIZATION_SETTINGS = PROFILES.parent / "localization.toml"

#: bumped when the evaluation or report of a fold changes: a finished fold of an older version is
#: evaluated again from its saved weights (OF-RNN is not retrained; the fold's heart localization
#: layers are trained if it has none yet, or one of an older training revision) and its report
#: rewritten. 6: the fold localizer of :data:`ofrnn.localization.TRAINING_REVISION` 2 (2026-12-04);
#: 7: the end-to-end section names the localizer's sequence rule (2026-12-06)
REPORT_VERSION = 7


#: what a fold keeps of its validation subjects' pixel metrics (at the fold's threshold; the last two
#: threshold-free): options are compared on these, never on the test fold
VALIDATION_METRICS = ("accuracy", "sensitivity", "specificity", "dice", "roc_auc", "sensitivity_at_spec95")
HOLDOUT_STREAM = 2**31 - 1  # the holdout's validation draw: its own stream, apart from every CV fold's


def make_split(ids, levels, fold, cfg):
    """Train / validation / test subject ids for ``fold`` (0..n_folds-1) or "holdout" (2/3 - 1/3)."""
    if fold == "holdout":
        side = splits.holdout(ids, levels, seed=cfg.seed)
        test = [s for s in ids if side[s] == "test"]
        scheme = "holdout 2/3 train - 1/3 test, stratified by level (paper's segment-level evaluation)"
        assignment = side
        k = HOLDOUT_STREAM
    else:
        k = int(fold)
        if not 0 <= k < cfg.n_folds:
            raise OfrnnError(f"fold {k} outside 0..{cfg.n_folds - 1}", field="--fold")
        try:
            assignment = splits.kfold(ids, levels, n_folds=cfg.n_folds, seed=cfg.seed)
        except ValueError:
            raise OfrnnError(f"{len(ids)} subjects are too few for {cfg.n_folds}-fold CV stratified by level "
                             "(need at least that many of some level); use --fold holdout", field="--fold") from None
        test = [s for s in ids if assignment[s] == k]
        scheme = f"{cfg.n_folds}-fold CV, subject-wise, stratified by level, seed {cfg.seed}; test fold {k}"
    rest = [s for s in ids if s not in set(test)]
    lv = dict(zip(ids, levels))
    val = splits.validation(rest, [lv[s] for s in rest], fraction=cfg.val_fraction, seed=cfg.seed,
                             fold=k)
    train = [s for s in rest if s not in set(val)]
    return dict(scheme=scheme, fold=fold, train=train, val=val, test=test, assignment=assignment)


# -- network and stages ---------------------------------------------------------------------------
def build(cfg, global_shape, *, local_block=None):
    """The OF-RNN network (Fig. 1) and its parts for the staged training.

    ``local_block(cfg)``, when given, returns the model that replaces the LSTM-RNN ((batch, J, N*N)
    -> (batch, features)), as in the paper's Table 2; otherwise ``cfg.local_learner`` picks the
    paper's LSTM-RNN ("lstm") or Table 2's CNN ("cnn", an option beyond the paper). ``cfg.features``
    ("both" by default, "local" or "global") selects the motion features of Table 1.
    """
    from .discriminate import local_motion_classifier, ofrnn_network
    from .motion import lstm_rnn, patch_cnn

    learner = cfg.local_learner  # one of LOCAL_LEARNERS (checked by the settings)
    extra = len(WALL_CHANNELS) if cfg.wall_geometry == "learned" else 0
    if local_block is not None:
        rnn = local_block(cfg)
    elif learner == "cnn":
        rnn = patch_cnn(cfg.frames, cfg.patch, units=cfg.lstm_units, extra=extra)
    else:
        rnn = lstm_rnn(cfg.frames, cfg.patch, units=cfg.lstm_units, layers=cfg.lstm_layers,
                       dropout=cfg.input_dropout, extra=extra)
    network, parts = ofrnn_network(rnn, global_frames=global_shape[0], global_features=global_shape[1],
                                   encoder_sizes=cfg.encoder_sizes, activation=cfg.encoder_activation,
                                   features=cfg.features, feature_dropout=cfg.feature_dropout,
                                   global_blocks=_global_blocks(cfg))
    parts["local"] = local_motion_classifier(rnn)
    return network, parts


def _global_blocks(cfg):
    """Blocks of P_g standardised together: the three patch blocks of the layout ("block"), or none."""
    from .flow import GLOBAL_FEATURE_LAYOUT

    return len(GLOBAL_FEATURE_LAYOUT) if cfg.global_norm == "block" else None


def _optimizer(learning_rate, *, weight_average=None, steps=None):
    """RMSProp (Sec. 3); with ``weight_average`` (a momentum), also a moving average of the weights
    that replaces them every ``steps`` updates (one epoch), before the epoch is validated."""
    import keras

    if weight_average is None:
        return keras.optimizers.RMSprop(learning_rate=learning_rate)
    return keras.optimizers.RMSprop(learning_rate=learning_rate, use_ema=True, ema_momentum=weight_average,
                                    ema_overwrite_frequency=steps)


def _fit_supervised(model, train, val, cfg, *, epochs, ckpt, name, local_only, log, lr):
    import keras

    model.compile(optimizer=_optimizer(lr, weight_average=cfg.weight_average, steps=train.steps),
                  loss="sparse_categorical_crossentropy", weighted_metrics=["accuracy"])
    # the weights of the epoch with the lowest validation loss (validation subjects come from the
    # training folds) are kept: fine-tuning overfits the training subjects within a few epochs
    callbacks = [keras.callbacks.BackupAndRestore(str(ckpt / f"{name}_backup")),
                 keras.callbacks.CSVLogger(str(log), append=True),
                 keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                               restore_best_weights=True)]
    t0 = time.perf_counter()
    # shuffle=False: the dataset shuffles itself (Keras would only warn that it cannot)
    hist = model.fit(train.dataset(local_only=local_only), steps_per_epoch=train.steps, epochs=epochs,
                     validation_data=val.dataset(local_only=local_only, shuffle=False), validation_steps=val.steps,
                     callbacks=callbacks, verbose=2, shuffle=False)
    return time.perf_counter() - t0, len(hist.epoch)


def _motion_features(parts, batches, idx, cfg):
    """P(p) (n, features) of the sampled pixels ``idx`` of ``batches``, in chunks of ``cfg.eval_batch``."""
    out = []
    for i in range(0, len(idx), cfg.eval_batch):
        loc, glo = batches.inputs(idx[i:i + cfg.eval_batch])
        out.append(np.asarray(parts["features"].predict_on_batch([loc, glo])))
    return np.concatenate(out)


def _fit_head(parts, train, val, cfg, log):
    """Supervised training of the discriminate layers alone on frozen P(p) (``cfg.head_epochs``).

    P(p) of every training and validation pixel is computed once with the trained local motion
    layers, so an epoch costs only the small dense layers; the epoch of lowest validation loss is
    kept. Returns the seconds taken.
    """
    import keras

    t0 = time.perf_counter()
    x = _motion_features(parts, train, np.arange(len(train)), cfg)
    xv = _motion_features(parts, val, np.arange(len(val)), cfg)
    head = parts["head"]
    head.compile(optimizer=_optimizer(cfg.learning_rate), loss="sparse_categorical_crossentropy",
                 weighted_metrics=["accuracy"])
    head.fit(x, train.samples["label"], sample_weight=train.samples["weight"], batch_size=cfg.batch_size,
             epochs=cfg.head_epochs, validation_data=(xv, val.samples["label"], val.samples["weight"]),
             callbacks=[keras.callbacks.CSVLogger(str(log)),
                        keras.callbacks.EarlyStopping(monitor="val_loss", patience=cfg.patience,
                                                      restore_best_weights=True)],
             verbose=2, shuffle=True)
    return time.perf_counter() - t0


def _pretrain_autoencoders(parts, train, cfg, log):
    """Greedy layer-wise pre-training of the encoding layers (stacked auto-encoder recipe)."""
    from .discriminate import autoencoder

    rng = np.random.default_rng(cfg.seed)
    idx = np.sort(rng.choice(len(train), size=min(len(train), cfg.ae_samples), replace=False))
    x = _motion_features(parts, train, idx, cfg)
    t0 = time.perf_counter()
    for k, enc in enumerate(parts["encoders"]):
        ae = autoencoder(enc, x.shape[1], name=f"autoencoder_{k + 1}")
        ae.compile(optimizer=_optimizer(cfg.learning_rate), loss="mse")
        hist = ae.fit(x, x, batch_size=cfg.batch_size, epochs=cfg.ae_epochs, verbose=0,
                      shuffle=True)
        with open(log, "a") as f:
            for e, loss in enumerate(hist.history["loss"]):
                f.write(f"autoencoder_{k + 1},{e},{loss:.6g}\n")
        x = np.asarray(enc(x))
    return time.perf_counter() - t0


def training_batches(train_subjects, val_subjects, cfg):
    """The training and validation pixel batches of a run (:class:`ofrnn.pipeline.PixelBatches`).

    Pixels are drawn by :func:`ofrnn.pipeline.sample_pixels` with the settings' quota, strata and
    weights; the validation draw takes seed + 1 so it is not the training draw's twin. Only the
    training batches are augmented (``cfg.augment``).
    """
    common = dict(per_subject=cfg.pixels_per_subject, fractions=cfg.strata_fractions,
                  weights=cfg.pixel_weights, infarct_share=cfg.infarct_share)
    kw = dict(batch_settings(cfg.inference()), batch_size=cfg.batch_size)
    train = PixelBatches(train_subjects, sample_pixels(train_subjects, seed=cfg.seed, **common), seed=cfg.seed,
                         augment=cfg.augment, **kw)
    val = PixelBatches(val_subjects, sample_pixels(val_subjects, seed=cfg.seed + 1, **common), seed=cfg.seed + 1,
                       **kw)
    return train, val


def train_network(train, val, cfg, out, *, local_block=None):
    """Staged training with resume (see the module docstring); returns (network, timings).

    Runs under the strategy of :func:`ofrnn.distribute.training_strategy` (several GPUs or
    workers when present, the default strategy otherwise). ``local_block``: see :func:`build`.
    """
    from .distribute import training_strategy

    with training_strategy().scope():
        return _train_network(train, val, cfg, Path(out), local_block=local_block)


def _train_network(train, val, cfg, out, *, local_block=None):
    import keras

    keras.utils.set_random_seed(cfg.seed)
    network, parts = build(cfg, train.global_shape, local_block=local_block)
    ckpt = out / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    done = {s: ckpt / f"{s}.weights.h5" for s in ("local", "autoencoders", "head", "finetune")}
    timings = {}
    if done["finetune"].is_file():
        network.load_weights(done["finetune"])
        return network, json.loads((ckpt / "timings.json").read_text())
    if done["head"].is_file():
        network.load_weights(done["head"])
    elif done["autoencoders"].is_file():
        network.load_weights(done["autoencoders"])
    else:
        if done["local"].is_file():
            parts["local"].load_weights(done["local"])
        elif cfg.features == "global":
            timings["local"] = 0.0  # Table 1 "global only": the local motion layers are not used
        else:
            timings["local"], _ = _fit_supervised(parts["local"], train, val, cfg, epochs=cfg.lstm_epochs, ckpt=ckpt,
                                               name="local", local_only=True, log=out / "train_log_local.csv",
                                                  lr=cfg.learning_rate)
        if "local" in timings:
            parts["local"].save_weights(done["local"])
        norm = parts["normalization"]  # adapted on P_g in the shape it sees (per value, or per block)
        norm.adapt(train.global_rows.reshape((len(train),) + tuple(norm.input.shape[1:])))
        ae_log = out / "train_log_autoencoders.csv"
        ae_log.write_text("stage,epoch,loss\n")
        timings["autoencoders"] = _pretrain_autoencoders(parts, train, cfg, ae_log)
        network.save_weights(done["autoencoders"])
    if cfg.head_epochs and not done["head"].is_file():
        timings["head"] = _fit_head(parts, train, val, cfg, out / "train_log_head.csv")
        network.save_weights(done["head"])
    timings["finetune"], epochs = _fit_supervised(network, train, val, cfg, epochs=cfg.finetune_epochs, ckpt=ckpt,
                                          name="finetune", local_only=False, log=out / "train_log.csv",
                                          lr=cfg.finetune_learning_rate)
    # epochs run in this process (a resumed stage counts only its remaining epochs)
    timings["finetune_pixels_per_s"] = epochs * train.steps * train.batch_size / timings["finetune"]
    network.save_weights(done["finetune"])
    write_json(ckpt / "timings.json", timings)
    return network, timings


# -- the run's record and the fold's heart localization layers ------------------------------------
def _versions(cfg=None):
    import keras
    import sklearn
    import tensorflow as tf

    out = dict(ofrnn=__version__, python=platform.python_version(), tensorflow=tf.__version__,
               keras=keras.__version__, numpy=np.__version__, sklearn=sklearn.__version__,
               machine=f"{os.cpu_count()} CPU cores ({platform.processor() or platform.machine()}), "
                       f"{len(tf.config.list_physical_devices('GPU'))} GPUs")
    if cfg is not None and cfg.flow == "estimated":
        out["flow_params"] = flow_settings(cfg)
    return out


def fold_localizer(cohort, ids, cfg, *, cache_dir, progress=True):
    """The heart localization layers (Fast R-CNN, :mod:`ofrnn.localization`) trained on ``ids`` only.

    A fold's bundle must run on raw cines without a second training, and its localizer must never
    have seen the test fold: it is trained on the fold's training and validation subjects with the
    settings of ``cfg.localizer_settings`` (default ``experiments/localization.toml``, profile
    ``cfg.localizer_profile``). One trained before on the same subjects, cohort content, settings
    and :data:`ofrnn.localization.TRAINING_REVISION` is reused from ``cache_dir``
    (``localizer-<key>/``); the sequence rule (:data:`ofrnn.localization.SEQUENCE_RULE`) is not
    part of the key: a reused localizer takes the current one.

    Parameters
    ----------
    cohort : path
        The cohort file (simulated or annotated: frames with ``lv_box``).
    ids : list of str
        The subjects to train on (never the test fold's).
    cfg : ofrnn.settings.TrainingSettings
        Training settings: ``localizer_settings``, ``localizer_profile``.
    cache_dir : path
        Where trained localizers are kept by key.
    progress : bool

    Returns
    -------
    (Detector, folder, dict)
        The detector, the folder it was saved in, and a record (``reused``, ``seconds``,
        ``subjects``, ``frames``).
    """
    from .experiments.localization import training_frames
    from .localization import apply_sequence_rule, load_detector, sequence_rule, train_detector

    lcfg = localizer_config(cfg)
    # the whole rule, defaults included, so the detector follows what the record says
    rule = sequence_rule(lcfg["detect"])
    key = localizer_key(cohort, ids, lcfg)
    folder = Path(cache_dir) / key
    record_file = folder / "training.json"
    if record_file.is_file():
        detector = load_detector(folder)
        if apply_sequence_rule(detector, rule):
            detector.save(folder)
        return detector, folder, {**json.loads(record_file.read_text()), "reused": True, "rule": rule, "key": key}
    t0 = time.perf_counter()
    with open_cohort(cohort) as c:
        frames, boxes = training_frames(c, ids, lcfg["data"]["frames_per_subject"])
    if progress:
        print(f"heart localization layers: training on {len(frames)} frames of {len(ids)} subjects")
    # train_detector stores the same rule (sequence_rule of the same [detect] table) in its settings
    detector, history = train_detector(frames, boxes, lcfg, seed=lcfg["seed"], progress=progress)
    detector.save(folder)
    record = dict(subjects=len(ids), frames=len(frames), profile=cfg.localizer_profile,
                  seconds=time.perf_counter() - t0, loss=history["history"].get("loss", [])[-1:])
    write_json(record_file, record, indent=2)  # last: its presence marks the localizer as finished
    return detector, folder, {**record, "reused": False, "rule": rule, "key": key}


def localizer_key(cohort, ids, lcfg):
    """The name a fold localizer is kept under in the cache: a digest of what trains it.

    Parameters
    ----------
    cohort : path
        The cohort file; its size and modification time stand for its content.
    ids : list of str
        The subjects it is trained on.
    lcfg : dict
        The localization settings (:func:`localizer_config`).

    Returns
    -------
    str
        ``localizer-<12 hex digits>`` over the subjects, the cohort, the settings but the sequence
        rule (:data:`ofrnn.localization.SEQUENCE_RULE`, applied after training: a new rule reuses the
        trained localizer), the package version and :data:`ofrnn.localization.TRAINING_REVISION`.
    """
    from .localization import SEQUENCE_RULE, TRAINING_REVISION

    st = Path(cohort).stat()
    trained_by = dict(lcfg, detect={k: v for k, v in lcfg["detect"].items() if k not in SEQUENCE_RULE})
    blob = json.dumps(dict(ids=sorted(ids), size=st.st_size, mtime=st.st_mtime_ns, settings=trained_by,
                           version=__version__, revision=TRAINING_REVISION), sort_keys=True, default=str)
    return f"localizer-{hashlib.sha1(blob.encode()).hexdigest()[:12]}"


def localizer_config(cfg):
    """The heart localization settings a fold's localizer follows.

    Parameters
    ----------
    cfg : ofrnn.settings.TrainingSettings
        ``localizer_settings`` (default :data:`LOCALIZATION_SETTINGS`) and ``localizer_profile``.

    Returns
    -------
    dict
        That profile of the settings file, resolved (a dict of tables: ``data``, ``model``,
        ``detect``, ``train``, ...).
    """
    from .experiments import resolve_config

    path = Path(cfg.localizer_settings or LOCALIZATION_SETTINGS)
    return resolve_config(read_toml(path, what="localization settings"), cfg.localizer_profile)


def evaluated_again(previous, cfg, cohort):
    """Why a finished fold must be evaluated again from its saved weights, or None when it stands.

    Parameters
    ----------
    previous : dict
        The fold's ``metrics.json``.
    cfg : ofrnn.settings.TrainingSettings
        The settings it is asked for now (its settings stamp already matched).
    cohort : path
        The evaluated cohort file.

    Returns
    -------
    str or None
        The reason: an older :data:`REPORT_VERSION`, another decision threshold, or, with
        ``localizer = "train"``, another heart localizer than its end-to-end scores were taken with:
        one trained otherwise (:func:`localizer_key`: the localization settings' training part) or
        following another sequence rule (:func:`ofrnn.localization.sequence_rule` of the ``[detect]``
        table, what ``make localize-rule`` sets after training). A fold stored before these were
        recorded counts as another.
    """
    if previous.get("report_version") != REPORT_VERSION:
        return "an older report version"
    if previous["config"].get("threshold") != cfg.threshold:
        return "another decision threshold"
    if cfg.localizer == "train":
        from .localization import sequence_rule

        lcfg = localizer_config(cfg)
        record = (previous.get("metrics_detected_roi") or {}).get("localizer") or {}
        ids = previous["split"]["train"] + previous["split"]["val"]
        if record.get("key") != localizer_key(cohort, ids, lcfg):
            return "another heart localizer (its training settings), or one not recorded"
        if record.get("rule") != sequence_rule(lcfg["detect"]):
            return "another sequence rule of the heart localization layers"
    return None


def profile_reductions(cfg, path=PROFILES):
    """Where ``cfg`` departs from the ``paper`` profile of the same settings file.

    Returns
    -------
    dict or None
        {setting: (this profile's value, the paper profile's)}; {} for the paper profile itself;
        None when the file has no ``paper`` profile (nothing to compare with).
    """
    if "paper" not in read_toml(path, what="profile file"):
        return None
    paper = load_profile("paper", path)
    skip = {"profile"}
    ours, paper = cfg.as_dict(), paper.as_dict()
    return {k: (ours[k], paper[k]) for k in paper if k not in skip and k in ours and ours[k] != paper[k]}


def flow_settings(cfg):
    """The deep optical flow's settings a run's P_g comes from (None with the simulator's exact
    flow): part of every settings stamp and ablation cell key, so new flow defaults retrain rather
    than answer with a network trained on other flows."""
    if cfg.flow != "estimated":
        return None
    from .flow import DEFAULTS

    return dict(DEFAULTS)


def _same_run(stamp, old):
    """Is the stored settings stamp the same run? It is when the cohort's size and modification time
    (and the extra training cohort's, when there is one), the fold, its subjects (training, validation
    and test), the training settings and the deep optical flow's settings match."""
    keys = ("cohort_bytes", "cohort_mtime_ns", "extra_cohort_bytes", "extra_cohort_mtime_ns", "fold", "split",
            "flow_params")
    return (all(old.get(k) == stamp.get(k) for k in keys)
            and training_settings(old.get("config", {})) == training_settings(stamp["config"]))


def _labelled_cohort(cohort, *, field=None):
    """(ids, levels) of a cohort whose every subject has traced infarct and myocardium masks.

    Raises
    ------
    OfrnnError
        Naming the file and the first subject without them (``field``: the setting that named the file).
    """
    if field and not Path(cohort).is_file():
        raise OfrnnError("no such cohort file (`make data-extra` simulates the default one)", path=cohort, field=field)
    with open_cohort(cohort) as c:
        ids = list(c.ids)
        levels = [c.meta(s)["level"] for s in ids]
        for s in ids:
            if "infarct" not in c.group(s) or "myocardium" not in c.group(s):
                raise OfrnnError("training needs traced infarct and myocardium masks", path=c.path,
                                 field=f"subjects/{s}/infarct")
    return ids, levels


def _distinct_cohorts(cohort, extra):
    """Refuse an extra training cohort that is the evaluated cohort, or is simulated with its seed (the
    simulator draws subject i from the seed and i, so the same seed repeats the evaluated subjects)."""
    with open_cohort(cohort) as a, open_cohort(extra) as b:
        seed = a.params.get("seed")
        same_seed = a.source == b.source == "simulated" and seed is not None and seed == b.params.get("seed")
    if Path(cohort).resolve() == Path(extra).resolve() or same_seed:
        raise OfrnnError("is the evaluated cohort or simulated with its seed: its subjects would be trained on and "
                         "tested on", path=extra, field="extra_training_cohort")


def fold_segmenter(train_subjects, cfg, folder):
    """The fold's wall segmenter (:func:`ofrnn.wall.fit_segmenter` on its training subjects), and its
    training time; a killed run resumes with the one it saved in ``folder`` (time None)."""
    path = Path(folder) / SEGMENTER_FILE
    if path.is_file():
        return load_segmenter(folder), None
    segmenter, seconds = fit_segmenter(train_subjects, seed=cfg.seed)
    Path(folder).mkdir(parents=True, exist_ok=True)
    save_segmenter(folder, segmenter)
    return segmenter, seconds


def run_fold(cohort, fold, cfg, out, *, cache_dir=None, localizer=None, force=False, progress=True,
             settings=PROFILES):
    """Train on the other folds, evaluate on ``fold`` and write ``out`` (see the module docstring).

    Returns the result dict also written to ``out/metrics.json``. A finished fold is returned from
    disk unless ``force``; one that :func:`evaluated_again` names (an older :data:`REPORT_VERSION`,
    another decision threshold, localizer or localizer sequence rule) is evaluated again from its
    saved weights. ``settings``: the profiles file ``cfg`` came from (for the report's list of what
    the profile reduces against ``paper``).
    """
    out = Path(out)
    ids, levels = _labelled_cohort(cohort)
    extra = cfg.extra_training_cohort
    if extra:
        _labelled_cohort(extra, field="extra_training_cohort")
        _distinct_cohorts(cohort, extra)
    split = make_split(ids, levels, fold, cfg)
    if force and out.exists():
        shutil.rmtree(out)
    # the cohort's size and modification time stand for its content (a rebuilt cohort must not be
    # answered with a fold trained on the old one); no path is stored
    st = Path(cohort).stat()
    stamp = dict(cohort_bytes=st.st_size, cohort_mtime_ns=st.st_mtime_ns, fold=str(fold), config=cfg.as_dict(),
                 flow_params=flow_settings(cfg), split={k: split[k] for k in ("train", "val", "test")})
    if extra:
        st = Path(extra).stat()
        stamp.update(extra_cohort_bytes=st.st_size, extra_cohort_mtime_ns=st.st_mtime_ns)
    if (out / "settings.json").is_file() and not _same_run(stamp, json.loads((out / "settings.json").read_text())):
        raise OfrnnError("holds a run with other settings (cohort file or its content, the extra training cohort's, "
                         "fold, its subjects, profile or the deep optical flow's settings); use --force or another "
                         "--out", path=out / "settings.json")
    previous = None
    if (out / "metrics.json").is_file() and (out / MODEL_FILE).is_file():
        previous = json.loads((out / "metrics.json").read_text())
        why = evaluated_again(previous, cfg, cohort)
        if why is None:
            return previous
        if progress:
            print(f"{out}: evaluating the trained network again ({why})")
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "settings.json", stamp)
    t_start = time.perf_counter()
    write_json(out / "split.json", split)
    timings = {}
    t0 = time.perf_counter()
    subjects = {r.id: r for r in prepare_cohort(cohort, frames=cfg.frames, roi=cfg.roi, flow=cfg.flow,
                                                margin=cfg.roi_margin, localizer=localizer, cache_dir=cache_dir,
                                                progress=progress)}
    # beyond the paper: the extra cohort's subjects join the training subjects only (never validation or test)
    extra_subjects = prepare_cohort(extra, frames=cfg.frames, roi=cfg.roi, flow=cfg.flow, margin=cfg.roi_margin,
                                    localizer=localizer, cache_dir=cache_dir, progress=progress) if extra else []
    timings["prepare"] = time.perf_counter() - t0
    tr = [subjects[s] for s in split["train"]] + extra_subjects
    va = [subjects[s] for s in split["val"]]
    te = [subjects[s] for s in split["test"]]
    segmenter = None
    if cfg.wall_geometry == "learned":
        segmenter, seconds = fold_segmenter(tr, cfg, out / "checkpoints")
        if seconds is not None:
            timings["wall_segmenter"] = seconds
        tr, va, te = (with_wall(s, segmenter) for s in (tr, va, te))
    train, val = training_batches(tr, va, cfg)
    network, fit_times = train_network(train, val, cfg, out)
    timings.update(fit_times)

    val_probs, _ = predict_all(network, va, cfg, progress=progress)
    thr = choose_threshold(cfg.threshold, va, val_probs)
    val_metrics, val_records = M.evaluate_rois(va, val_probs, thr)
    cut, cut_transfer = choose_segment_cut(val_records)
    probs, secs = predict_all(network, te, cfg, progress=progress)
    timings["network_per_subject"] = float(np.mean(secs))
    metrics, records = M.evaluate_rois(te, probs, thr, segment_cut=cut, seed=cfg.seed, intervals=True)
    # the segment call of the truth's own rule, beside the chosen one
    metrics["segments_at_rule"] = M.segment_metrics(records, cut=M.SEGMENT_RULE)
    end_to_end = None
    if cfg.localizer == "train":
        detector, folder, record = fold_localizer(cohort, split["train"] + split["val"], cfg,
                                                  cache_dir=cache_dir or out / "checkpoints", progress=progress)
        end_to_end = evaluate_end_to_end(network, cohort, split["test"], cfg, thr, detector, segment_cut=cut,
                                         segmenter=segmenter, progress=progress)
        end_to_end["localizer"] = record
        shutil.copytree(folder, out / LOCALIZER_DIR, dirs_exist_ok=True)
        if not record["reused"]:
            timings["localizer"] = record["seconds"]
    plot_curves(out / "roc_pr.png", te, probs, thr)
    drawn = write_overlays(out / "overlays", te, probs, thr, metrics["per_subject"])
    bullseyes = plot_fold_bullseyes(out, te, probs, thr)
    training = read_training_log(out)
    if training:
        plot_training(out / "training.png", training)
    data, versions = cohort_description(cohort), _versions(cfg)
    if extra:
        data["extra_training"] = cohort_description(extra)
    bundle_cfg = cfg.inference()
    bundle_cfg.update(threshold=thr, segment_cut=cut, fold=fold, cohort_sha256=data["sha256"], global_shape=list(train.global_shape),
                      intensity="(I - q1) / (q99 - q1) per ROI sequence", versions=versions,
                      localizer=LOCALIZER_DIR if end_to_end is not None else None)
    save_bundle(out, network, bundle_cfg)
    if segmenter is not None:
        save_segmenter(out, segmenter)
    timings["total"] = time.perf_counter() - t_start
    if previous is not None:  # evaluated again: the training's own timings stand
        timings.update({k: previous["timings"][k] for k in ("prepare", "total") if k in previous["timings"]})
    result = dict(report_version=REPORT_VERSION, data=data, config=cfg.as_dict(),
                  split={k: split[k] for k in ("scheme", "fold", "train", "val", "test")},
                  profile_reductions=profile_reductions(cfg, settings), metrics=metrics,
                  metrics_detected_roi=end_to_end, timings=timings, training_pixels=len(train),
                  training_subjects=dict(cohort=len(split["train"]), extra=len(extra_subjects)),
                  versions=versions, paper=PAPER, training={k: {"epochs": len(v["epochs"]), "kept": v["kept"]}
                                                                 for k, v in training.items()},
                  overlays=[dict(id=i, reason=r) for i, r in drawn], bullseyes=bullseyes,
                  validation={**{g: {k: val_metrics[g][k] for k in VALIDATION_METRICS}
                                 for g in ("roi", "myocardium")},
                              "threshold_transfer": threshold_transfer(va, val_probs),
                              "segment_cut_transfer": cut_transfer})
    write_json(out / "segments.json", records)
    write_report(out / "report.md", result, overlays_drawn=drawn, training=training)
    # metrics.json comes last: its presence marks the fold as finished (resume)
    write_json(out / "metrics.json", result, indent=2, nan_as_null=True)
    return result


__all__ = ["LOCALIZATION_SETTINGS", "REPORT_VERSION", "VALIDATION_METRICS", "make_split", "build", "training_batches", "train_network", "fold_localizer", "localizer_config", "localizer_key", "evaluated_again", "fold_segmenter",
           "profile_reductions", "flow_settings", "run_fold"]
