"""Optical-flow benchmark (paper Table 3 and Fig. 4): ``make flow-bench`` / ``ofrnn experiment flow``.

Parts (settings in experiments/flow.toml):

- ``simulated``: Table 3 on the simulated cohort's 64x64 LV ROI sequences, every consecutive pair,
  exact ground truth, AAE/EPE on the myocardium where the ground truth is valid, density, ms/pair;
- ``flyingchairs`` and ``motorcycle``: real textures with ground truth (EPE, AAE);
- ``sunnybrook``: the manual ED endocardial contour propagated to ES by the chained flow, Dice and
  mean contour distance (mm) against the manual ES contour, on the evaluation patients only;
- ``acdc``: ED masks (LV cavity, LV epicardium) propagated to ES by the ED->ES flow, Dice, on the
  evaluation patients only;
- ``tracking``: Sunnybrook's protocol on the simulated ROI sequences, where the truth is exact: the
  ED cavity contour carried to ES by the chained flow, contour distance (px) and area ratio;
- ``fig4``: start/end-of-systole frames and colour-coded deep OF vs HS (and ground truth).

The ``tune`` profile instead searches the parameters of the deep flow and of the baselines on a
separately simulated *training* cohort (another seed), never on the evaluation cohort.
Real-data parts are skipped, with a note, when their folder is absent.
"""
from __future__ import annotations

import json
import os
import platform
import time
from functools import partial
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import flow as F
from ..errors import OfrnnError
from ..files import atomic_write_text, content_digest, save_figure, write_json
from ..flow import metrics
from . import merge, resolve_config
from .realdata import acdc_patient, acdc_sequences, is_calibration, real_split, sunnybrook_patient

#: the paper's Table 3 (AAE mean, sd in degrees; density)
PAPER_TABLE3 = {
    "hs": (12.6, 9.2, 1.00),
    "pyramid-hs": (7.4, 3.4, 1.00),
    "deep": (5.7, 2.3, 1.00),
    "lucas-kanade": (5.7, 4.1, 0.55),
    "phase": (5.5, 3.9, 0.13),
}
DENSE = ("deep", "deep-no-matching", "hs", "pyramid-hs", "farneback", "dis", "opencv-deepflow", "opencv-tvl1", "skimage-tvl1",
         "skimage-ilk")


def _resolve(path):
    p = Path(path)
    return p if p.is_absolute() else Path.cwd() / p


def _versions():
    import cv2
    import scipy
    import skimage

    from .._version import __version__
    return {"ofrnn": __version__, "python": platform.python_version(), "numpy": np.__version__,
            "scipy": scipy.__version__, "scikit-image": skimage.__version__, "opencv": cv2.__version__,
            "machine": platform.machine(), "cpus": os.cpu_count()}


def _run_method(name, a, b, params, *, repeats=1):
    """Run a method by benchmark name; ``params[name]`` holds its keywords, and a ``method`` key
    there makes the name a variant of another method (e.g. deep OF with the matching term on).

    Returns the flow and the fastest of ``repeats`` timed calls in ms (on a single pair one call
    also times the first call's warm-up and any other load of the moment)."""
    kw = dict(params.get(name, {}))
    fn = F.METHODS[kw.pop("method", name)]
    best = np.inf
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        f = fn(a, b, **kw)
        best = min(best, time.perf_counter() - t)
    return f, best * 1e3


# --------------------------------------------------------------------------- simulated cohort

def load_roi_sequences(path, *, subjects=0, desc="load"):
    """(id, cine, gt flow, myocardium&valid mask, valid mask) per subject, cropped to the 64x64 ROI."""
    from ..roi import crop, crop_flow, sequence_transform
    from ..store import open_cohort

    out = []
    with open_cohort(path) as c:
        ids = c.ids[:subjects] if subjects else c.ids
        load_roi_sequences.total = len(c.ids)
        for sid in tqdm(ids, desc=desc, unit="subject", leave=False):
            s = c.read(sid, fields=["cine", "lv_box", "flow", "flow_valid", "myocardium_t"])
            t = sequence_transform(s.lv_box)
            valid = crop(s.flow_valid, t, order=0) > 0
            myo = crop(s.myocardium_t, t, order=0)[:-1] > 0
            out.append((sid, crop(s.cine, t), crop_flow(s.flow, t), valid & myo, valid))
    return out


def evaluate_sequences(seqs, methods, params, *, step=1, desc="table 3"):
    """Per-method, per-subject AAE/EPE/density and per-pair timings on ROI sequences."""
    res = {m: {"aae": [], "epe": [], "aae_tissue": [], "density": [], "ms": []} for m in methods}
    for sid, cine, gt, myo, valid in tqdm(seqs, desc=desc, unit="subject"):
        pairs = range(0, len(cine) - 1, step)
        for m in methods:
            flows, ms = [], []
            for i in pairs:
                f, t = _run_method(m, cine[i], cine[i + 1], params)
                flows.append(f)
                ms.append(t)
            fl = np.stack(flows)
            g, mk, vk = gt[list(pairs)], myo[list(pairs)], valid[list(pairs)]
            r = res[m]
            r["aae"].append(metrics.aae(fl, g, mk))
            r["epe"].append(metrics.epe(fl, g, mk))
            r["aae_tissue"].append(metrics.aae(fl, g, vk))
            r["density"].append(metrics.density(fl, mk))
            r["ms"].extend(ms)
    return res


def _summary(r):
    a = np.array(r["aae"], float)
    ok = np.isfinite(a)
    return {"aae_mean": float(np.nanmean(a)) if ok.any() else None,
            "aae_sd": float(np.nanstd(a)) if ok.any() else None,
            "epe_mean": float(np.nanmean(r["epe"])) if ok.any() else None,
            "aae_tissue_mean": float(np.nanmean(r["aae_tissue"])) if ok.any() else None,
            "density": float(np.nanmean(r["density"])),
            "ms_per_pair_median": float(np.median(r["ms"])), "subjects": int(ok.sum()),
            "per_subject_aae": [None if not np.isfinite(x) else float(x) for x in a]}


def simulated(cfg, params):
    sc = cfg["simulated"]
    path = _resolve(sc["cohort"])
    if not path.exists():
        return {"skipped": f"{sc['cohort']} not found (run `make data`)"}
    seqs = load_roi_sequences(path, subjects=sc.get("subjects", 0))
    methods = sc["methods"]
    res = evaluate_sequences(seqs, methods, params, step=sc.get("step", 1))
    table = {m: _summary(res[m]) for m in methods}
    # The pipeline's path: the whole sequence as one batch, then the trajectory features.
    seq_aae, seq_epe, seq_tissue, seq_ms, feat_ms = [], [], [], [], []
    for sid, cine, gt, myo, valid in tqdm(seqs, desc="deep OF sequences", unit="subject"):
        t0 = time.perf_counter()
        fl = F.sequence_flow(cine, **params.get("deep", {}))
        t1 = time.perf_counter()
        F.global_features(fl)
        t2 = time.perf_counter()
        seq_aae.append(metrics.aae(fl, gt, myo))
        seq_epe.append(metrics.epe(fl, gt, myo))
        seq_tissue.append(metrics.aae(fl, gt, valid))
        seq_ms.append((t1 - t0) * 1e3)
        feat_ms.append((t2 - t1) * 1e3)
    n_pairs = len(seqs[0][1]) - 1
    table["deep (sequence batch)"] = {
        "aae_mean": float(np.mean(seq_aae)), "aae_sd": float(np.std(seq_aae)), "epe_mean": float(np.mean(seq_epe)),
        "aae_tissue_mean": float(np.mean(seq_tissue)), "density": 1.0, "ms_per_pair_median": float(np.median(seq_ms)) / n_pairs, "subjects": len(seqs),
        "per_subject_aae": [float(x) for x in seq_aae]}
    return {"cohort_sha256": content_digest(path), "subjects": len(seqs), "cohort_subjects": load_roi_sequences.total,
            "pairs_per_subject": n_pairs,
            "step": sc.get("step", 1), "mask": "myocardium (per frame) & flow_valid; aae_tissue: flow_valid",
            "table": table,
            "sequence_timing": {"frames": n_pairs + 1, "flow_ms_median": float(np.median(seq_ms)),
                                "features_ms_median": float(np.median(feat_ms)),
                                "total_ms_median": float(np.median(np.add(seq_ms, feat_ms)))}}


