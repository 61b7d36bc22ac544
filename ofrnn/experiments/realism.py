"""Phantom realism: how far the simulated cine is from real short-axis cines, measured.

Run with ``make realism`` (``ofrnn experiment realism``; settings ``experiments/realism.toml``).
The simulated frames (the cohort of ``make data``) are set beside real bSSFP cines of Sunnybrook
(Radau et al., MIDAS Journal 2009) and ACDC (Bernard et al., IEEE TMI 2018), read-only from
``../shared/data`` (each set is skipped, with the reason, when absent). The measures of one frame
are in :mod:`ofrnn.experiments.realism_measures`, the figures and ``report.md`` in
:mod:`ofrnn.experiments.realism_report`. Measured:

* **galleries** of simulated and real frames, whole and heart-centred;
* **tissue intensity ratios**: LV myocardium / LV blood (ACDC labels, Sunnybrook contours, the
  phantom's masks; read one pixel in from both masks' edges); the LV blood pool's percentile among body pixels; the body's intensity
  quantiles relative to blood; the share of bright body pixels (>= 0.7 x blood: fat and fluid in
  bSSFP). Real frames carry no labels for fat, liver, muscle or lung: the fat under the skin and the
  lung are read where they must lie (:func:`realism_measures.subcutaneous_fat_ratio`, the body's
  darkest pixels), liver and muscle enter only through the body's intensity distribution; the
  phantom's own per-tissue bSSFP signals are
  tabled beside it (:func:`ofrnn.simulate.mri.signal_table`); and the whole frame's shares by level
  over blood, with its 99th percentile over blood (:func:`realism_measures.level_shares`), which
  put the texture statistics' intensity axis in tissue terms;
* **geometry**: the LV's epicardial diameter relative to the field of view, the body's share of
  the field of view, and the in-plane orientation (direction from the LV centre to the RV; ACDC
  labels, and the phantom's septal AHA segments; Sunnybrook has no RV contours), the direction
  and distance (in LV diameters) of the nearest skin (:func:`realism_measures.nearest_skin`: how
  the oblique plane lies in the chest, and how far the chest wall is), and the frame's short over
  long side (a rectangular field of view);
* **texture**: intensity, gradient-magnitude and uniform local-binary-pattern histograms (Ojala
  et al., IEEE TPAMI 24:971 (2002)) and radial power spectra;
* **separability**: real-vs-simulated classifiers, whose ROC AUC is the headline (0.5: the
  frames cannot be told apart; lower is better). A logistic regression on the statistics above,
  and a small CNN on whole frames and on heart-centred crops. The single statistics that separate
  best on the frames one may tune on (:func:`separating_statistics`) say what to mend next, and
  the statistics the logistic regression of all of them leans on (:func:`classifier_leaning`) say
  why mending one family at a time may not lower its AUC.

**Split.** Real frames are split by patient (``[split]``): calibration (ACDC 061-080, Sunnybrook
SC-HF-I-1) may be fitted, evaluation (the other patients) is only scored. Each classifier is
trained on the calibration real frames and part of the simulated subjects, and scores the held-out
simulated subjects and the evaluation real frames of its fold (cross-fitting: simulated and
evaluation subjects are both dealt into folds, and each frame is scored by one model, that of its
fold). The AUC's 95 % interval is a bootstrap over subjects.
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._version import __version__
from ..errors import OfrnnError
from ..files import atomic_write_text, write_json
from ..simulate.mri import MT_RANGE
from . import resolve_config
from .realdata import SHARED, acdc_sequences, is_calibration, sunnybrook_sequences
from .realism_measures import (INTENSITY_MAX, LEVEL_LABELS, PIXEL_SCALE_LABELS, PROFILE_KEYS, STATISTICS,
                               TISSUE_LABELS, direction_deg, frame_statistics, heart_crop, lv_size, normalise,
                               statistic_names, tissue_measures)
from .realism_report import figures, report

REPO = Path(__file__).resolve().parents[2]
#: AHA segments of the interventricular septum (Cerqueira et al., Circulation 105:539 (2002))
SEPTAL_SEGMENTS = (2, 3, 8, 9, 14)
#: groups of frames, in plotting order
GROUPS = ("simulated", "acdc calibration", "acdc evaluation", "sunnybrook calibration", "sunnybrook evaluation")


# -- the frames ----------------------------------------------------------------------------------

def _frame(group, subject, image, *, lv, blood=None, myocardium=None, rv_angle=float("nan"), spacing=None):
    return dict(group=group, subject=subject, image=np.asarray(image, np.float32), lv=lv, blood=blood,
                myocardium=myocardium, rv_angle=rv_angle, spacing=spacing)


def simulated_frames(cohort_path, *, per_subject, max_subjects=0):
    """ED and ES (smallest cavity) frames of each simulated subject, with the phantom's masks; the
    RV direction is that of the septal AHA segments seen from the cavity."""
    from ..store import open_cohort

    out = []
    with open_cohort(cohort_path) as c:
        ids = c.ids[:max_subjects] if max_subjects else c.ids
        for sid in tqdm(ids, desc="simulated frames", unit="subject"):
            s = c.read(sid, fields=("cine", "myocardium_t", "lv_cavity_t", "aha_segments"))
            es = int(np.argmin(s.lv_cavity_t.reshape(len(s.cine), -1).sum(1)))
            septum = np.isin(s.aha_segments, SEPTAL_SEGMENTS)
            angle = direction_deg(s.lv_cavity_t[0], septum) if septum.any() else float("nan")
            for t in sorted({0, es})[:per_subject]:
                cav, myo = s.lv_cavity_t[t].astype(bool), s.myocardium_t[t].astype(bool)
                out.append(_frame("simulated", sid, s.cine[t], lv=cav | myo, blood=cav, myocardium=myo,
                                  rv_angle=angle, spacing=s.spacing_mm[0]))
    return out


def real_frames(shared, split):
    """Real frames with their masks and split; returns (frames, skipped reasons by set)."""
    frames, skipped = [], {}
    acdc = Path(shared) / "acdc-edes"
    if acdc.is_dir():
        for s in acdc_sequences(acdc):
            pid = s["id"].split("/")[0]
            group = "acdc " + ("calibration" if is_calibration("acdc", s["id"], split) else "evaluation")
            for t, lab in enumerate(s["labels"]):
                rv = lab == 1
                lv = np.isin(lab, (2, 3))
                frames.append(_frame(group, pid, s["cine"][t], lv=lv, blood=lab == 3, myocardium=lab == 2,
                                     rv_angle=direction_deg(lv, rv) if rv.sum() >= 20 else float("nan")))
    else:
        skipped["acdc"] = f"{acdc} not found"
    sb = Path(shared) / "sunnybrook"
    if sb.is_dir():
        for s in sunnybrook_sequences(sb):
            pid = s["id"].split("/")[0]
            group = "sunnybrook " + ("calibration" if is_calibration("sunnybrook", s["id"], split) else "evaluation")
            epi = next((m["o"] for m in s["masks"].values() if "o" in m), None)
            for t, m in sorted(s["masks"].items()):
                if "i" not in m:
                    continue
                # frames contoured at the endocardium only (ES) borrow the slice's ED epicardium
                lv = m["o"] | m["i"] if "o" in m else m["i"] if epi is None else epi | m["i"]
                myo = m["o"] & ~m["i"] if "o" in m else None
                frames.append(_frame(group, pid, s["cine"][t], lv=lv, blood=m["i"],
                                     myocardium=myo, spacing=s["spacing"][0]))
    else:
        skipped["sunnybrook"] = f"{sb} not found"
    return frames, skipped


# -- separability --------------------------------------------------------------------------------

def subject_folds(subjects, k, seed):
    """Fold (0..k-1) of every entry of ``subjects``, whole subjects per fold, seeded."""
    names = sorted(set(subjects))
    order = np.random.default_rng(seed).permutation(len(names))
    fold = {names[i]: j % k for j, i in enumerate(order)}
    return np.array([fold[s] for s in subjects])


def class_folds(subjects, strata, k, seed):
    """Subject folds (0..k-1) drawn separately within each stratum (see :func:`subject_folds`).

    With the strata simulated / calibration real / evaluation real, every fold holds about as
    many subjects of each, and the folds of the calibration patients and of the simulated subjects
    do not depend on whether the evaluation patients were loaded: ``make realism`` and ``make
    realism-calibrate`` then give one cohort the same calibration CV (with real / simulated as the
    only strata they did not: 0.969 against 0.944 for one cohort, 2026-12-06).

    Parameters
    ----------
    subjects : (N,) sequence of str
        Each frame's subject.
    strata : (N,) array
        Each frame's stratum (any labels; a boolean ``is_real`` gives two).
    k : int
        Folds.
    seed : int

    Returns
    -------
    (N,) int array
    """
    subjects, strata = np.asarray(subjects), np.asarray(strata)
    folds = np.zeros(len(subjects), int)
    for stratum in np.unique(strata):
        m = strata == stratum
        folds[m] = subject_folds(list(subjects[m]), k, seed)
    return folds


def frame_strata(is_real, calibration):
    """0 simulated, 1 calibration real, 2 evaluation real: the strata of :func:`class_folds`."""
    return np.where(~np.asarray(is_real), 0, np.where(calibration, 1, 2))


def _fold_scores(folds, scored, pool, fit_score, *, always=None):
    """Scores of the ``scored`` frames, each from the model of its fold: fitted on the ``pool``
    frames of the other folds (plus ``always``, frames every model trains on)."""
    always = np.zeros(len(folds), bool) if always is None else always
    scores = np.full(len(folds), np.nan)
    for j in np.unique(folds[scored]):
        held = scored & (folds == j)
        scores[held] = fit_score(always | (pool & (folds != j)), held)
    return scores


def cross_fit(is_real, calibration, evaluation, folds, fit_score):
    """Scores from models that never saw the scored frame (see the module docstring).

    Every simulated and evaluation frame is scored once, by the model of its subject's fold
    (:func:`class_folds`): trained on the calibration real frames and the simulated subjects of
    the other folds. Both classes are thus scored by the same mix of models. ``fit_score(train,
    score)`` fits on the boolean mask ``train`` and returns scores of the frames in ``score``.
    Returns (N,) scores; NaN for calibration frames.
    """
    return _fold_scores(folds, ~is_real | evaluation, ~is_real, fit_score, always=calibration)


def calibration_scores(is_real, calibration, folds, fit_score):
    """Grouped cross-validation on the calibration real frames and the simulated frames only
    (``folds``: each frame's subject fold), for tuning the phantom without an evaluation frame.
    Returns (N,) scores, NaN outside those frames."""
    use = calibration | ~is_real
    return _fold_scores(folds, use, use, fit_score)


def auc_with_interval(scores, is_real, subjects, *, n_boot, seed):
    """ROC AUC (real = positive) and its 95 % interval from a bootstrap over subjects, real and
    simulated subjects resampled separately (:func:`ofrnn.metrics.bootstrap_subjects`)."""
    from sklearn.metrics import roc_auc_score

    from ..metrics import bootstrap_subjects, rank_auc

    number = {}  # subjects numbered in order of appearance
    subject = np.array([number.setdefault(s, len(number)) for s in subjects])
    real_subject = np.zeros(len(number), bool)
    real_subject[subject] = is_real
    frames_of = [np.flatnonzero(subject == i) for i in range(len(number))]

    def auc(idx):
        rows = np.concatenate([frames_of[i] for i in idx])
        return rank_auc(is_real[rows], scores[rows])

    # stratum 0 = real subjects, drawn first
    lo, hi = bootstrap_subjects(auc, len(number), n_boot=n_boot, seed=seed, strata=~real_subject)
    return dict(auc=float(roc_auc_score(is_real, scores)), ci95=[lo, hi], real_frames=int(is_real.sum()),
                simulated_frames=int((~is_real).sum()), real_subjects=int(real_subject.sum()),
                simulated_subjects=int((~real_subject).sum()))


def _logistic_model(C):
    """The separability classifier: standardisation, then a logistic regression (balanced classes)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=5000, class_weight="balanced"))


