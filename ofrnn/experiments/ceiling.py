"""A yardstick: a well-kept off-the-shelf classifier on hand-made motion features (issue 10).

``make ceiling`` (``ofrnn experiment ceiling``) trains scikit-learn's
:class:`~sklearn.ensemble.HistGradientBoostingClassifier` per myocardium pixel of the 64x64 ROI on
three groups of hand-made features, on the SAME subject-wise folds as ``make train``
(:func:`ofrnn.train.make_split` with the settings of a profile of ``experiments/train.toml``): fit
on the training subjects (early stopping on the validation subjects), choose the decision threshold
on the validation subjects (maximum Dice over their myocardium pixels), score the test fold with
:func:`ofrnn.metrics.evaluate_rois`. It runs once from the simulator's exact flow (``flow="gt"``)
and once from the flow OF-RNN sees (``flow="estimated"``, the deep optical flow), so the table
says how much of a gap is the flow and how much is the model:

* exact vs estimated flow, same features: what the flow estimate costs;
* "own motion" from the estimated flow vs OF-RNN: what OF-RNN leaves on the table with the same
  information (the flow field of the ROI and the ROI centre);
* the rows with wall geometry and slice context: what the traced myocardium (which OF-RNN is not
  given) adds.

Feature groups (per pixel of the ROI at frame 0 = end-diastole; ROI pixels unless stated):

``motion`` (:func:`motion_features`; nothing OF-RNN lacks)
    The pixel's Lagrangian trajectory from frame 0 (:func:`ofrnn.flow.lagrangian_displacement`) as
    radial and circumferential displacement about the ROI centre
    (:func:`ofrnn.flow.heart_components`) at every frame, summaries of it (peak inward radial
    displacement, its frame, value at end-systole, mean, ...) and Lagrangian (Green) strain from the
    displacement gradient, radial and circumferential, at end-systole and at its peak.
``geometry`` (:func:`geometry_features`; uses the traced myocardium mask)
    Transmural depth (0 at the endocardium, 1 at the epicardium), distance to the endocardium and
    local wall thickness (ROI pixels and mm), from Euclidean distance transforms of the mask.
``context`` (:func:`context_features`; uses the traced myocardium mask as "the rest of the slice")
    For a few motion summaries: the mean of the myocardium in the pixel's angular sector, the
    slice's median, the sector and pixel relative to that median, and the pixel's rank in the
    slice.
``position`` (:func:`position_features`; the chance-ish floor, no motion)
    Radius from the ROI centre and the slice level.
``pg_heart``, ``pg_wall`` (:func:`pg_features`; exactly OF-RNN's global input)
    OF-RNN's own P_g(p), every frame's 3x3 trajectory patch (:func:`ofrnn.flow.global_features`) in
    the heart's frame (the default of ``make train``) or the wall frame (an option), flattened. A
    row on it says whether the SAE-softmax stage of OF-RNN uses what its global input holds.

Every row is trained and scored on traced-myocardium pixels only; OF-RNN classifies every ROI
pixel, and its myocardium columns score the same pixels as these rows.

Settings in ``experiments/ceiling.toml`` (profiles ``full``, ``quick``, ``smoke``); results in
``results/ceiling/`` (metrics.json, report.md, dice.png). Each row x flow x fold is kept in
``cells/`` under a key of its settings, the cohort, the flow estimator's parameters and the feature
code, so a rerun redoes only what changed.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from ..errors import OfrnnError
from ..files import atomic_write_text, content_digest, save_figure, write_json
from ..flow import centred_grid, heart_components, lagrangian_displacement, radial_axes
from ..wall import wall_distances
from . import _cells

GROUPS = ("motion", "geometry", "context", "position", "pg_heart", "pg_wall")
FLOWS = ("gt", "estimated")
FLOW_LABELS = {"gt": "exact (simulator)", "estimated": "estimated (deep OF)"}
#: what each group uses beyond OF-RNN's inputs (stated in every report row): (input, what for)
BEYOND = {"motion": None, "geometry": ("traced myocardium mask", "wall geometry"),
          "context": ("traced myocardium mask", "slice context"), "position": ("slice level", None),
          "pg_heart": None, "pg_wall": None}
#: the P_g groups and the frame of :func:`ofrnn.flow.global_features` each reads
PG_FRAMES = {"pg_heart": "heart", "pg_wall": "wall"}
LEVEL_CODES = {"apical": 0.0, "mid": 1.0, "basal": 2.0}
#: the headline metrics of every row (myocardium pixels of the test fold, pooled)
METRICS = ("dice", "sensitivity", "specificity", "precision", "accuracy", "roc_auc", "pr_auc",
           "sensitivity_at_spec95")
#: motion summaries that the context group puts in the slice's perspective
CONTEXT_CHANNELS = ("ur_peak", "ur_es", "err_es", "ecc_es")


# -- features --------------------------------------------------------------------------------------------
def lagrangian_strain(u, *, centre=None):
    """Radial and circumferential Green-Lagrange strain of a displacement field.

    Parameters
    ----------
    u : ndarray (..., 2, H, W)
        (dy, dx) displacement since the reference frame of every reference-grid pixel (pixels), e.g.
        :func:`ofrnn.flow.lagrangian_displacement`.
    centre : (float, float), optional
        (y, x) of the LV centre; the grid's centre by default (as :func:`ofrnn.flow.heart_components`).

    Returns
    -------
    ndarray (..., 2, H, W) float32
        ``[..., 0]`` E_rr, ``[..., 1]`` E_cc (dimensionless): E = (F^T F - I) / 2 with F = I + grad u
        (``np.gradient``, central differences), projected on the radial and circumferential unit
        vectors about ``centre``. Positive = stretch (radial wall thickening), negative = shortening.
    """
    u = np.asarray(u, dtype=np.float64)
    H, W = u.shape[-2:]
    _, ey, ex = radial_axes((H, W), centre=centre, dtype=np.float64)
    uy_y, uy_x = np.gradient(u[..., 0, :, :], axis=(-2, -1))
    ux_y, ux_x = np.gradient(u[..., 1, :, :], axis=(-2, -1))
    fyy, fyx, fxy, fxx = 1 + uy_y, uy_x, ux_y, 1 + ux_x  # F[i, j] = d(X_i + u_i) / dX_j
    eyy = 0.5 * (fyy * fyy + fxy * fxy - 1)
    exx = 0.5 * (fyx * fyx + fxx * fxx - 1)
    eyx = 0.5 * (fyy * fyx + fxy * fxx)
    err = ey * ey * eyy + 2 * ey * ex * eyx + ex * ex * exx
    ecc = ex * ex * eyy - 2 * ex * ey * eyx + ey * ey * exx  # e_c = (ex, -ey)
    return np.stack([err, ecc], axis=-3).astype(np.float32)


def end_systole(radial, *, core=0.4):
    """End-systole: the frame of the largest mean inward displacement of the ROI's central disc.

    Parameters
    ----------
    radial : ndarray (T-1, H, W)
        Radial Lagrangian displacement since frame 0 (pixels), frames 1..T-1.
    core : float
        Radius of the disc as a fraction of the ROI side (0.4 covers the LV box of an ROI with the
        default 15 % margin); no mask is used, so OF-RNN could compute the same.

    Returns
    -------
    int
        Index into ``radial`` (frame ``index + 1`` of the cine).
    """
    T1, H, W = radial.shape
    r, _, _ = radial_axes((H, W), dtype=np.float64)
    disc = r <= core * min(H, W)
    return int(np.argmin(radial[:, disc].mean(axis=1)))


def motion_features(rs, *, centre=None, core=0.4):
    """Own-motion features of every ROI pixel from its flows alone (nothing OF-RNN lacks).

    Parameters
    ----------
    rs : ofrnn.pipeline.RoiSubject
        With ``flows`` (T-1, 2, H, W), (dy, dx) forward flows in ROI pixels (exact or estimated).
    centre : (float, float), optional
        LV centre (y, x); the ROI centre by default (the ROI is cut around the LV box).
    core : float
        See :func:`end_systole`.

    Returns
    -------
    maps : ndarray (H, W, F) float32
        Per frame t = 1..T-1: radial ``ur_fTT`` and circumferential ``uc_fTT`` displacement since frame 0
        (ROI pixels; radial < 0 = inward); then the summaries ``ur_peak`` (most inward radial
        displacement), ``t_peak`` (its frame / (T-1)), ``ur_es`` (at end-systole, :func:`end_systole`),
        ``ur_mean``, ``uc_es``, ``uc_range``, ``umag_max`` (largest |u|), ``err_es``, ``ecc_es`` (strain at
        end-systole, :func:`lagrangian_strain`), ``err_peak`` (max E_rr), ``ecc_peak`` (min E_cc),
        ``err_mean``, ``ecc_mean``.
    names : tuple of str
        F names, in order.
    """
    if rs.flows is None:
        raise OfrnnError("no flows (prepare the subject with a flow source)", field=f"subjects/{rs.id}/flows")
    flows = np.asarray(rs.flows, dtype=np.float32)
    if flows.ndim != 4 or flows.shape[1] != 2:
        raise OfrnnError(f"expected (T-1, 2, H, W) flows, got {flows.shape}", field=f"subjects/{rs.id}/flows")
    u = lagrangian_displacement(flows)                # (T-1, 2, H, W)
    ur, uc = np.moveaxis(heart_components(u, centre=centre), 1, 0)  # (T-1, H, W) each
    strain = lagrangian_strain(u, centre=centre)      # (T-1, 2, H, W)
    err, ecc = strain[:, 0], strain[:, 1]
    es = end_systole(ur, core=core)
    n = ur.shape[0]
    summary = dict(ur_peak=ur.min(0), t_peak=(ur.argmin(0) + 1) / n, ur_es=ur[es], ur_mean=ur.mean(0),
                   uc_es=uc[es], uc_range=uc.max(0) - uc.min(0), umag_max=np.hypot(u[:, 0], u[:, 1]).max(0),
                   err_es=err[es], ecc_es=ecc[es], err_peak=err.max(0), ecc_peak=ecc.min(0),
                   err_mean=err.mean(0), ecc_mean=ecc.mean(0))
    names = ([f"ur_f{t + 1:02d}" for t in range(n)] + [f"uc_f{t + 1:02d}" for t in range(n)] + list(summary))
    maps = np.concatenate([ur, uc, np.stack(list(summary.values()))]).astype(np.float32)
    return np.moveaxis(maps, 0, -1), tuple(names)


def geometry_features(rs):
    """Wall geometry of every ROI pixel from the traced myocardium mask (which OF-RNN is NOT given).

    Parameters
    ----------
    rs : ofrnn.pipeline.RoiSubject
        With ``myocardium`` (H, W) at frame 0 (end-diastole) and ``transform`` (for mm).

    Returns
    -------
    maps : ndarray (H, W, 4) float32
        ``depth`` transmural depth d_endo / (d_endo + d_epi) (near 0 at the endocardium, near 1 at the
        epicardium), ``d_endo`` distance to the LV cavity (ROI pixels), ``thickness`` local wall
        thickness d_endo + d_epi - 1 (ROI pixels) and ``thickness_mm`` (the same in mm, via the ROI scale
        and the pixel spacing). d_endo and d_epi are Euclidean distance transforms
        (:func:`scipy.ndimage.distance_transform_edt`) to the cavity and to the outside of the filled
        ring (:func:`ofrnn.wall.wall_distances`). Values outside the myocardium are defined but meaningless.
    names : tuple of str
    """
    if rs.myocardium is None:
        raise OfrnnError("no myocardium mask", field=f"subjects/{rs.id}/myocardium")
    myo = np.asarray(rs.myocardium, dtype=bool)
    if not myo.any():
        raise OfrnnError("empty myocardium mask", field=f"subjects/{rs.id}/myocardium")
    distances = wall_distances(myo)
    if distances is None:
        raise OfrnnError("the myocardium mask encloses no cavity", field=f"subjects/{rs.id}/myocardium")
    d_endo, d_epi = distances
    total = np.maximum(d_endo + d_epi, 1e-6)
    thick = np.maximum(d_endo + d_epi - 1, 0)
    mm = float(rs.transform.scale) * float(rs.spacing_mm[0])
    maps = np.stack([d_endo / total, d_endo, thick, thick * mm], axis=-1).astype(np.float32)
    return maps, ("depth", "d_endo", "thickness", "thickness_mm")


def sectors(shape, n_sectors, *, centre=None):
    """Angular sector (0..n_sectors-1) of every pixel about ``centre`` (the grid's centre by default)."""
    dy, dx = centred_grid(shape, centre=centre)
    theta = np.arctan2(dy.astype(np.float64), dx.astype(np.float64))  # (-pi, pi]
    return np.minimum(((theta + np.pi) / (2 * np.pi) * n_sectors).astype(int), n_sectors - 1)


def context_features(rs, motion, *, n_sectors=12, channels=CONTEXT_CHANNELS, centre=None):
    """Slice context of every ROI pixel: its sector's and its own motion relative to the slice.

    Uses the traced myocardium mask (which OF-RNN is NOT given) to define "the rest of the slice".

    Parameters
    ----------
    rs : ofrnn.pipeline.RoiSubject
        With ``myocardium`` (H, W).
    motion : (ndarray (H, W, F), names)
        The output of :func:`motion_features`.
    n_sectors : int
        Angular sectors about ``centre`` (the ROI centre by default).
    channels : sequence of str
        Motion summaries to put in context (names of ``motion``).

    Returns
    -------
    maps : ndarray (H, W, 5 * len(channels)) float32
        Per channel c: ``c_sector`` (mean over the myocardium of the pixel's sector; NaN for a sector
        without myocardium), ``c_median`` (the slice's myocardium median), ``c_sector_rel`` (sector mean
        minus median), ``c_rel`` (pixel minus median), ``c_rank`` (the pixel's percentile rank among the
        slice's myocardium pixels, 0..1; 0.5 off the myocardium). Units of the channel.
    names : tuple of str
    """
    maps, names = motion
    myo = np.asarray(rs.myocardium, dtype=bool)
    if not myo.any():
        raise OfrnnError("empty myocardium mask", field=f"subjects/{rs.id}/myocardium")
    if n_sectors < 1:
        raise OfrnnError(f"must be >= 1, got {n_sectors}", field="features.n_sectors")
    sec = sectors(myo.shape, n_sectors, centre=centre)
    counts = np.bincount(sec[myo], minlength=n_sectors)
    out, out_names = [], []
    for c in channels:
        if c not in names:
            raise OfrnnError(f"{c!r} is not a motion feature", field="features.context_channels")
        v = maps[..., names.index(c)].astype(np.float64)
        med = float(np.median(v[myo]))
        sums = np.bincount(sec[myo], weights=v[myo], minlength=n_sectors)
        means = np.divide(sums, counts, out=np.full(n_sectors, np.nan), where=counts > 0)
        sector_mean = means[sec]
        order = np.argsort(np.argsort(v[myo], kind="stable"), kind="stable")
        rank = np.full(myo.shape, 0.5)
        rank[myo] = (order + 0.5) / myo.sum()
        out += [sector_mean, np.full(myo.shape, med), sector_mean - med, v - med, rank]
        out_names += [f"{c}_sector", f"{c}_median", f"{c}_sector_rel", f"{c}_rel", f"{c}_rank"]
    return np.stack(out, axis=-1).astype(np.float32), tuple(out_names)


def position_features(rs, *, centre=None):
    """Position only (no motion): radius from the ROI centre (ROI pixels) and the slice level
    (apical 0, mid 1, basal 2, NaN otherwise), as maps (H, W, 2) float32 and their names."""
    H, W = rs.roi.shape[-2:] if rs.roi is not None else rs.myocardium.shape
    r, _, _ = radial_axes((H, W), centre=centre, dtype=np.float64)
    level = np.full((H, W), LEVEL_CODES.get(rs.level, np.nan))
    return np.stack([r, level], axis=-1).astype(np.float32), ("radius", "level")


def pg_features(rs, frame):
    """OF-RNN's global input P_g(p) (paper Sec. 2) of every ROI pixel, as maps (H, W, (T-1) 27)
    float32 and their names ``<frame>_<block>_<sample>_fTT``: :func:`ofrnn.flow.global_features` with the
    3x3 patch of the paper in ``frame`` ("heart" or "wall"), every frame's blocks side by side."""
    from ..flow import GLOBAL_FEATURE_LAYOUTS, global_features

    if rs.flows is None:
        raise OfrnnError("no flows (prepare the subject with a flow source)", field=f"subjects/{rs.id}/flows")
    g = global_features(rs.flows, patch=3, frame=frame)
    H, W, T1, F = g.shape
    layout = GLOBAL_FEATURE_LAYOUTS[frame]
    names = tuple(f"{frame}_{layout[b]}_{i}_f{t + 1:02d}" for t in range(T1) for b in range(len(layout))
                  for i in range(F // len(layout)))
    return g.reshape(H, W, T1 * F), names


def subject_features(rs, groups, *, n_sectors=12, core=0.4, channels=CONTEXT_CHANNELS):
    """Feature rows of a subject's myocardium pixels for each of ``groups``.

    Returns
    -------
    dict
        ``group -> (ndarray (n_myo, F_group) float32, names)``, the rows in row-major order of the
        myocardium pixels (``np.nonzero(rs.myocardium)``); also ``"label"`` -> uint8 (n_myo,) of the
        traced infarct.
    """
    unknown = set(groups) - set(GROUPS)
    if unknown:
        raise OfrnnError(f"unknown feature groups {sorted(unknown)} (have: {', '.join(GROUPS)})", field="groups")
    if rs.infarct is None or rs.myocardium is None:
        raise OfrnnError("no infarct / myocardium labels (the yardstick needs traced labels)",
                         field=f"subjects/{rs.id}")
    myo = np.asarray(rs.myocardium, dtype=bool)
    out = {"label": np.asarray(rs.infarct, dtype=bool)[myo].astype(np.uint8)}
    motion = motion_features(rs, core=core) if {"motion", "context"} & set(groups) else None
    for g in groups:
        if g == "motion":
            maps, names = motion
        elif g == "geometry":
            maps, names = geometry_features(rs)
        elif g == "context":
            maps, names = context_features(rs, motion, n_sectors=n_sectors, channels=channels)
        elif g in PG_FRAMES:
            maps, names = pg_features(rs, PG_FRAMES[g])
        else:
            maps, names = position_features(rs)
        out[g] = (maps[myo], names)
    return out


def design(tables, ids, groups):
    """(X (n, F) float32, y (n,) uint8, feature names) of the myocardium pixels of subjects ``ids``."""
    X = np.concatenate([np.concatenate([tables[s][g][0] for g in groups], axis=1) for s in ids])
    y = np.concatenate([tables[s]["label"] for s in ids])
    names = [n for g in groups for n in tables[ids[0]][g][1]]
    return X, y, names


# -- the classifier --------------------------------------------------------------------------------------
def make_classifier(gbm, seed):
    """The HistGradientBoostingClassifier of the settings table ``gbm`` (see experiments/ceiling.toml)."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    known = {"max_iter", "learning_rate", "max_leaf_nodes", "min_samples_leaf", "l2_regularization",
             "class_weight", "early_stopping", "n_iter_no_change", "max_bins"}
    unknown = set(gbm) - known
    if unknown:
        raise OfrnnError(f"unknown settings {sorted(unknown)} (have: {', '.join(sorted(known))})", field="gbm")
    kw = dict(gbm)
    cw = kw.pop("class_weight", "none")
    if cw not in ("none", "balanced"):
        raise OfrnnError(f"must be 'none' or 'balanced', got {cw!r}", field="gbm.class_weight")
    kw["early_stopping"] = bool(kw.get("early_stopping", True))
    return HistGradientBoostingClassifier(class_weight=None if cw == "none" else "balanced", random_state=seed, **kw)


def fit_predict(tables, split, groups, gbm, seed):
    """Fit on ``split["train"]`` (early stopping on ``split["val"]``), pick the threshold on the validation
    subjects (maximum Dice over their myocardium pixels) and predict the test subjects.

    Returns
    -------
    dict
        ``threshold``, ``test_probs`` {id: (n_myo,) float32}, ``n_iter``, ``n_train``, ``fit_s``,
        ``predict_s``.
    """
    from .. import metrics as M

    Xtr, ytr, _ = design(tables, split["train"], groups)
    Xva, yva, _ = design(tables, split["val"], groups)
    clf = make_classifier(gbm, seed)
    t0 = time.perf_counter()
    if clf.early_stopping:
        clf.fit(Xtr, ytr, X_val=Xva, y_val=yva)
    else:
        clf.fit(Xtr, ytr)
    fit_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    thr = M.dice_threshold(yva, clf.predict_proba(Xva)[:, 1])
    probs = {s: clf.predict_proba(np.concatenate([tables[s][g][0] for g in groups], axis=1))[:, 1].astype(np.float32)
             for s in split["test"]}
    # a positive threshold keeps the zero probability off the myocardium negative
    return dict(threshold=max(float(thr), 1e-6), test_probs=probs, n_iter=int(clf.n_iter_), n_train=int(len(ytr)),
                fit_s=fit_s, predict_s=time.perf_counter() - t0)


def fold_metrics(subjects, test_probs, threshold):
    """:func:`ofrnn.metrics.evaluate_rois` of myocardium-pixel probabilities (0 off the myocardium)."""
    from .. import metrics as M

    maps = []
    for rs in subjects:
        p = np.zeros(rs.myocardium.shape, np.float32)
        p[rs.myocardium.astype(bool)] = test_probs[rs.id]
        maps.append(p)
    m, _ = M.evaluate_rois(subjects, maps, threshold)
    return dict(myocardium={k: m["myocardium"][k] for k in METRICS}, dice_myocardium_mean=m["dice_myocardium_mean"],
                size_error_abs_mean_pct=m["size_error_abs_mean_pct"], segments=m["segments"]["accuracy"],
                segment_auc=m["segments"]["auc"])


# -- the experiment -------------------------------------------------------------------------------------
def _settings(config, profile):
    cfg = _cells.resolve_plain(config, profile)
    for key in ("cohort", "train_profile", "folds", "rows", "gbm"):
        if key not in cfg:
            raise OfrnnError("missing setting", field=key)
    if not isinstance(cfg["rows"], dict) or not cfg["rows"]:
        raise OfrnnError("must be a table of rows", field="rows")
    for name, row in cfg["rows"].items():
        groups, flows = row.get("groups"), row.get("flows", list(FLOWS))
        if not groups or set(groups) - set(GROUPS):
            raise OfrnnError(f"must be a list of {', '.join(GROUPS)}", field=f"rows.{name}.groups")
        if not flows or set(flows) - set(FLOWS):
            raise OfrnnError(f"must be a list of {', '.join(FLOWS)}", field=f"rows.{name}.flows")
    only = cfg.get("flows")
    if only is not None and (not only or set(only) - set(FLOWS)):
        raise OfrnnError(f"must be a list of {', '.join(FLOWS)}", field="flows")
    return cfg


def _train_settings(cfg):
    """The train.toml profile whose folds and ROIs the yardstick shares, with ``train_overrides``."""
    from ..settings import apply_overrides, load_profile

    tcfg = load_profile(cfg["train_profile"], _cells._path(cfg.get("train_settings", "experiments/train.toml")))
    tcfg = apply_overrides(tcfg, cfg.get("train_overrides", {}), table="train_overrides")
    _cells.refuse_beyond_training(tcfg, cfg["train_profile"])
    return tcfg


def _code_version():
    """A hash of the code that makes the features (this module, the flow trajectories and the wall
    distances), so that a change of it invalidates the kept cells."""
    from .. import wall
    from ..flow import trajectory

    return _key([Path(m.__file__).read_bytes().hex() for m in (trajectory, wall)] + [Path(__file__).read_bytes().hex()])


def _key(blob):
    return hashlib.sha1(json.dumps(blob, sort_keys=True, default=str).encode()).hexdigest()[:12]


def summarise(folds):
    """Mean and sd over folds of the myocardium metrics and the segment accuracies of one row."""
    out = {k: _cells.mean_sd([f["metrics"]["myocardium"].get(k) for f in folds]) for k in METRICS}
    out["dice_myocardium_mean"] = _cells.mean_sd([f["metrics"]["dice_myocardium_mean"] for f in folds])
    levels = sorted({lv for f in folds for lv in f["metrics"]["segments"]})
    out["segments"] = {lv: _cells.mean_sd([f["metrics"]["segments"].get(lv) for f in folds]) for lv in levels}
    out["segment_auc"] = _cells.mean_sd([f["metrics"]["segment_auc"] for f in folds])
    out["threshold"] = _cells.mean_sd([f["threshold"] for f in folds])
    out["fit_s"] = _cells.mean_sd([f["fit_s"] for f in folds])
    return out


def beyond(groups):
    """What a row uses beyond OF-RNN's inputs, in words."""
    uses = {}
    for g in groups:
        if BEYOND[g]:
            what, why = BEYOND[g]
            uses.setdefault(what, []).extend([why] if why else [])
    if not uses:
        return "none (its flow and the ROI centre)"
    return "; ".join(f"{w} ({', '.join(y)})" if y else w for w, y in uses.items())


def _versions():
    import scipy
    import sklearn

    from .._version import __version__

    return dict(ofrnn=__version__, python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__,
                sklearn=sklearn.__version__, cpu=platform.processor() or platform.machine(), cpu_count=os.cpu_count())


def run(config, profile, out_dir):
    from threadpoolctl import threadpool_limits
    from tqdm import tqdm

    from ..pipeline import prepare_cohort
    from ..store import open_cohort
    from ..train import make_split

    t_start = time.perf_counter()
    cfg = _settings(config, profile)
    tcfg = _train_settings(cfg)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cohort = _cells._path(cfg["cohort"])
    if not cohort.is_file():
        raise OfrnnError("no such cohort (run 'make data')", path=cohort, field="cohort")
    cache = _cells._path(cfg.get("cache", "results/train/cache"))
    feats = cfg.get("features", {})
    fkw = dict(n_sectors=int(feats.get("n_sectors", 12)), core=float(feats.get("core", 0.4)),
               channels=tuple(feats.get("context_channels", CONTEXT_CHANNELS)))
    seed = int(cfg.get("seed", tcfg.seed))
    progress = cfg.get("progress", True)
    with open_cohort(cohort) as c:
        ids = list(c.ids)
    if cfg.get("subjects"):
        ids = ids[: int(cfg["subjects"])]
    st = cohort.stat()
    flows = [f for f in FLOWS if (cfg.get("flows") is None or f in cfg["flows"])
             and any(f in r.get("flows", FLOWS) for r in cfg["rows"].values())]
    rows = {name: dict(label=r.get("label", name), groups=list(r["groups"]),
                       flows=[f for f in r.get("flows", FLOWS) if f in flows]) for name, r in cfg["rows"].items()}
    results, timings, split_ids, folds = {}, dict(prepare_s={}, features_s={}), {}, None
    cells = out_dir / "cells"
    from ..flow import DEFAULTS as flow_params

    code = _code_version()
    for flow in flows:
        t0 = time.perf_counter()
        subjects = prepare_cohort(cohort, frames=tcfg.frames, roi="gt", flow=flow, margin=tcfg.roi_margin,
                                  cache_dir=cache, ids=ids, progress=progress)
        timings["prepare_s"][flow] = time.perf_counter() - t0
        by_id = {r.id: r for r in subjects}
        levels = [by_id[s].level for s in ids]
        folds = _cells.fold_list(cfg, tcfg.n_folds)
        splits = {k: make_split(ids, levels, str(k), tcfg) for k in folds}
        split_ids = {k: {p: splits[k][p] for p in ("train", "val", "test")} for k in folds}
        need = sorted({g for r in rows.values() if flow in r["flows"] for g in r["groups"]}, key=GROUPS.index)
        t0 = time.perf_counter()
        tables = {rs.id: subject_features(rs, need, **fkw)
                  for rs in tqdm(subjects, desc=f"features ({flow} flow)", unit="subject", disable=not progress)}
        timings["features_s"][flow] = time.perf_counter() - t0
        jobs = [(name, k) for name, r in rows.items() if flow in r["flows"] for k in folds]
        bar = tqdm(jobs, desc=f"yardstick ({flow} flow)", unit="fit", disable=not progress)
        for name, k in bar:
            bar.set_postfix_str(f"{name} fold {k}")
            groups = rows[name]["groups"]
            key = _key(dict(groups=groups, flow=flow, fold=k, gbm=cfg["gbm"], seed=seed, features=fkw, ids=ids,
                            split=split_ids[k], frames=tcfg.frames, roi_margin=tcfg.roi_margin,
                            cohort=str(cohort), size=st.st_size, mtime=st.st_mtime_ns, code=code,
                            flow_params=flow_params if flow == "estimated" else None))
            done = cells / f"{name}-{flow}" / f"fold{k}.json"
            old = json.loads(done.read_text()) if done.is_file() else None
            if old is None or old.get("key") != key:
                t_cell = time.perf_counter()
                with threadpool_limits(limits=int(cfg["threads"]) if cfg.get("threads") else None):
                    fp = fit_predict(tables, splits[k], groups, cfg["gbm"], seed)
                m = fold_metrics([by_id[s] for s in splits[k]["test"]], fp["test_probs"], fp["threshold"])
                old = dict(key=key, row=name, flow=flow, fold=k, n_train_subjects=len(splits[k]["train"]),
                           n_val_subjects=len(splits[k]["val"]), n_test_subjects=len(splits[k]["test"]),
                           n_train_pixels=fp["n_train"], threshold=fp["threshold"], n_iter=fp["n_iter"],
                           fit_s=fp["fit_s"], predict_s=fp["predict_s"], total_s=time.perf_counter() - t_cell,
                           metrics=m)
                write_json(done, old)
            results.setdefault((name, flow), []).append(old)
        del subjects, by_id, tables
    table = []
    for name, r in rows.items():
        for flow in r["flows"]:
            fs = results[(name, flow)]
            motion = bool(set(r["groups"]) - {"geometry", "position"})
            table.append(dict(row=name, label=r["label"], flow=flow if motion else None, groups=r["groups"],
                              beyond=beyond(r["groups"]), folds=[f["fold"] for f in fs], summary=summarise(fs),
                              per_fold=[{k: v for k, v in f.items() if k != "key"} for f in fs]))
    wall = time.perf_counter() - t_start
    timings["fits_s"] = float(sum(f["total_s"] for fs in results.values() for f in fs))
    timings["wall_s"] = wall
    result = dict(rows=table, folds=folds, splits=split_ids, seed=seed, cohort_sha256=content_digest(cohort), n_subjects=len(ids),
                  train_profile=cfg["train_profile"], split_settings={p: getattr(tcfg, p) for p in
                                                                      ("seed", "n_folds", "val_fraction", "frames",
                                                                       "roi_margin")},
                  features=dict(fkw, channels=list(fkw["channels"])), gbm=cfg["gbm"], profile=cfg["profile"],
                  versions=_versions(), timings=timings, seconds=wall, settings=cfg)
    write_json(out_dir / "metrics.json", result, nan_as_null=True)
    figure(out_dir / "dice.png", table)
    atomic_write_text(out_dir / "report.md", "\n".join(report(result)) + "\n")
    print(f"wrote {out_dir}/metrics.json, report.md and dice.png")
    return 0


# -- outputs ---------------------------------------------------------------------------------------------
def _ms(s, pct=True, digits=1):
    if s is None or s.get("mean") is None:
        return "n/a"
    k = 100 if pct else 1
    return f"{k * s['mean']:.{digits}f} ± {k * s['sd']:.{digits}f}"


def report(result):
    """The lines of report.md."""
    folds = result["folds"]
    v = result["versions"]
    L = ["# Yardstick: gradient boosting on hand-made motion features", "",
         f"scikit-learn `HistGradientBoostingClassifier` per myocardium pixel, on the subject-wise folds of "
         f"`make train` (training settings `{result['train_profile']}`: {result['split_settings']['n_folds']}-fold CV, "
         f"seed {result['split_settings']['seed']}); folds {folds}, {result['n_subjects']} subjects of "
         f"the cohort with content digest {result['cohort_sha256']}. Fit on the training subjects (early stopping on the validation subjects), "
         "threshold = maximum Dice over the validation subjects' myocardium pixels, scored on the test fold's "
         "myocardium pixels (pooled per fold). Mean ± sd over folds, in %.", "",
         "| row | flow | inputs beyond OF-RNN's | Dice | sensitivity | specificity | ROC AUC | "
         "sensitivity at specificity 0.95 | AHA segment accuracy |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        s = r["summary"]
        flow = FLOW_LABELS[r["flow"]] if r["flow"] else "none (no motion)"
        L.append(f"| {r['label']} | {flow} | {r['beyond']} | {_ms(s['dice'])} | {_ms(s['sensitivity'])} | "
                 f"{_ms(s['specificity'])} | {_ms(s['roc_auc'], digits=2)} | {_ms(s['sensitivity_at_spec95'])} | "
                 f"{_ms(s['segments'].get('all'))} |")
    by = {(r["row"], r["flow"]): r["summary"]["dice"]["mean"] for r in result["rows"]}
    gaps = [f"{r}: {100 * (by[(r, 'gt')] - by[(r, 'estimated')]):+.1f} points"
            for r in dict.fromkeys(x[0] for x in by) if by.get((r, "gt")) is not None
            and by.get((r, "estimated")) is not None]
    L += ["", "Every row is trained and scored on traced-myocardium pixels only (the mask chooses the pixels; "
              "OF-RNN classifies the whole ROI, and its myocardium numbers score these same pixels). "
              "Own motion: radial / circumferential Lagrangian displacement about the ROI centre at every frame, "
              "summaries of it and radial / circumferential Green strain (end-systole = largest mean inward "
              "displacement of the ROI's central disc, no mask). Wall geometry: transmural depth, distance to "
              "the endocardium, wall thickness (ROI pixels, mm) from the traced myocardium. Slice context: for "
              f"{', '.join(result['features']['channels'])}, the mean of the pixel's sector "
              f"({result['features']['n_sectors']} about the ROI centre), the slice median, both relative to "
              "it, and the pixel's rank among the slice's myocardium pixels. Position only: radius from the ROI "
              "centre and the slice level.", ""]
    if gaps:
        L += ["Exact minus estimated flow, myocardium Dice (what the flow estimate costs): " + "; ".join(gaps) + ".",
              ""]
    L += ["![myocardium Dice and ROC AUC per row](dice.png)", "",
          f"GBM settings: {result['gbm']}; random_state {result['seed']}. Features: {result['features']}.", "",
          f"Environment: ofrnn {v['ofrnn']}, Python {v['python']}, NumPy {v['numpy']}, SciPy {v['scipy']}, "
          f"scikit-learn {v['sklearn']}; {v['cpu_count']} CPU cores. Wall time {result['seconds']:.0f} s "
          f"(fits {result['timings']['fits_s']:.0f} s).", ""]
    return L


def figure(path, table):
    """Bars of myocardium Dice and ROC AUC per row (exact and estimated flow side by side), fold sd as
    error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["row"] for r in table))
    labels = {r["row"]: r["label"] for r in table}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.3), dpi=100)
    width = 0.38
    for ax, metric, title in ((axes[0], "dice", "myocardium Dice"), (axes[1], "roc_auc", "myocardium ROC AUC")):
        for j, flow in enumerate(("gt", "estimated", None)):
            xs, ms, sds = [], [], []
            for i, n in enumerate(names):
                r = next((r for r in table if r["row"] == n and r["flow"] == flow), None)
                if r is None or r["summary"][metric]["mean"] is None:
                    continue
                xs.append(i + (0 if flow is None else (j - 0.5) * width))
                ms.append(r["summary"][metric]["mean"])
                sds.append(r["summary"][metric]["sd"])
            if xs:
                ax.bar(xs, ms, width, yerr=sds, capsize=3,
                       label=FLOW_LABELS[flow] + " flow" if flow else "no motion", color=("C0", "C1", "0.6")[j])
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([labels[n] for n in names], rotation=20, ha="right", fontsize=8)
        ax.set_ylim(0.5 if metric == "roc_auc" else 0, 1)
        ax.set_title(f"{title} (mean ± sd over folds)", fontsize=9)
    handles, names_ = axes[0].get_legend_handles_labels()
    fig.legend(handles, names_, loc="upper center", ncol=3, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    save_figure(fig, path)
    plt.close(fig)