def tracking_cases(path, *, subjects=0):
    """The Sunnybrook benchmark's protocol on simulated 64x64 LV ROI sequences, where the truth is exact.

    Frame 0 is ED (the simulator starts the cycle there) and ES the frame with the smallest LV
    cavity. The ED cavity's contour (``skimage.measure.find_contours`` at 0.5 on the ROI's cavity
    mask, resampled every 0.5 px) is carried to ES through the exact consecutive flows
    (:func:`ofrnn.flow.trace`), so a method's error is its own, not the contour's.

    Returns
    -------
    list of (id, frames ED..ES (T, 64, 64), ED contour (n, 2), true ES contour (n, 2), 1.0)
        Contours (y, x) in ROI pixels, the two sharing their vertices; the last item is the
        spacing, as :func:`sunnybrook_cases` gives it, here one ROI pixel.
    """
    from skimage.measure import find_contours

    from ..roi import crop, crop_flow, sequence_transform
    from ..store import open_cohort

    out = []
    with open_cohort(path) as c:
        for sid in (c.ids[:subjects] if subjects else c.ids):
            s = c.read(sid, fields=["cine", "lv_box", "flow", "lv_cavity_t"])
            t = sequence_transform(s.lv_box)
            cav = crop(s.lv_cavity_t, t, order=0) > 0
            es = int(np.argmin(cav.reshape(len(cav), -1).sum(1)))
            ed = _resample_polygon(max(find_contours(cav[0].astype(float), 0.5), key=len))
            out.append((sid, crop(s.cine, t)[:es + 1], ed, F.trace(crop_flow(s.flow, t)[:es], ed)[-1], 1.0))
    return out


def tracking(cfg, params):
    """Contour tracking on the simulated cohort (:func:`tracking_cases`): mean contour distance (px)
    to the truth, and the moved contour's area over the true ES area (> 1: too little of the
    contraction followed), per method; the cross-check of the Sunnybrook row where the truth is exact."""
    tc = cfg["tracking"]
    path = _resolve(cfg["simulated"]["cohort"])
    if not path.exists():
        return {"skipped": f"{path} not found (run `make data`)"}
    cases = tracking_cases(path, subjects=tc.get("subjects", 0))
    out = {m: {"mcd_px": [], "area_ratio": []} for m in tc["methods"]}
    for _, frames, ed, es, _ in tqdm(cases, desc="tracking", unit="subject"):
        m_es = _polygon_mask(es, frames.shape[1:])
        for m in tc["methods"]:
            moved = _propagate(frames, ed, m, params)
            out[m]["mcd_px"].append(_contour_distance(moved, es))
            out[m]["area_ratio"].append(_polygon_mask(moved, frames.shape[1:]).sum() / m_es.sum())
    table = {m: {"mcd_px_mean": float(np.mean(r["mcd_px"])), "mcd_px_sd": float(np.std(r["mcd_px"])),
                 "es_area_ratio_median": float(np.median(r["area_ratio"]))} for m, r in out.items()}
    return {"cohort_sha256": content_digest(path), "subjects": len(cases), "table": table,
            "note": "the evaluation cohort's 64x64 LV ROIs, frame 0 (ED) to the smallest cavity (ES); the truth is "
                    "the ED cavity contour traced through the exact flows; mcd_px: mean contour distance to it "
                    "(ROI pixels); es_area_ratio_median: the moved contour's area over the true one's (above 1: "
                    "too little of the contraction followed), median over subjects"}


# --------------------------------------------------------------------------- tuning (training cohort)

def tune(cfg, out_dir):
    """Coordinate search of each method's parameters on the training cohort (never the evaluation one)."""
    tc = cfg["training"]
    path = _resolve(tc["cohort"])
    if not path.exists():
        from ..simulate import simulate_cohort
        simulate_cohort(path, n_subjects=tc["subjects"], seed=tc["seed"], jobs=tc.get("jobs", 1))
    seqs = load_roi_sequences(path, subjects=tc["subjects"], desc="training cohort")
    step = tc.get("step", 2)
    # Re-tuning some methods (tune_methods) keeps the others' earlier results.
    previous = out_dir / "tuning.json"
    log = json.loads(previous.read_text())["methods"] if previous.exists() and cfg.get("tune_methods") else {}
    for method, grid in cfg["tuning"].items():
        if method in TUNING_TITLES or (cfg.get("tune_methods") and method not in cfg["tune_methods"]):
            continue
        best = dict(grid.get("start", {}))
        trials = []
        # Sparse methods trade density for accuracy through their thresholds: a candidate must keep
        # at least the density of the paper's Table 3, else the search would just raise the threshold.
        min_density = grid.get("min_density", 0.0)

        def score(p):
            key = json.dumps(p, sort_keys=True)
            for t in trials:
                if t["key"] == key:
                    return t["score"]
            r = evaluate_sequences(seqs, [method], {method: p}, step=step, desc=f"tune {method}")[method]
            a = float(np.nanmean(r["aae"]))
            d = float(np.nanmean(r["density"]))
            sc = a if d >= min_density and np.isfinite(a) else float("inf")
            trials.append({"key": key, "params": dict(p), "aae": a, "density": d, "score": sc,
                           "ms": float(np.median(r["ms"]))})
            return sc

        cur = score(best)
        for _ in range(grid.get("rounds", 1)):
            for name, values in grid.get("search", {}).items():
                for v in values:
                    cand = {**best, name: v}
                    s = score(cand)
                    if s < cur - 1e-6:
                        best, cur = cand, s
        log[method] = {"best": best, "aae": cur, "min_density": min_density, "trials": trials}
    for section in TUNING_TITLES:
        if section in cfg["tuning"] and (not cfg.get("tune_methods") or section in cfg["tune_methods"]):
            tune_deep(cfg, seqs, step, out_dir, section=section, cohort_digest=content_digest(path))
    if cfg.get("tune_methods") and set(cfg["tune_methods"]) <= set(TUNING_TITLES):
        return 0
    result = {"versions": _versions(), "training_cohort_sha256": content_digest(path), "seed": tc["seed"],
              "subjects": len(seqs), "step": step, "methods": log}
    write_json(out_dir / "tuning.json", result)
    lines = ["# Flow parameter tuning (training cohort only)", "",
             f"Training cohort {result['training_cohort_sha256']} (content digest; seed {tc['seed']}, {len(seqs)} "
             f"subjects, every {step}. pair), "
             "myocardium AAE; coordinate search from the published/default settings.", ""]
    for m, r in log.items():
        lines += [f"## {m}", "", f"best: `{json.dumps(r['best'])}` AAE {r['aae']:.2f} deg", "",
                  f"(candidates must keep a density >= {100 * r.get('min_density', 0):.0f}%)", "",
                  "| params | AAE | density | ms/pair |", "|---|---|---|---|"]
        lines += [f"| `{json.dumps(t['params'])}` | {t['aae']:.2f} | {100 * t['density']:.0f}% | {t['ms']:.1f} |"
                  for t in r["trials"]]
        lines.append("")
    atomic_write_text(out_dir / "tuning.md", "\n".join(lines))
    print("\n".join(f"{m}: {json.dumps(r['best'])} AAE {r['aae']:.2f}" for m, r in log.items()))
    return 0


def _cavity_error(flow, ed_labels, es_labels):
    """1 - Dice of the ED LV cavity moved by the ED->ES ``flow`` against the ES cavity
    (:func:`acdc_cases` tuples: labels 3 = LV cavity)."""
    return 1 - _dice(propagated_mask(flow, ed_labels == 3), es_labels == 3)