def logistic_scores(X, C):
    """``fit_score`` of a standardised logistic regression (balanced classes) on rows of ``X``."""
    def fit_score(train, score, *, y):
        model = _logistic_model(C)
        model.fit(X[train], y[train])
        return model.predict_proba(X[score])[:, 1]
    return fit_score


def cnn_scores(images, cfg, seed):
    """``fit_score`` of a small CNN (three conv blocks, global pooling, logistic output; random
    flips and quarter turns, since orientation conventions differ) on (N, S, S) ``images``."""
    import keras
    import tensorflow as tf

    def build(size):
        x = inp = keras.Input((size, size, 1))
        for width in (16, 32, 32):
            x = keras.layers.Conv2D(width, 3, padding="same", activation="relu")(x)
            x = keras.layers.MaxPooling2D()(x)
        x = keras.layers.GlobalAveragePooling2D()(x)
        return keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(x))

    def augment(x, y, w):
        x = tf.image.random_flip_left_right(x)
        x = tf.image.rot90(x, tf.random.uniform((), 0, 4, tf.int32))
        return x, y, w

    def fit_score(train, score, *, y):
        keras.utils.set_random_seed(seed)
        idx = np.flatnonzero(train)
        yt = y[idx].astype(np.float32)
        w = np.where(yt > 0, 0.5 / yt.mean(), 0.5 / (1 - yt.mean())).astype(np.float32)
        ds = (tf.data.Dataset.from_tensor_slices((images[idx, ..., None], yt, w)).shuffle(len(idx), seed=seed)
              .repeat().map(augment).batch(cfg["batch"]))
        model = build(images.shape[1])
        model.compile(keras.optimizers.Adam(cfg["learning_rate"]), "binary_crossentropy")
        model.fit(ds, epochs=cfg["epochs"], steps_per_epoch=max(1, len(idx) // cfg["batch"]), shuffle=False,
                  verbose=0)
        return np.asarray(model(images[score][..., None], training=False))[:, 0]
    return fit_score


def _real_labels(X, names, is_real):
    """``is_real`` as a bool array, once ``names`` is checked to name every column of ``X`` (ValueError)."""
    if len(names) != X.shape[1]:
        raise ValueError(f"{len(names)} names for {X.shape[1]} statistics")
    return np.asarray(is_real, bool)


def separating_statistics(X, names, is_real, *, top):
    """The single statistics that best tell real frames from simulated ones.

    Parameters
    ----------
    X : (frames, statistics) array
    names : sequence of str, one per column
    is_real : (frames,) bool
    top : int, keyword-only

    Returns
    -------
    list of dict (name, auc, simulated, real), at most ``top``, most separating first: ``auc`` is
    the ROC AUC of the statistic alone as a score for "real" (below 0.5: higher in simulated
    frames), ranked by its distance from 0.5; ``simulated`` and ``real`` are the groups' means
    (histogram columns: shares of the frame's pixels; spectrum columns: log10 power shares).

    Raises
    ------
    ValueError
        When ``names`` does not name every column of ``X``.
    """
    from sklearn.metrics import roc_auc_score

    y = _real_labels(X, names, is_real)
    auc = np.array([roc_auc_score(y, X[:, j]) for j in range(X.shape[1])])  # a constant column scores 0.5
    order = np.argsort(-np.abs(auc - 0.5), kind="stable")[:top]
    return [dict(name=names[j], auc=float(auc[j]), simulated=float(X[~y, j].mean()), real=float(X[y, j].mean()))
            for j in order]


def classifier_leaning(X, names, is_real, *, C, top):
    """What the logistic regression on all statistics leans on to tell real frames from simulated ones.

    The standardised model of :func:`logistic_scores` is fitted on every row of ``X``. For a linear
    model the gap between the classes' mean log-odds is a sum over the statistics,
    ``sum_j w_j (mean_real_j - mean_sim_j) / s_j`` (``w``: coefficients, ``s``: the scaler's standard
    deviations), so each term says how much of the separation that statistic carries. A family can
    separate less on its own while the model finds the same gap through the others.

    Parameters
    ----------
    X : (frames, statistics) array
    names : sequence of str, one per column
    is_real : (frames,) bool
    C : float, keyword-only
        Inverse regularisation strength, as the separability classifier's.
    top : int, keyword-only

    Returns
    -------
    dict: ``gap`` (float, the mean log-odds of real frames minus that of simulated ones, which the
    terms sum to) and ``terms``: list of dict (name, coefficient, difference: the standardised mean
    difference real - simulated, share: the term over ``gap``), at most ``top``, largest |term| first.

    Raises
    ------
    ValueError
        When ``names`` does not name every column of ``X``.
    """
    y = _real_labels(X, names, is_real)
    model = _logistic_model(C)
    model.fit(X, y.astype(int))
    scaler, lr = model[0], model[1]
    diff = (X[y].mean(0) - X[~y].mean(0)) / scaler.scale_
    term = lr.coef_[0] * diff
    gap = float(term.sum())
    order = np.argsort(-np.abs(term), kind="stable")[:top]
    return dict(gap=gap, terms=[dict(name=names[j], coefficient=float(lr.coef_[0][j]), difference=float(diff[j]),
                                     share=float(term[j] / gap) if gap else float("nan")) for j in order])


# -- the experiment --------------------------------------------------------------------------------

def _summary(v):
    v = np.asarray([x for x in v if np.isfinite(x)], float)
    if not v.size:
        return None
    q1, med, q3 = np.percentile(v, [25, 50, 75])
    return dict(n=int(v.size), median=float(med), q1=float(q1), q3=float(q3), mean=float(v.mean()), sd=float(v.std()))


def _signal_ratios():
    """The phantom's on-resonance bSSFP signal per tissue over LV blood (flip 50 deg, mid TR, the
    magnetization-transfer factor at the middle of its range); magnitudes (fat's entry is signed
    by its opposed phase, :func:`ofrnn.simulate.mri.chemical_shift_sign`)."""
    from ..simulate.mri import Tissue, signal_table

    out = {}
    for field, tr in ((1.5, 3.0), (3.0, 3.2)):
        sig = signal_table(field_t=field, flip_deg=50.0, tr_ms=tr, mt=float(np.mean(MT_RANGE)))
        out[f"{field:g} T"] = {t.name.lower(): float(abs(sig[int(t)]) / sig[int(Tissue.LV_BLOOD)]) for t in Tissue}
    return out


def load_frames(cfg):
    """Simulated and real frames (evaluation ones only when ``cfg["evaluate"]``), and the reasons
    for any real set skipped."""
    sim = simulated_frames(REPO / cfg["cohort"], per_subject=cfg["frames_per_subject"],
                           max_subjects=cfg.get("max_subjects", 0))
    real, skipped = real_frames(SHARED, cfg["split"])
    if not cfg["evaluate"]:  # tuning: the evaluation frames are not even measured
        real = [f for f in real if f["group"].endswith("calibration")]
    if cfg.get("max_real_patients", 0) < 0:
        raise OfrnnError(f"max_real_patients must be 0 (every patient) or more, got {cfg['max_real_patients']}",
                         field="max_real_patients")
    if cfg.get("max_real_patients"):  # the first patients of each real group (a smoke run)
        first = {}
        for f in real:
            names = first.setdefault(f["group"], [])
            if f["subject"] not in names and len(names) < cfg["max_real_patients"]:
                names.append(f["subject"])
        real = [f for f in real if f["subject"] in first[f["group"]]]
    if not real:
        raise OfrnnError(f"no real frames to compare with ({'; '.join(skipped.values())})", field="shared data")
    return sim + real, skipped


def separability_tables(X, parts, frames, labels, cfg, seed):
    """Real-vs-simulated AUCs: grouped CV on the calibration frames for the statistics, each of
    their families (``parts``: name -> width in ``X``) and the CNNs, and the cross-fitted
    evaluation AUCs of each of them (the ROC curves: the statistics together and the CNNs). ``labels``: dict of per-frame arrays (groups, subjects, is_real,
    calibration, evaluation). Returns (evaluation table, calibration table, ROC curves)."""
    from ..metrics import rank_auc

    groups, subjects, is_real = labels["groups"], labels["subjects"], labels["is_real"]
    calibration, evaluation = labels["calibration"], labels["evaluation"]
    y = is_real.astype(int)
    cl = cfg["classifier"]
    use = calibration | ~is_real
    strata = frame_strata(is_real, calibration)
    fold = class_folds(subjects, strata, cl["folds"], seed)
    # (fit_score, folds, drawn in the ROC figure?, calibration CV on more fold draws?): every statistic together, then each family
    # alone (which of them gives the phantom away, on the calibration frames and on the evaluation
    # patients, where the tuning numbers have overstated gains before), then the CNNs
    ends = np.cumsum(list(parts.values()))
    learners = {"statistics": (logistic_scores(X, cl["C"]), fold, True, True)}
    learners.update({k: (logistic_scores(X[:, e - n:e], cl["C"]), fold, False, True)
                     for (k, n), e in zip(parts.items(), ends)})
    if cfg["cnn"]["enabled"]:
        from skimage.transform import resize

        cn = cfg["cnn"]
        cfold = class_folds(subjects, strata, cn["folds"], seed)
        whole = np.stack([resize(np.clip(normalise(f["image"]), 0, INTENSITY_MAX), (cn["frame_size"],) * 2,
                                 anti_aliasing=True) for f in frames]).astype(np.float32)
        crops = np.stack([heart_crop(f["image"], f["lv"], scale=cn["crop_scale"], size=cn["crop_size"])
                          for f in frames])
        # the CNNs train for a minute per fold: one draw of their folds
        learners["cnn, whole frames"] = (cnn_scores(whole, cn, seed), cfold, True, False)
        learners["cnn, heart-centred crops"] = (cnn_scores(crops, cn, seed), cfold, True, False)
    calibration_table, curves, scores = {}, {}, {}
    scored = evaluation | ~is_real
    for name, (fit, folds, draw, redraw) in learners.items():
        fs = lambda tr, sc: fit(tr, sc, y=y)  # noqa: E731
        s = calibration_scores(is_real, calibration, folds, fs)
        calibration_table[name] = auc_with_interval(s[use], is_real[use], subjects[use], n_boot=cl["bootstrap"],
                                                    seed=seed)
        if redraw and cl["fold_draws"] > 1:
            # which subjects share a fold moves a calibration CV by a few hundredths, as much as
            # the phantom changes it is used to judge: the statistics' CV again on other fold draws
            # (seed + r; draw 0 is the one above, its scores reused)
            draws = [rank_auc(is_real[use], (s if r == 0 else calibration_scores(
                is_real, calibration, class_folds(subjects, strata, cl["folds"], seed + r), fs))[use])
                for r in range(cl["fold_draws"])]
            calibration_table[name].update(fold_draws=draws, auc_fold_draws_mean=float(np.mean(draws)),
                                           auc_fold_draws_sd=float(np.std(draws, ddof=1)))
        if name == "statistics":
            curves["statistics, calibration CV"] = (s, use)
        if evaluation.any():
            scores[name] = cross_fit(is_real, calibration, evaluation, folds, fs)
            if draw:
                curves[name] = (scores[name], scored)
    table = {}
    for name, s in scores.items():
        table[name] = {}
        for real_set in ("all", "acdc", "sunnybrook"):
            m = scored & ((groups == "simulated") | (real_set == "all") | np.char.startswith(groups, real_set))
            if (m & is_real).any():
                table[name][real_set] = auc_with_interval(s[m], is_real[m], subjects[m], n_boot=cl["bootstrap"],
                                                          seed=seed)
    return table, calibration_table, curves


def group_summaries(frames, stats, tissue, groups, subjects):
    """Per-frame measures, and their median/IQR per group with the groups' mean texture curves."""
    per_frame = dict(
        lv_size=np.array([lv_size(f["lv"], f["image"].shape) if f["lv"] is not None else np.nan for f in frames]),
        rv_direction_deg=np.array([f["rv_angle"] for f in frames]),
        pixel_mm=np.array([f["spacing"] if f["spacing"] is not None else np.nan for f in frames]),
        matrix=np.array([np.sqrt(np.prod(f["image"].shape)) for f in frames]),
        # short over long side: 1 for a square field of view, below for a rectangular one
        aspect=np.array([min(f["image"].shape) / max(f["image"].shape) for f in frames]),
        **{k: np.array([r[k] if r is not None else np.nan for r in tissue])
           for k in (*TISSUE_LABELS, *LEVEL_LABELS, *PIXEL_SCALE_LABELS, *PROFILE_KEYS["blood"], *PROFILE_KEYS["air"],
                     "skin_direction_deg", "skin_distance_lv", "edge_coherence")})
    by_group = {}
    for g in GROUPS:
        idx = np.flatnonzero(groups == g)
        if idx.size:
            by_group[g] = dict(
                frames=int(idx.size), subjects=len(set(subjects[idx])),
                **{k: _summary(v[idx]) for k, v in per_frame.items()},
                texture={k: dict(mean=np.mean([stats[i][k] for i in idx], 0).tolist(),
                                 sd=np.std([stats[i][k] for i in idx], 0).tolist())
                         for k in STATISTICS})
    return per_frame, by_group


def _single_measure_auc(values, is_real):
    """ROC AUC of one per-frame measure as a score for real over the frames where it is finite;
    None when either class has no such frame."""
    from ..metrics import rank_auc

    ok = np.isfinite(values)
    auc = rank_auc(is_real[ok], values[ok])
    return None if np.isnan(auc) else auc


def run(config, profile, out_dir):
    import sklearn
    import skimage

    cfg = resolve_config(config, profile)
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    seed = int(cfg["seed"])
    st = cfg["statistics"]
    frames, skipped = load_frames(cfg)
    timings = {"read_s": time.perf_counter() - t0}
    groups = np.array([f["group"] for f in frames])
    labels = dict(groups=groups, subjects=np.array([f["group"].split()[0] + ":" + f["subject"] for f in frames]),
                  is_real=groups != "simulated", calibration=np.char.endswith(groups, "calibration"),
                  evaluation=np.char.endswith(groups, "evaluation"))

    t = time.perf_counter()
    stats = [frame_statistics(f["image"], intensity_bins=st["intensity_bins"], gradient_bins=st["gradient_bins"],
                              spectrum_bins=st["spectrum_bins"], lbp_radius=st["lbp_radius"])
             for f in tqdm(frames, desc="statistics", unit="frame")]
    X = np.array([np.concatenate([s[k] for k in STATISTICS]) for s in stats])
    tissue = [tissue_measures(f["image"], f["blood"], f["myocardium"]) if f["blood"] is not None and f["blood"].any()
              else None for f in frames]
    timings["statistics_s"] = time.perf_counter() - t
    t = time.perf_counter()
    separability, separability_calibration, curves = separability_tables(
        X, {k: len(stats[0][k]) for k in STATISTICS}, frames, labels, cfg, seed)
    timings["classifiers_s"] = time.perf_counter() - t
    # which single statistics give the phantom away, on the frames one may tune on (the
    # calibration real frames and the simulated ones), so the table can steer the phantom
    tune = labels["calibration"] | ~labels["is_real"]
    names, top = statistic_names(**st), int(cfg["report"]["separating_statistics"])
    X_tune, real_tune = X[tune], labels["is_real"][tune]
    separating = separating_statistics(X_tune, names, real_tune, top=top)
    leaning = classifier_leaning(X_tune, names, real_tune, C=cfg["classifier"]["C"], top=top)
    per_frame, by_group = group_summaries(frames, stats, tissue, groups, labels["subjects"])
    # the gradient band was looked at on the calibration frames: the evaluation patients' AUC is
    # the honest one
    scored = labels["evaluation"] | ~labels["is_real"]
    coherence_auc = dict(calibration=_single_measure_auc(per_frame["edge_coherence"][tune], real_tune),
                         evaluation=_single_measure_auc(per_frame["edge_coherence"][scored],
                                                        labels["is_real"][scored]))
    timings["total_s"] = time.perf_counter() - t0
    figures(frames, groups, labels["evaluation"], by_group, per_frame, curves, labels["is_real"], cfg, out_dir)
    metrics = dict(separability=separability, separability_calibration=separability_calibration,
                   separating_statistics=separating, classifier_leaning=leaning, groups=by_group,
                   edge_coherence_auc=coherence_auc,
                   phantom_signal_over_blood=_signal_ratios(), skipped=skipped, settings=cfg, profile=profile,
                   timings=timings, split=dict(cfg["split"], evaluation="every other real patient"),
                   versions=dict(ofrnn=__version__, python=platform.python_version(), numpy=np.__version__,
                                 scikit_learn=sklearn.__version__, scikit_image=skimage.__version__))
    write_json(out_dir / "metrics.json", metrics, nan_as_null=True)
    atomic_write_text(out_dir / "report.md", report(metrics))
    print(f"wrote {out_dir}/metrics.json, report.md, gallery.png, crops.png, edges.png, texture.png, geometry.png, "
          "profiles.png, roc.png")
    for name, table in (("calibration frames, grouped CV", separability_calibration),
                        ("evaluation frames", {k: v.get("all") for k, v in separability.items()})):
        c = table.get("statistics")
        if c:
            print(f"real vs simulated AUC (statistics, {name}): {c['auc']:.3f} [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]")