def _pair_errors(pairs, params, error=metrics.epe):
    """Mean ``error(flow, *rest)`` and median ms of the deep OF with ``params`` over (name, a, b,
    *rest) pairs: EPE (px) by default."""
    err, ms = [], []
    for _, a, b, *rest in pairs:
        t = time.perf_counter()
        f = F.deep_flow(a, b, **params)
        ms.append((time.perf_counter() - t) * 1e3)
        err.append(error(f, *rest))
    return float(np.mean(err)), float(np.median(ms))


def _cohort_aae(seqs, params, *, step):
    """Myocardium AAE (deg, mean) and median ms per pair of the deep OF with ``params`` over
    every ``step``-th consecutive pair of simulated ROI sequences."""
    r = evaluate_sequences(seqs, ["deep"], {"deep": params}, step=step, desc="cohort")["deep"]
    return float(np.nanmean(r["aae"])), float(np.median(r["ms"]))


def _tracking_errors(cases, params):
    """Mean contour distance of the ED contour carried to ES through consecutive frames by the deep
    OF with ``params``, against the ES contour, and the median ms per slice: in mm over
    :func:`sunnybrook_cases`, in ROI pixels over :func:`tracking_cases` (spacing 1)."""
    err, ms = [], []
    for _, frames, ed, es, spacing in cases:
        t = time.perf_counter()
        moved = _propagate(frames, ed, "deep", {"deep": params})
        ms.append((time.perf_counter() - t) * 1e3)
        err.append(_contour_distance(moved, es) * spacing)
    return float(np.mean(err)), float(np.median(ms))


def _time_ratio(pairs, params, *, repeats=3):
    """Median over ``pairs`` of the deep OF's time with ``params`` over OpenCV DeepFlow's, each
    the best of ``repeats`` runs, the two timed back to back on every pair."""
    return float(np.median([_run_method("deep", a, b, {"deep": params}, repeats=repeats)[1]
                            / _run_method("opencv-deepflow", a, b, {}, repeats=repeats)[1] for a, b in pairs]))


def large_motion_pairs(pairs, *, per_pair=2, seed=7, shift_px=60.0, rotation_deg=5.0, scale=0.05):
    """Large global motion with exact ground truth, made from training images only.

    Each first image of ``pairs`` is warped by ``per_pair`` random similarity transforms
    (translation up to ``shift_px`` per axis, rotation up to ``rotation_deg``, scale 1 +- ``scale``;
    bicubic, reflected border); the ground truth is the transform's displacement, valid where the
    point stays inside the frame. The FlyingChairs training pairs move mostly by a few pixels
    outside the chairs; these pairs add the whole-frame motion of tens of pixels that the
    evaluation pairs and the motorcycle pair show. Returns (name, a, b, gt, valid) tuples.
    """
    import cv2

    rng = np.random.default_rng(seed)
    out = []
    for name, a, _, _ in pairs:
        H, W = a.shape
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
        for k in range(per_pair):
            ty, tx = rng.uniform(-shift_px, shift_px, 2)
            th, sc = np.radians(rng.uniform(-rotation_deg, rotation_deg)), rng.uniform(1 - scale, 1 + scale)
            A = sc * np.array([[np.cos(th), -np.sin(th)], [np.sin(th), np.cos(th)]])
            c = np.array([W / 2, H / 2])
            t = c + np.array([tx, ty]) - A @ c
            # b(A x + t) = a(x): x' = A x + t in (x, y) order, as cv2.warpAffine maps it.
            b = cv2.warpAffine(a, np.hstack([A, t[:, None]]), (W, H), flags=cv2.INTER_CUBIC,
                               borderMode=cv2.BORDER_REFLECT)
            X = A[0, 0] * xx + A[0, 1] * yy + t[0]
            Y = A[1, 0] * xx + A[1, 1] * yy + t[1]
            gt = np.stack([Y - yy, X - xx]).astype(np.float32)
            out.append((f"{name}+{k}", a, b, gt, (X >= 0) & (X <= W - 1) & (Y >= 0) & (Y <= H - 1)))
    return out


def edes_pairs(seqs):
    """End-diastole -> end-systole pairs of simulated ROI sequences, with exact ground truth.

    The ED->ES tracking of ``make flow-bench`` (Sunnybrook, ACDC) asks for the whole systolic
    deformation in one step, several pixels on a cardiac crop, which consecutive frames never
    show. Here frame 0 is ED (the simulator starts the cycle there) and ES is the frame whose
    myocardium has moved furthest from it; the ground truth is the exact per-frame flow traced
    from frame 0 (:func:`ofrnn.flow.lagrangian_displacement`), scored on the frame-0 myocardium.
    ``seqs`` as :func:`load_roi_sequences` returns them (use training cohorts only). Returns
    (name, ED frame, ES frame, GT (2, H, W), myocardium mask) tuples.
    """
    out = []
    for sid, cine, gt, myo, _ in seqs:
        lag = F.lagrangian_displacement(gt)
        moved = (np.hypot(lag[:, 0], lag[:, 1]) * myo[0]).sum(axis=(1, 2))
        t = int(np.argmax(moved))
        out.append((f"{sid} ED->{t + 1}", cine[0], cine[t + 1], lag[t], myo[0]))
    return out


TUNING_TITLES = {"matching": "Deep OF pyramid and matching", "data": "Deep OF data term",
                 "smoothing": "Deep OF pre-smoothing and smoothness",
                 "filtering": "Deep OF median filter and edge-aware smoothness",
                 "tracking": "Deep OF smoothing against chained contour tracking"}


def tune_deep(cfg, seqs, step, out_dir, *, section, cohort_digest):
    """Choose deep OF settings on training data only: the candidates of ``[tuning.<section>]``.

    Four stages share this rule: ``matching`` chose the pyramid and the matching term
    (results/flow/tuning-matching.md), then ``data`` the data term's weights on top of it
    (results/flow/tuning-data.md), then ``smoothing`` the pre-smoothing and smoothness weight
    (results/flow/tuning-smoothing.md), then ``filtering`` the median filter and edge-aware
    smoothness (results/flow/tuning-filtering.md); ``tracking`` measures the smoothing once more
    with chained contour tracking added (results/flow/tuning-tracking.md). Each candidate (keyword
    overrides of :data:`ofrnn.flow.DEFAULTS`) is scored on the training cohort (myocardium AAE of
    consecutive frames; myocardium EPE of ED->ES, :func:`edes_pairs`), the FlyingChairs training
    pairs, large global motion made from them (:func:`large_motion_pairs`), flow/tiny (EPE) and real
    cardiac motion of the calibration patients only, never the evaluation ones: where the section
    sets ``acdc = true``, systole in one step, the ACDC LV cavity moved from ED to ES by the ED->ES
    flow (1 - Dice against the ES cavity; :func:`acdc_cases`); where it sets ``sunnybrook = true``,
    tracking through consecutive frames, the Sunnybrook ED endocardial contour carried to ES (mean
    contour distance, mm; :func:`sunnybrook_cases`); where it sets ``tracking = true``, the same
    protocol on the training cohort, where the truth is exact (px; :func:`tracking_cases`). A
    section's ``fixed`` settings go into every row, so its table does not move with the defaults
    chosen after it. Errors are relative to the ``reference`` candidate (the first row; beta = 0
    when the settings name none). Among the candidates that raise no set's error by more than
    ``tolerance`` and, with ``max_time_ratio``, take at most that many times OpenCV DeepFlow's time
    per pair (:func:`_time_ratio` on a few cohort pairs and one FlyingChairs pair, each set's median
    within the budget), the lowest mean relative error wins: one parameter set for small cardiac
    motion, systolic deformation and large real motion alike. ``ms`` per set is recorded for
    information only (timed minutes apart).

    Raises
    ------
    OfrnnError
        When no candidate is admissible.
    """
    # A later stage scores on the same sets with the same rule as the first: only its candidates,
    # reference and extra sets are its own.
    own = ("reference", "candidates", "fixed", "acdc", "sunnybrook", "tracking", "adopted")
    shared = {k: v for k, v in cfg["tuning"].get("matching", {}).items() if k not in own}
    tm = {**shared, **cfg["tuning"][section]}
    fc_dir = _resolve(cfg["flyingchairs"]["dir"])
    tiny_dir = _resolve(tm["tiny"])
    acdc_dir = _resolve(cfg["acdc"]["dir"])
    # set name -> its scorer: params -> (mean error, median ms)
    sets = {"cohort AAE (deg)": partial(_cohort_aae, seqs, step=step),
            "cohort ED->ES EPE (px)": partial(_pair_errors, edes_pairs(seqs))}
    chairs = read_flyingchairs(fc_dir, tm["flyingchairs"]) if fc_dir.is_dir() else []
    if chairs:
        sets["FlyingChairs train EPE (px)"] = partial(_pair_errors, chairs)
        sets["large motion EPE (px)"] = partial(_pair_errors, large_motion_pairs(chairs, **tm.get("large_motion", {})))
    if tiny_dir.is_dir():
        sets["flow/tiny EPE (px)"] = partial(_pair_errors, read_tiny(tiny_dir))
    if tm.get("tracking"):  # the Sunnybrook protocol on the training cohort, where the truth is exact
        tc = cfg["training"]
        sets["cohort ED->ES cavity contour, chained (px)"] = partial(
            _tracking_errors, tracking_cases(_resolve(tc["cohort"]), subjects=tc["subjects"]))
    # the real sets a stage names exist for it: no silent tuning without them
    acdc_cal, sb_cal = [], []
    if tm.get("acdc"):
        acdc_cal = acdc_cases(acdc_dir, calibration=True, margin=cfg["acdc"].get("margin", 0.75)) if acdc_dir.is_dir() else []
        if not acdc_cal:
            raise OfrnnError(f"no ACDC calibration slices in {cfg['acdc']['dir']} (this stage tunes on them)",
                             field=f"tuning.{section}.acdc")
        sets["ACDC calibration ED->ES cavity 1 - Dice"] = partial(_pair_errors, acdc_cal, error=_cavity_error)
    if tm.get("sunnybrook"):
        sb_dir = _resolve(cfg["sunnybrook"]["dir"])
        sb_cal = sunnybrook_cases(sb_dir, calibration=True, margin=cfg["sunnybrook"].get("margin", 0.75)) \
            if sb_dir.is_dir() else []
        if not sb_cal:
            raise OfrnnError(f"no Sunnybrook calibration slices in {cfg['sunnybrook']['dir']} (this stage tunes on "
                             "them)", field=f"tuning.{section}.sunnybrook")
        sets["Sunnybrook calibration ED->ES contour (mm)"] = partial(_tracking_errors, sb_cal)
    # ``fixed``: settings every row of this stage holds (and names), whatever the defaults are now
    candidates = [{**tm.get("fixed", {}), **c} for c in [tm.get("reference", {"beta": 0.0})] + tm["candidates"]]
    rows = []
    for cand in tqdm(candidates, desc=f"tune {section}", unit="candidate"):
        row = {"params": cand, "errors": {}, "ms": {}}  # ms: information only, see the budget below
        for name, score in sets.items():
            row["errors"][name], row["ms"][name] = score(cand)
        rows.append(row)
    base = rows[0]["errors"]
    tol = tm.get("tolerance", 0.005)
    # The speed budget of issue 13: at most max_time_ratio x OpenCV DeepFlow's time on the same
    # pairs, each candidate timed side by side with DeepFlow (timings taken minutes apart on a
    # shared machine drift by a third).
    budget = tm.get("max_time_ratio")
    repeats = 3
    if budget:
        timed = {"cohort": [(c[t], c[t + 1]) for _, c, *_ in seqs[:2] for t in (0, 8, 16) if t < len(c) - 1]}
        if chairs:
            timed["FlyingChairs"] = [p[1:3] for p in chairs[:1]]
        for row in tqdm(rows, desc="time vs DeepFlow", unit="candidate"):
            row["time_ratio"] = {k: _time_ratio(pairs, row["params"], repeats=repeats) for k, pairs in timed.items()}
    for row in rows:
        row["relative"] = {k: v / base[k] for k, v in row["errors"].items()}
        row["admissible"] = (all(r <= 1 + tol for r in row["relative"].values())
                             and all(t <= budget for t in row.get("time_ratio", {}).values()))
    admissible = [r for r in rows if r["admissible"]]
    if not admissible:
        raise OfrnnError("no candidate is admissible (every one raises an error beyond the tolerance or takes "
                         "longer than the time budget)", field=f"tuning.{section}.candidates")
    chosen = min(admissible, key=lambda r: np.mean(list(r["relative"].values())))
    rule = (f"lowest mean error relative to the first row among the candidates that raise no set's error by "
            f"more than {100 * tol:.1f} %")
    if budget:
        rule += (f" and take at most {budget:g}x OpenCV DeepFlow's time per pair (best of {repeats}, timed side by "
                 f"side; the median over {len(timed['cohort'])} cohort pairs"
                 + (" and the time of 1 FlyingChairs pair each within it" if len(timed) > 1 else " within it") + ")")
    adopted = bool(tm.get("adopted", True))  # False: a measurement, the defaults stay
    result = {"versions": _versions(), "training_cohort_sha256": cohort_digest, "step": step,
              "sets": list(sets), "rule": rule,
              "candidates": rows, "chosen": chosen["params"], "adopted": adopted}
    write_json(out_dir / f"tuning-{section}.json", result)
    real = []
    if acdc_cal:
        patients = _patients(acdc_cal)
        real.append(f"the ED->ES LV cavity of the ACDC calibration patients ({patients[0]:03d}-{patients[-1]:03d}, "
                    f"{len(acdc_cal)} slices; experiments/realism.toml [split])")
    if sb_cal:
        real.append(f"the ED endocardial contour of the Sunnybrook calibration patient(s) "
                    f"({', '.join(sorted({sunnybrook_patient(c[0]) for c in sb_cal}))}, {len(sb_cal)} slices; "
                    "experiments/realism.toml [split]) carried to ES through the consecutive frames")
    real_line = "".join(f", {r}" for r in real)
    L = [f"# {TUNING_TITLES.get(section, section)} (training data only)", "",
         f"Training cohort {cohort_digest} (content digest; {len(seqs)} subjects, every {step}. pair, and each "
         "subject's ED->ES pair), "
         f"FlyingChairs pairs {', '.join(tm['flyingchairs'])}, large global motion made from their first images "
         f"(`large_motion_pairs`, {json.dumps(tm.get('large_motion', {}))}), flow/tiny (3 pairs){real_line}. Every other parameter at "
         "`ofrnn.flow.DEFAULTS`. Rule: " + rule + ".", "",
         "| candidate | " + " | ".join(sets) + " | time / OpenCV DeepFlow's: cohort, FlyingChairs | admissible |",
         "|---" * (len(sets) + 3) + "|"]
    for r in rows:
        ms = [_fmt(r.get("time_ratio", {}).get(k), "{:.2f}x") for k in ("cohort", "FlyingChairs")]
        L.append(f"| `{json.dumps(r['params'])}` | " + " | ".join(
            f"{r['errors'][k]:.3f} ({100 * (r['relative'][k] - 1):+.1f} %)" for k in sets)
            + f" | {', '.join(ms)} | {'yes' if r['admissible'] else 'no'} |")
    if adopted:
        L += ["", f"Chosen: `{json.dumps(chosen['params'])}`.", ""]
    else:  # the rule's pick is reported; the section says why the defaults stay
        L += ["", f"The rule's pick: `{json.dumps(chosen['params'])}`. **Not adopted**: this stage is a measurement, "
              f"and `ofrnn.flow.DEFAULTS` stay as they are (experiments/flow.toml [tuning.{section}] says why).", ""]
    atomic_write_text(out_dir / f"tuning-{section}.md", "\n".join(L))
    print("\n".join(L))
    return chosen["params"]


# --------------------------------------------------------------------------- real images with GT

def read_flyingchairs(folder, names):
    """(name, first image, second image, GT flow (2, H, W)) of the named FlyingChairs pairs."""
    out = []
    for name in names:
        p0 = folder / f"{name}-img0.ppm"
        if not p0.exists():
            raise OfrnnError(f"FlyingChairs pair {name} not found", field=str(p0.name))
        out.append((name, F.read_image(p0), F.read_image(folder / f"{name}-img1.ppm"), F.read_flo(folder / f"{name}-gt.flo")))
    return out


def read_tiny(folder):
    """The flow/tiny fixtures as pairs: both directions of the FlyingChairsOcc crop and the
    FlyingChairs crop, (name, first image, second image, GT flow)."""
    read = F.read_image
    return [("0000000 0->1", read(folder / "0000000-img_0.png"), read(folder / "0000000-img_1.png"),
             F.read_flo(folder / "0000000-flow_01.flo")),
            ("0000000 1->0", read(folder / "0000000-img_1.png"), read(folder / "0000000-img_0.png"),
             F.read_flo(folder / "0000000-flow_10.flo")),
            ("00001", read(folder / "00001_img1.ppm"), read(folder / "00001_img2.ppm"), F.read_flo(folder / "00001_flow.flo"))]


def flyingchairs(cfg, params):
    fc = cfg["flyingchairs"]
    folder = _resolve(fc["dir"])
    if not folder.is_dir():
        return {"skipped": f"{fc['dir']} not found"}
    pairs = read_flyingchairs(folder, fc["evaluate"])
    out = {m: {"epe": [], "aae": [], "density": [], "ms": []} for m in fc["methods"]}
    for _, a, b, gt in tqdm(pairs, desc="flyingchairs", unit="pair"):
        for m in fc["methods"]:
            f, ms = _run_method(m, a, b, params)
            out[m]["epe"].append(metrics.epe(f, gt))
            out[m]["aae"].append(metrics.aae(f, gt))
            out[m]["density"].append(metrics.density(f))
            out[m]["ms"].append(ms)
    return {"pairs": len(pairs), "evaluated": list(fc["evaluate"]),
            "table": {m: {k: float(np.nanmean(v)) for k, v in r.items()} for m, r in out.items()}}


def motorcycle(cfg, params):
    import cv2
    from skimage import data

    mc = cfg["motorcycle"]
    a, b, disp = data.stereo_motorcycle()
    s = mc.get("scale", 0.5)
    a = cv2.resize(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    b = cv2.resize(cv2.cvtColor(b, cv2.COLOR_RGB2GRAY), None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
    valid = np.isfinite(disp)
    d = cv2.resize(np.where(valid, disp, 0).astype(np.float32), (a.shape[1], a.shape[0]),
                   interpolation=cv2.INTER_NEAREST) * s
    valid = cv2.resize(valid.astype(np.uint8), (a.shape[1], a.shape[0]), interpolation=cv2.INTER_NEAREST) > 0
    # Left -> right: a point at column x of the left image is at x - d in the right one.
    gt = np.stack([np.zeros_like(d), -d])
    table, repeats = {}, mc.get("repeats", 3)
    for m in tqdm(mc["methods"], desc="motorcycle", unit="method"):
        f, ms = _run_method(m, a, b, params, repeats=repeats)
        table[m] = {"epe": metrics.epe(f, gt, valid), "aae": metrics.aae(f, gt, valid),
                    "density": metrics.density(f, valid), "ms": ms}
    return {"scale": s, "shape": list(a.shape), "repeats": repeats, "table": table}


# --------------------------------------------------------------------------- real cardiac motion

def _crop_box(points_yx, shape, margin):
    lo, hi = points_yx.min(0), points_yx.max(0)
    c = (lo + hi) / 2
    half = (hi - lo).max() * (0.5 + margin)
    y0, x0 = (max(0, int(np.floor(c[i] - half))) for i in range(2))
    y1, x1 = min(shape[0], int(np.ceil(c[0] + half)) + 1), min(shape[1], int(np.ceil(c[1] + half)) + 1)
    return y0, x0, y1, x1


def _polygon_mask(poly_yx, shape):
    from skimage.draw import polygon2mask
    return polygon2mask(shape, poly_yx)


def _dice(a, b):
    s = a.sum() + b.sum()
    return float(2 * (a & b).sum() / s) if s else float("nan")


def _contour_distance(p, q):
    """Symmetric mean distance between two closed polygons (vertex to segment), in pixels."""
    def one_way(pts, poly):
        a, b = poly, np.roll(poly, -1, axis=0)
        ab = b - a
        t = np.clip(((pts[:, None] - a[None]) * ab[None]).sum(-1) / np.maximum((ab * ab).sum(-1), 1e-12), 0, 1)
        proj = a[None] + t[..., None] * ab[None]
        return np.sqrt(((pts[:, None] - proj) ** 2).sum(-1)).min(1)
    return float(0.5 * (one_way(p, q).mean() + one_way(q, p).mean()))


def _resample_polygon(poly, step=0.5):
    seg = np.roll(poly, -1, axis=0) - poly
    n = np.maximum(1, np.ceil(np.hypot(*seg.T) / step).astype(int))
    return np.concatenate([poly[i] + np.outer(np.arange(k) / k, seg[i]) for i, k in enumerate(n)])


def _propagate(frames, contour_yx, method, params):
    """Chain the flows of consecutive frames and move the contour vertices along."""
    flows = np.stack([_run_method(method, frames[i], frames[i + 1], params)[0] for i in range(len(frames) - 1)])
    flows = np.nan_to_num(flows, nan=0.0)
    return F.trace(flows, contour_yx)[-1]


def _read_sunnybrook(folder, keep):
    """Slices with manual ED and ES endocardial contours whose id ``<patient>/slice<NN>`` passes
    ``keep`` (only those are read): (id, frames ED..ES, ED and ES contours (y, x), spacing mm)."""
    import csv

    import pydicom

    cases = []
    links = {r["patient_id"]: r["original_id"] for r in csv.DictReader(open(folder / "link.csv"))}
    for dcm_dir, orig in sorted(links.items()):
        cdir = folder / "contourfiles" / orig
        icont = {int(p.name.split("-")[2]): p for p in (cdir / "i-contours").glob("*-icontour-manual.txt")}
        ocont = {int(p.name.split("-")[2]) for p in (cdir / "o-contours").glob("*-ocontour-manual.txt")}
        by_slice = {}
        for n in icont:
            by_slice.setdefault((n - 1) // 20, []).append(n)
        for sl, ns in sorted(by_slice.items()):
            sid = f"{orig}/slice{sl:02d}"
            if len(ns) != 2 or not keep(sid):
                continue
            ed = [n for n in ns if n in ocont] or [min(ns)]
            ed = ed[0]
            es = [n for n in ns if n != ed][0]
            f_ed, f_es = (ed - 1) % 20, (es - 1) % 20
            span = range(f_ed, f_es + 1) if f_es > f_ed else list(range(f_ed, 20)) + list(range(0, f_es + 1))
            frames, spacing = [], None
            for f in span:
                ds = pydicom.dcmread(folder / "dicoms" / dcm_dir / f"{sl * 20 + f + 1}.dcm")
                frames.append(ds.pixel_array.astype(np.float32))
                spacing = float(ds.PixelSpacing[0])
            read = [np.loadtxt(icont[n])[:, ::-1] for n in (ed, es)]  # files hold (x, y)
            cases.append((sid, np.stack(frames), read[0], read[1], spacing))
    return cases


def sunnybrook_cases(folder, *, calibration, margin=0.75):
    """Sunnybrook slices of one side of the real-data split, cropped about the LV.

    Parameters
    ----------
    folder : Path
        The ``sunnybrook`` folder (see ``../shared/data/MANIFEST.md``).
    calibration : bool
        True: the calibration patient(s) of ``experiments/realism.toml`` [split] (SC-HF-I-1), which
        the deep OF may be tuned on; False: every other patient (SC-HF-I-2, -4), only ever scored.
    margin : float
        The crop is the extent of both contours times (1 + 2 margin), square.

    Returns
    -------
    list of (id, frames, ED contour, ES contour, spacing)
        ``<patient>/slice<NN>``; the frames ED..ES (T, h, w) float32 of the crop; the manual ED
        endocardial contour resampled every 0.5 px and the ES one, (n, 2) (y, x) in crop pixels;
        the pixel spacing in mm.
    """
    split = real_split()

    def this_side(sid):
        return is_calibration("sunnybrook", sid, split) == calibration

    cases = []
    for sid, frames, c_ed, c_es, sp in _read_sunnybrook(folder, this_side):
        y0, x0, y1, x1 = _crop_box(np.concatenate([c_ed, c_es]), frames.shape[1:], margin)
        cases.append((sid, frames[:, y0:y1, x0:x1], _resample_polygon(c_ed - [y0, x0]), c_es - [y0, x0], sp))
    return cases


_NO_MOTION = "no motion (ED contour as is)"


def sunnybrook(cfg, params):
    sb = cfg["sunnybrook"]
    folder = _resolve(sb["dir"])
    if not folder.is_dir():
        return {"skipped": f"{sb['dir']} not found"}
    cases = sunnybrook_cases(folder, calibration=False, margin=sb.get("margin", 0.75))
    rows = {m: {"dice": [], "mcd_mm": [], "area_ratio": []} for m in [*sb["methods"], _NO_MOTION]}
    for _, fr, ed, es, sp in tqdm(cases, desc="sunnybrook", unit="slice"):
        m_es = _polygon_mask(es, fr.shape[1:])
        for m in rows:
            moved = ed if m == _NO_MOTION else _propagate(fr, ed, m, params)
            m_mv = _polygon_mask(moved, fr.shape[1:])
            rows[m]["dice"].append(_dice(m_mv, m_es))
            rows[m]["mcd_mm"].append(_contour_distance(moved, es) * sp)
            rows[m]["area_ratio"].append(m_mv.sum() / m_es.sum())
    table = {m: {"dice_mean": float(np.mean(r["dice"])), "dice_sd": float(np.std(r["dice"])),
                 "mcd_mm_mean": float(np.mean(r["mcd_mm"])), "es_area_ratio_median": float(np.median(r["area_ratio"]))}
             for m, r in rows.items()}
    patients = sorted({sunnybrook_patient(c[0]) for c in cases})
    return {"slices": len(cases), "patients": patients, "table": table,
            "per_slice_mcd_mm": {c[0]: {m: r["mcd_mm"][i] for m, r in rows.items()} for i, c in enumerate(cases)},
            "note": f"evaluation patients only ({', '.join(patients)}; the calibration patient of "
                    "experiments/realism.toml [split] is training data of the deep OF's smoothing stage); "
                    "es_area_ratio_median: the moved contour's area over the manual ES one's, median over slices "
                    "(above 1: too little of the contraction followed)"}


ACDC_STRUCTURES = {"lv_cavity": (3,), "lv_epicardium": (2, 3)}


def acdc_cases(folder, *, calibration, slices=0, min_pixels=50, margin=0.75):
    """ACDC ED/ES slices of one side of the real-data split, cropped about the LV.

    Parameters
    ----------
    folder : Path
        The ``acdc-edes`` folder (see ``../shared/data/MANIFEST.md``).
    calibration : bool
        True: the calibration patients of ``experiments/realism.toml`` [split] (ACDC 061-080),
        which the deep OF's data term may be tuned on; False: every other patient (041-060), only
        ever scored.
    slices : int
        An evenly spaced subset of this many slices (0: all).
    min_pixels : int
        Smallest ED cavity kept, in pixels (the ES cavity must be non-empty inside the crop).
    margin : float
        The crop is the ED LV's extent times (1 + 2 margin), square.

    Returns
    -------
    list of (id, ED crop, ES crop, ED labels, ES labels)
        Images (h, w) float32, labels (h, w) uint8 with ACDC's codes (2 myocardium, 3 LV cavity).
    """
    split = real_split()
    cases = []
    for s in acdc_sequences(folder):
        la, lb = s["labels"]
        if is_calibration("acdc", s["id"], split) != calibration or (la == 3).sum() <= min_pixels:
            continue
        ys, xs = np.nonzero(np.isin(la, (2, 3)))
        y0, x0, y1, x1 = _crop_box(np.stack([ys, xs], 1).astype(float), la.shape, margin)
        crop = (slice(y0, y1), slice(x0, x1))
        if not (lb[crop] == 3).any():  # the ES cavity must lie in the ED crop to be scored
            continue
        cases.append((s["id"], s["cine"][0][crop], s["cine"][1][crop], la[crop], lb[crop]))
    if slices and slices < len(cases):  # evenly spaced over all patients, first and last included
        cases = [cases[i] for i in np.unique(np.linspace(0, len(cases) - 1, slices).round().astype(int))]
    return cases


def _patients(cases):
    """Sorted ACDC patient numbers of :func:`acdc_cases` tuples."""
    return sorted({acdc_patient(c[0]) for c in cases})


def propagated_mask(flow, ed_mask):
    """The largest component of ``ed_mask`` moved by ``flow`` (2, h, w): its contour traced
    through the flow and filled again (h, w bool); None when the mask is empty."""
    from skimage import measure

    lab = measure.label(ed_mask)
    if lab.max() == 0:
        return None
    biggest = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    contour = max(measure.find_contours(np.pad(biggest, 1).astype(float), 0.5), key=len) - 1
    return _polygon_mask(F.trace(np.nan_to_num(flow)[None], contour)[-1], ed_mask.shape)


def acdc(cfg, params):
    ac = cfg["acdc"]
    folder = _resolve(ac["dir"])
    if not folder.is_dir():
        return {"skipped": f"{ac['dir']} not found"}
    cases = acdc_cases(folder, calibration=False, slices=ac.get("slices", 0), min_pixels=ac.get("min_pixels", 50),
                       margin=ac.get("margin", 0.75))
    # per method, structure and slice: (Dice, area of the moved ED mask over the true ES area); the
    # area ratio is > 1 where a flow follows too little of the contraction (ofrnn/flow/deep.py)
    out = {m: {s: [] for s in ACDC_STRUCTURES} for m in ac["methods"]}
    base = {s: [] for s in ACDC_STRUCTURES}
    for _, A, B, la, lb in tqdm(cases, desc="acdc", unit="slice"):
        flows = {m: _run_method(m, A, B, params)[0] for m in ac["methods"]}
        for s, labels in ACDC_STRUCTURES.items():
            m_ed, m_es = np.isin(la, labels), np.isin(lb, labels)
            if not m_es.any():  # (the ES structure may lie outside the ED crop)
                continue
            base[s].append((_dice(m_ed, m_es), m_ed.sum() / m_es.sum()))
            for m, fl in flows.items():
                moved = propagated_mask(fl, m_ed)
                out[m][s].append((_dice(moved, m_es), moved.sum() / m_es.sum()))
    # the third of slices whose cavity shrinks most (ED / ES area), where the flows differ most
    shrink = np.array(base["lv_cavity"])[:, 1]
    strong = shrink >= np.quantile(shrink, 2 / 3)

    def row(r):
        cavity = np.array(r["lv_cavity"])[:, 1]
        return {**{f"dice_{s}": float(np.mean([d for d, _ in v])) for s, v in r.items()},
                "cavity_area_ratio_median": float(np.median(cavity)),
                "cavity_area_ratio_median_strongest_third": float(np.median(cavity[strong]))}

    table = {m: row(r) for m, r in out.items()}
    table["no motion (ED masks as is)"] = row(base)
    patients = [f"patient{p:03d}" for p in _patients(cases)]
    return {"slices": len(cases), "patients": patients, "table": table,
            "note": f"evaluation patients only ({patients[0]}-{patients[-1]}, {len(patients)} patients; the calibration "
                    "patients of experiments/realism.toml [split] are training data of the deep OF's data-term and "
                    "smoothing stages); "
                    "cavity_area_ratio_median: the moved ED cavity's area over the true ES cavity's, median over "
                    "slices (1: the whole contraction followed; above 1: too little of it); _strongest_third: the "
                    "same over the third of slices whose cavity shrinks most (ED / ES area, the no-motion row)"}


# --------------------------------------------------------------------------- Fig. 4

def flow_to_rgb(flow, max_mag=None):
    """Colour-code a (2, H, W) flow: hue = direction, saturation = magnitude / max_mag (Middlebury style)."""
    import cv2

    dy, dx = np.nan_to_num(flow[0]), np.nan_to_num(flow[1])
    mag = np.hypot(dx, dy)
    max_mag = max_mag or max(float(mag.max()), 1e-6)
    hsv = np.zeros(mag.shape + (3,), np.uint8)
    hsv[..., 0] = ((np.degrees(np.arctan2(dy, dx)) % 360) / 2).astype(np.uint8)
    hsv[..., 1] = (np.clip(mag / max_mag, 0, 1) * 255).astype(np.uint8)
    hsv[..., 2] = 255
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def fig4(cfg, params, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..roi import crop, crop_flow, sequence_transform
    from ..store import open_cohort

    sc = cfg["simulated"]
    path = _resolve(sc["cohort"])
    if not path.exists():
        return {"skipped": f"{sc['cohort']} not found"}
    with open_cohort(path) as c:
        sid = cfg["fig4"].get("subject") or c.ids[0]
        s = c.read(sid, fields=["cine", "lv_box", "flow", "lv_cavity_t", "myocardium_t"])
    t = sequence_transform(s.lv_box)
    cine, gt = crop(s.cine, t), crop_flow(s.flow, t)
    cav = crop(s.lv_cavity_t, t, order=0)
    es = int(np.argmin(cav.reshape(len(cav), -1).sum(1)))
    # Ground truth from the start (frame 0) to the end of systole: chain the exact consecutive flows.
    H, W = cine.shape[1:]
    pts = F.trace(gt[:es])
    gt_es = np.moveaxis(pts[-1] - pts[0], -1, 0)
    deep = F.METHODS["deep"](cine[0], cine[es], **merge(params.get("deep", {}), cfg["fig4"].get("deep", {})))
    hs = F.METHODS["hs"](cine[0], cine[es], **params.get("hs", {}))
    myo = crop(s.myocardium_t, t, order=0)[0] > 0
    mx = float(np.hypot(*gt_es)[myo].max())
    fig, ax = plt.subplots(1, 5, figsize=(15, 3.4))
    panels = [(cine[0], "(a) start of systole (frame 0)"), (cine[es], f"(b) end of systole (frame {es})"),
              (flow_to_rgb(deep, mx), f"(c) deep OF  AAE {metrics.aae(deep, gt_es, myo):.1f} deg"),
              (flow_to_rgb(hs, mx), f"(d) HS  AAE {metrics.aae(hs, gt_es, myo):.1f} deg"),
              (flow_to_rgb(gt_es, mx), "ground truth")]
    yy, xx = np.mgrid[2:H:4, 2:W:4]
    for k, (a, (im, title)) in enumerate(zip(ax, panels)):
        a.imshow(im, cmap="gray" if im.ndim == 2 else None)
        if k >= 2:
            fl = [deep, hs, gt_es][k - 2]
            a.quiver(xx, yy, fl[1][yy, xx], -fl[0][yy, xx], angles="xy", scale_units="xy", scale=0.5, width=0.004)
        a.set_title(title, fontsize=9)
        a.axis("off")
    fig.suptitle(f"Fig. 4 reproduction: subject {sid}, 64x64 ROI, flow frame 0 -> {es} (colour: direction, "
                 f"saturation: magnitude up to {mx:.1f} px)", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "fig4.png", dpi=110)
    plt.close(fig)
    return {"subject": sid, "es_frame": es, "aae_deep": metrics.aae(deep, gt_es, myo),
            "aae_hs": metrics.aae(hs, gt_es, myo), "max_gt_px": mx}


def _bar_figure(sim, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tab = sim["table"]
    names = [m for m in tab if tab[m]["aae_mean"] is not None]
    fig, ax = plt.subplots(figsize=(9, 3.5))
    ax.bar(range(len(names)), [tab[m]["aae_mean"] for m in names], yerr=[tab[m]["aae_sd"] for m in names],
           color=["C3" if m.startswith("deep") else ("C0" if m in PAPER_TABLE3 else "C7") for m in names])
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("AAE on myocardium (deg)")
    ax.set_title(f"Simulated cohort, {sim['subjects']} subjects x {sim['pairs_per_subject']} pairs (mean +- sd over subjects)",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "table3_aae.png", dpi=110)
    plt.close(fig)


# --------------------------------------------------------------------------- report

def _fmt(x, f="{:.2f}"):
    return "-" if x is None or (isinstance(x, float) and not np.isfinite(x)) else f.format(x)


def _section(title, r, intro, cell, cols=None):
    """Report lines of one real-data part: nothing, a skipped note, or a method x metric table
    (``intro(r)`` above it; columns ``cols``, default the metrics of the table's first row)."""
    if r is None:
        return []
    if "skipped" in r:
        return [f"## {title}", "", f"Skipped: {r['skipped']}", ""]
    cols = cols or list(next(iter(r["table"].values())).keys())
    return ([f"## {title}", "", intro(r), "", "| method | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            + [f"| {m} | " + " | ".join(cell(v, c) for c in cols) + " |" for m, v in r["table"].items()] + [""])


def _best_dense(table, col, *, pick=min):
    """(method, value) of the dense method whose ``col`` ``pick`` (min or max) selects in a report
    table {method: {col: value}}, over finite values; None when no dense method has one."""
    vals = {m: v[col] for m, v in table.items() if m in DENSE and v.get(col) is not None and np.isfinite(v[col])}
    if not vals:
        return None
    best = pick(vals, key=vals.get)
    return best, vals[best]


def _speed_and_best(r):
    """Lines naming the lowest-EPE dense method and the deep OF's time against OpenCV's DeepFlow
    on the same pairs (the speed target: at most 2x)."""
    if r is None or "table" not in r:
        return []
    tab = r["table"]
    best = _best_dense(tab, "epe")
    out = [f"Lowest EPE among dense methods: **{best[0]}** ({best[1]:.2f} px)."] if best else []
    if "deep" in tab and "opencv-deepflow" in tab:
        for m in ("deep", "deep-no-matching"):
            if m in tab:
                out.append(f"Speed: {m} {tab[m]['ms']:.0f} ms vs OpenCV-contrib DeepFlow {tab['opencv-deepflow']['ms']:.0f} ms "
                           f"per pair in the same run: ratio {tab[m]['ms'] / tab['opencv-deepflow']['ms']:.2f} (target <= 2).")
    return out + [""] if out else []


def _simulated_section(sim):
    """Report lines of Table 3 (the simulated cardiac ROI sequences)."""
    L = ["## Table 3: simulated cardiac motion (64x64 LV ROI sequences)", ""]
    if "skipped" in sim:
        L += [f"Skipped: {sim['skipped']}", ""]
    else:
        L += [f"{sim['subjects']} subjects of the cohort {sim.get('cohort_sha256', sim.get('cohort'))} (content digest), {sim['pairs_per_subject']} consecutive pairs each "
              f"(every {sim['step']}.), exact ground truth. AAE = Barron's spatio-temporal angular error over the "
              "myocardium where the ground truth is valid, mean +- sd over subjects; density on the same pixels. "
              "Parameters tuned on a separate training cohort (see tuning.md)."]
        if sim["subjects"] < sim["cohort_subjects"]:
            L[-1] += (f" **Subset**: the first {sim['subjects']} of the cohort's {sim['cohort_subjects']} subjects, "
                      "so that all methods on every pair fit the shared 2-core machine "
                      "(experiments/flow.toml `simulated.subjects = 0` runs all).")
        L += ["",
              "| method | AAE (deg) | EPE (px) | AAE all tissue | density | ms/pair | paper AAE | paper density |",
              "|---|---|---|---|---|---|---|---|"]
        for m, r in sim["table"].items():
            p = PAPER_TABLE3.get(m)
            paper = f"{p[0]} +- {p[1]}" if p else ""
            pd_ = f"{p[2] * 100:.0f}%" if p else ""
            L.append(f"| {m} | {_fmt(r['aae_mean'])} +- {_fmt(r['aae_sd'])} | {_fmt(r.get('epe_mean'), '{:.3f}')} | "
                     f"{_fmt(r.get('aae_tissue_mean'))} | {100 * r['density']:.0f}% | "
                     f"{_fmt(r['ms_per_pair_median'], '{:.1f}')} | {paper} | {pd_} |")
        L += ["", "![AAE per method](table3_aae.png)"]
        st = sim["sequence_timing"]
        L += ["", f"Whole {st['frames']}-frame ROI sequence (deep OF as one batch + trajectory features): "
              f"{st['flow_ms_median']:.0f} ms flow + {st['features_ms_median']:.0f} ms features = "
              f"{st['total_ms_median']:.0f} ms (median; target < 500 ms).", ""]
        best = _best_dense(sim["table"], "aae_mean")
        L += [f"Lowest dense AAE: **{best[0]}** ({best[1]:.2f} deg).", ""] if best else []
        tab = sim["table"]
        if "deep" in tab and "opencv-deepflow" in tab:
            r = tab["deep"]["ms_per_pair_median"] / tab["opencv-deepflow"]["ms_per_pair_median"]
            L += [f"Speed: deep OF {tab['deep']['ms_per_pair_median']:.1f} ms/pair vs OpenCV-contrib DeepFlow "
                  f"{tab['opencv-deepflow']['ms_per_pair_median']:.1f} ms/pair in the same run: ratio {r:.2f} "
                  "(target <= 2).", ""]
    return L


def _per_slice_section(r):
    """Sunnybrook's contour distance slice by slice for the deep OF, the dense method of lowest mean
    and no motion: where the methods part is rarely spread evenly."""
    if r is None or "per_slice_mcd_mm" not in r:
        return []
    best = _best_dense(r["table"], "mcd_mm_mean")
    cols = list(dict.fromkeys(["deep", *(best[:1] if best else ()), _NO_MOTION]))
    return (["### Sunnybrook slice by slice (mean contour distance, mm)", "",
             "| slice | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
            + [f"| {sid} | " + " | ".join(_fmt(v.get(c), "{:.2f}") for c in cols) + " |"
               for sid, v in r["per_slice_mcd_mm"].items()] + [""])


def report(res):
    L = ["# Optical-flow benchmark (paper Table 3, Fig. 4)", "",
         f"Profile `{res['profile']}`; versions: " + ", ".join(f"{k} {v}" for k, v in res["versions"].items()) + ".",
         f"Wall time {res['seconds']:.0f} s on a shared 2-core machine (timings are medians over pairs, the "
         "single motorcycle pair's the fastest of a few calls, and include other users' load).", ""]
    if "simulated" in res:  # a profile may run only some parts
        L += _simulated_section(res["simulated"])
    for key, title in (("flyingchairs", "FlyingChairs (real textures, GT flow)"),
                       ("motorcycle", "Middlebury motorcycle stereo (skimage), flow = (-disparity, 0)")):
        L += _section(title, res.get(key),
                      lambda r: f"{r['pairs']} evaluation pairs ({', '.join(r['evaluated'])}; pairs 0000000-0000002 "
                      "are training data and are not reported)" if "pairs" in r else
                      f"scale {r['scale']}, {r['shape'][1]}x{r['shape'][0]}"
                      + (f"; ms = the fastest of {r['repeats']} calls" if r.get("repeats", 1) > 1 else ""),
                      lambda v, c: f"{100 * v[c]:.0f}%" if c == "density" else _fmt(v[c]),
                      cols=("epe", "aae", "density", "ms"))
        L += _speed_and_best(res.get(key))
    for key, title in (("sunnybrook", "Sunnybrook: ED endocardial contour propagated to ES (chained flow)"),
                       ("acdc", "ACDC: ED masks propagated to ES by the ED->ES flow")):
        r = res.get(key)
        L += _section(title, r, lambda r: f"{r['slices']} slices" + (f"; {r['note']}" if "note" in r else ""),
                      lambda v, c: _fmt(v[c], "{:.3f}"))
        if r is not None and "table" in r:
            first = next(iter(next(iter(r["table"].values()))))
            best = _best_dense(r["table"], first, pick=max)
            if best:
                L[-1:-1] = ["", f"Best {first} among dense methods: **{best[0]}** ({best[1]:.3f})."]
        if key == "sunnybrook":
            L += _per_slice_section(r)
    r = res.get("tracking")
    L += _section("Simulated contour tracking: Sunnybrook's protocol where the truth is exact", r,
                  lambda r: f"{r['subjects']} subjects of the cohort {r['cohort_sha256']} (content digest); {r['note']}",
                  lambda v, c: _fmt(v[c], "{:.3f}"))
    if r is not None and "table" in r:
        best = _best_dense(r["table"], "mcd_px_mean")
        if best:
            L[-1:-1] = ["", f"Lowest mean contour distance among dense methods: **{best[0]}** ({best[1]:.3f} px)."]
    f4 = res.get("fig4")
    if f4 and "skipped" not in f4:
        L += ["## Fig. 4", "", "![fig4](fig4.png)", "",
              f"Subject {f4['subject']}, frame 0 -> {f4['es_frame']} (end of systole, smallest LV cavity); "
              f"AAE on the myocardium: deep OF {f4['aae_deep']:.1f} deg, HS {f4['aae_hs']:.1f} deg.", ""]
    if res.get("notes"):
        L += ["## Notes", ""] + [f"- {n}" for n in res["notes"]] + [""]
    return "\n".join(L)


def run(config, profile, out_dir):
    """Run the benchmark (profiles: ``full``, ``quick``) or the tuning (``tune``)."""
    cfg = resolve_config(config, profile)
    out_dir = Path(out_dir)
    if cfg.get("tune"):
        return tune(cfg, out_dir)
    params = cfg.get("params", {})
    t0 = time.perf_counter()
    res = {"profile": profile, "versions": _versions(), "config": cfg}
    parts = cfg.get("parts", ["simulated", "flyingchairs", "motorcycle", "sunnybrook", "acdc", "tracking", "fig4"])
    for part in parts:
        print(f"flow benchmark: {part}", flush=True)
        if part == "fig4":
            res[part] = fig4(cfg, params, out_dir)
        else:
            res[part] = globals()[part](cfg, params)
    if "simulated" in res and "skipped" not in res["simulated"]:
        _bar_figure(res["simulated"], out_dir)
    res["notes"] = cfg.get("notes", [])
    res["seconds"] = time.perf_counter() - t0
    write_json(out_dir / "metrics.json", res)
    atomic_write_text(out_dir / "report.md", report(res))
    print(f"wrote {out_dir / 'metrics.json'} and {out_dir / 'report.md'}")
    return 0
