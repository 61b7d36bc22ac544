"""Heart localization layers experiment: train the Fast R-CNN on simulated subjects, evaluate it
on held-out simulated subjects and on real cines (Sunnybrook, ACDC) it never saw.

Metrics (Sec. 3, "Automatic localization of the LV", and what users of the crop need):

* proposal classification, as the paper: every selective-search proposal (quality mode) of a
  frame is labelled LV when its IoU with the ground-truth LV box is >= 0.5, and classified by the
  softmax (LV probability >= 0.5): accuracy, sensitivity, specificity, balanced accuracy, ROC and
  PR curves, beside the paper's 96.49 / 94.39 / 98.67 %;
* detection per frame (best box after regression and NMS): IoU with the ground-truth box and
  centre error in mm;
* containment: fraction of annotated frames whose 64x64 ROI (one box per sequence, fast mode as
  ``ofrnn localize`` runs by default) holds the whole LV myocardium (epicardial contour);
* timing: fast-mode localization of one 25-frame 256x256 sequence, and training time.

Real data is read-only from ``<repo>/../shared/data`` and skipped (with the reason in the
report) when absent; the detector is trained on simulated frames only.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import proposals as P
from .._version import __version__
from ..errors import OfrnnError
from ..files import atomic_write_text, content_digest, save_figure, write_json
from . import merge, resolve_config
from .realdata import REAL_FOLDERS, SHARED, acdc_patient, acdc_sequences, real_sequences, real_split

PAPER = {"accuracy": 96.49, "sensitivity": 94.39, "specificity": 98.67}
REPO = Path(__file__).resolve().parents[2]


# -- configuration ---------------------------------------------------------------------------------

# -- data --------------------------------------------------------------------------------------------

def _spread(T, n):
    """``n`` frame indices spread over ``T`` frames, frame 0 (end-diastole) first."""
    return np.unique(np.linspace(0, T, n, endpoint=False).astype(int))


def _mask_box(mask):
    ys, xs = np.nonzero(mask)
    return np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], dtype=float)


def simulated_split(cohort, cfg, seed):
    """Training and held-out subject ids (subject-wise, stratified by slice level)."""
    from ..splits import holdout

    ids = list(cohort.ids)[: cfg["data"].get("max_subjects") or None]
    levels = [cohort.meta(s)["level"] for s in ids]
    split = holdout(ids, levels, test_fraction=cfg["data"]["test_fraction"], seed=seed)
    return [s for s in ids if split[s] == "train"], [s for s in ids if split[s] == "test"]


def training_frames(cohort, ids, n_frames):
    frames, boxes = [], []
    for sid in ids:
        s = cohort.read(sid, fields=("cine", "lv_box"))
        for t in _spread(len(s.cine), n_frames):
            if np.all(s.lv_box[t] >= 0):
                frames.append(s.cine[t])
                boxes.append(s.lv_box[t].astype(float))
    return frames, np.array(boxes)


# -- metrics -----------------------------------------------------------------------------------------

def classification(scores, labels, threshold=0.5):
    from sklearn.metrics import average_precision_score, roc_auc_score

    scores, labels = np.asarray(scores), np.asarray(labels, bool)
    pred = scores >= threshold
    tp, tn = int((pred & labels).sum()), int((~pred & ~labels).sum())
    fp, fn = int((pred & ~labels).sum()), int((~pred & labels).sum())
    sens = tp / max(tp + fn, 1)
    spec = tn / max(tn + fp, 1)
    both = labels.any() and (~labels).any()
    return dict(n=int(labels.size), positives=int(labels.sum()), accuracy=100 * (tp + tn) / max(labels.size, 1),
                sensitivity=100 * sens, specificity=100 * spec, balanced_accuracy=50 * (sens + spec),
                roc_auc=float(roc_auc_score(labels, scores)) if both else None,
                average_precision=float(average_precision_score(labels, scores)) if both else None)


def _summary(v):
    v = np.asarray(v, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return dict(n=int(v.size), median=float(np.median(v)), mean=float(v.mean()), p90=float(np.percentile(v, 90)),
                max=float(v.max()))


def _contained(mask, transform):
    y0, x0, y1, x1 = transform.box
    ys, xs = np.nonzero(mask)
    return bool(ys.size and ys.min() >= y0 and ys.max() < y1 and xs.min() >= x0 and xs.max() < x1)


def evaluate_set(detector, seqs, *, quality_frames, rng, desc):
    """Per-frame detection, proposal classification (quality mode) and sequence containment.

    ``seqs``: dicts with ``cine`` (T, H, W), ``spacing`` (mm or None), ``masks`` {frame: {"o": epicardial
    mask, "i": endocardial mask}} and optionally ``detect_frames`` (default: frames with an "o"
    mask). Proposal classification runs on ``quality_frames`` of the detection frames drawn at
    random (all when None).
    """
    def detect_frames(s):
        return s.get("detect_frames", [fr for fr, m in s["masks"].items() if "o" in m])

    annotated = [(k, fr) for k, s in enumerate(seqs) for fr in detect_frames(s)]
    if quality_frames is not None and len(annotated) > quality_frames:
        annotated = [annotated[i] for i in np.sort(rng.choice(len(annotated), quality_frames, replace=False))]
    q = set(annotated)
    scores, labels, rows = [], [], []
    from ..localization import motion_prior_power  # TensorFlow: imported when a detector is at hand

    gamma = motion_prior_power(detector.settings)
    # the paper's per-frame ranking (0) and the motion prior (the configured exponent, else 1)
    compared = {0.0: "per_frame", gamma or 1.0: "motion_prior"}
    for k, s in enumerate(tqdm(seqs, desc=desc, unit="slice")):
        # the sequence crop under each rule (the configured one is the headline)
        found = detector.localize_variants(s["cine"], mode="fast", motion_priors=tuple(compared))
        variants = {g: f["transform"] for g, f in found.items()}
        t = variants[gamma]
        dfr = detect_frames(s)
        # per-frame fast detection as localize runs it: one proposal set shared by the frames
        m = detector.cine_motion(s["cine"], (gamma,))
        fast = dict(zip(dfr, detector.detect_frames(s["cine"][dfr], mode="fast", shared_proposals=True,
                                                    prior=detector.prior_maps(m, (gamma,))[gamma],
                                                    extra=detector.motion_proposals(s["cine"], motion=m))))
        for fr, m in s["masks"].items():
            row = dict(id=s["id"], frame=int(fr), roi_side=t.side)
            for kind, mask in m.items():
                row[f"contains_{kind}"] = _contained(mask, t)
                for g, tv in variants.items():
                    row[f"contains_{kind}_{compared[g]}"] = _contained(mask, tv)
            if fr in fast:
                gt = _mask_box(m["o"])
                row.update(_detection_row(fast[fr]["box"], gt, s["spacing"], "fast"))
                # the one box the crop is cut around (what prediction uses), against the same frame's truth
                row.update(_detection_row(found[gamma]["box"], gt, s["spacing"], "sequence"))
                if (k, fr) in q:
                    dq = detector.detect(s["cine"][fr], mode="quality")
                    row.update(_detection_row(dq["box"], gt, s["spacing"], "quality"))
                    row["n_proposals"] = len(dq["proposals"])
                    scores.append(dq["proposal_scores"])
                    labels.append(P.box_iou(dq["proposals"], gt)[:, 0] >= 0.5)
            rows.append(row)
    scores = np.concatenate(scores) if scores else np.zeros(0)
    labels = np.concatenate(labels) if labels else np.zeros(0, bool)
    return rows, scores, labels


def _detection_row(box, gt, spacing, mode):
    c = (box[:2] + box[2:]) / 2 - (gt[:2] + gt[2:]) / 2
    row = {f"iou_{mode}": float(P.box_iou(box, gt)[0, 0]), f"centre_px_{mode}": float(np.hypot(*c)),
           "gt_side_px": float(max(gt[2] - gt[0], gt[3] - gt[1]))}
    if spacing is not None:
        row[f"centre_mm_{mode}"] = float(np.hypot(c[0] * spacing[0], c[1] * spacing[1]))
    return row


def set_metrics(rows, scores, labels):
    def col(name):
        return [r[name] for r in rows if name in r]

    out = dict(slices=len({r["id"] for r in rows}), frames=len(rows),
               proposals=classification(scores, labels) if labels.size else None)
    for mode in ("fast", "quality", "sequence"):
        out[f"detection_{mode}"] = dict(iou=_summary(col(f"iou_{mode}")), centre_px=_summary(col(f"centre_px_{mode}")),
                                        centre_mm=_summary(col(f"centre_mm_{mode}")),
                                        iou_ge_0_5=100 * float(np.mean(np.array(col(f"iou_{mode}")) >= 0.5))
                                        if col(f"iou_{mode}") else None)
    for kind, name in (("o", "containment_myocardium"), ("i", "containment_endocardium")):
        for suffix in ("", "_per_frame", "_motion_prior"):
            v = col(f"contains_{kind}{suffix}")
            out[name + suffix] = dict(percent=100 * float(np.mean(v)), frames=len(v)) if v else None
    out["roi_side_px"] = _summary(col("roi_side"))
    return out


def simulated_sequences(cohort, ids, eval_frames):
    """Held-out simulated subjects: the whole cine; epicardial masks (myocardium | cavity) per frame."""
    seqs = []
    for sid in ids:
        s = cohort.read(sid, fields=("cine", "myocardium_t", "lv_cavity_t"))
        masks = {t: {"o": (s.myocardium_t[t] | s.lv_cavity_t[t]).astype(bool)} for t in range(len(s.cine))}
        # every frame counts for containment; a few spread over the cycle for detection metrics
        seqs.append(dict(id=sid, cine=s.cine, spacing=s.spacing_mm, masks=masks,
                         detect_frames=_spread(len(s.cine), eval_frames).tolist()))
    return seqs


# -- the experiment ----------------------------------------------------------------------------------

def run(config, profile, out_dir):
    """Train, evaluate and write ``metrics.json``, ``report.md``, figures and the model bundle.

    Parameters
    ----------
    config : dict
        ``experiments/localization.toml``.
    profile : str
        ``full`` or a name under ``[profile]`` (e.g. ``quick``: a smoke run).
    out_dir : path
        Results folder (``results/localization``); the bundle goes to ``out_dir/model``.
    """
    import keras
    import tensorflow as tf

    from ..localization import apply_sequence_rule, load_detector, train_detector
    from ..store import open_cohort

    cfg = resolve_config(config, profile)
    ev = cfg["evaluate"]
    try:
        tf.config.threading.set_intra_op_parallelism_threads(ev["threads"])
        tf.config.threading.set_inter_op_parallelism_threads(ev["threads"])
    except RuntimeError:  # TensorFlow already initialised by the caller: keep its threads
        pass
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    seed = cfg["seed"]
    rng = np.random.default_rng(seed)
    cohort_path = REPO / cfg["data"]["cohort"]
    cohort = open_cohort(cohort_path)
    train_ids, test_ids = simulated_split(cohort, cfg, seed)
    frames, boxes = training_frames(cohort, train_ids, cfg["data"]["frames_per_subject"])
    print(f"training on {len(frames)} frames of {len(train_ids)} simulated subjects")
    if ev.get("model"):  # evaluate an existing bundle (trained with these settings) instead of training
        detector = load_detector(REPO / ev["model"])
        record = json.loads((REPO / ev["model"] / "training.json").read_text())
        if detector.settings.get("seed") != seed:  # its held-out subjects are drawn from the seed
            raise OfrnnError(f"the bundle was trained with seed {detector.settings.get('seed')}, the settings say {seed}",
                             path=REPO / ev["model"], field="seed")
        # how a cine's per-frame scores are combined does not touch training: this run's [detect]
        # sets it, and the bundle keeps it, so `ofrnn localize --model` runs what is scored here
        if apply_sequence_rule(detector, cfg["detect"]):
            detector.save(REPO / ev["model"])
    else:
        detector, record = train_detector(frames, boxes, cfg, seed=seed, progress=ev["progress"])
        detector.save(out_dir / "model")
        write_json(out_dir / "model" / "training.json", record, indent=2)

    sets, skipped = {}, {}
    sets["simulated"] = simulated_sequences(cohort, test_ids, cfg["data"]["eval_frames_per_subject"])
    # the phantom was tuned on the calibration patients' frames (issue 12): score the others only
    split = real_split()
    for name in ("sunnybrook", "acdc"):
        root = SHARED / REAL_FOLDERS[name]
        if not ev[name]:
            skipped[name] = "switched off in the settings"
        elif not root.is_dir():
            skipped[name] = f"{root} not found"
        else:
            seqs = real_sequences(name, calibration=False, split=split)
            cap = ev.get("max_real_slices") or len(seqs)
            # an evenly spaced subset keeps every patient group (ACDC: infarct and normal) in
            sets[name] = [seqs[i] for i in np.unique(np.linspace(0, len(seqs) - 1, min(cap, len(seqs))).astype(int))]
    metrics, curves = {}, {}
    for name, seqs in sets.items():
        qf = ev["quality_frames_simulated"] if name == "simulated" else ev["quality_frames_real"]
        rows, scores, labels = evaluate_set(detector, seqs, quality_frames=qf, rng=rng, desc=name)
        metrics[name] = set_metrics(rows, scores, labels)
        curves[name] = (scores, labels, rows)
    finetuned = None
    if cfg.get("finetune", {}).get("enabled"):
        if "acdc" in sets:
            finetuned = finetune_variant(detector, cfg, (frames, boxes), sets, curves, rng=rng, out_dir=out_dir)
        else:
            skipped["finetuned variant"] = "needs the ACDC frames"
    timing = time_fast_mode(detector, sets["simulated"], ev["timing_repeats"])
    result = dict(paper=PAPER, profile=profile, seed=seed, split=split, cohort_sha256=content_digest(cohort_path), train_subjects=len(train_ids),
                  test_subjects=len(test_ids), train_frames=len(frames), training=record, timing=timing,
                  sets=metrics, finetuned=finetuned, skipped=skipped, targets=targets(metrics, record, timing),
                  versions=dict(ofrnn=__version__, tensorflow=tf.__version__, keras=keras.__version__,
                                numpy=np.__version__, python=platform.python_version()),
                  settings=cfg)
    write_json(out_dir / "metrics.json", result, indent=2)
    figures(curves, sets, detector, out_dir)
    atomic_write_text(out_dir / "report.md", report(result))
    print(f"{out_dir}/metrics.json, report.md, figures written")


def finetune_variant(detector, cfg, simulated, sets, curves, *, rng, out_dir):
    """A separately reported variant: the simulated detector fine-tuned on real frames.

    The issue allows it on a disjoint real subset: ACDC patients ``[finetune] train_patients``
    (default 061-080, the normal hearts; ED and ES with their label boxes), mixed with the
    simulated training frames so the phantom is not forgotten. It is evaluated on Sunnybrook and on
    the ACDC slices of the *other* patients only, beside the simulated-only detector on the same
    slices. Its bundle goes to ``out_dir/model-finetuned``; ``make localize``'s headline numbers
    and ``model/`` stay simulated-only.
    """
    from ..localization import train_detector

    ft, ev = cfg["finetune"], cfg["evaluate"]
    lo, hi = ft["train_patients"]
    tuning = [s for s in acdc_sequences(SHARED / REAL_FOLDERS["acdc"]) if lo <= acdc_patient(s["id"]) <= hi]
    frames, boxes = list(simulated[0]), list(simulated[1])
    for s in tuning:
        for fr, m in s["masks"].items():
            frames.append(s["cine"][fr])
            boxes.append(_mask_box(m["o"]))
    print(f"fine-tuning on {len(frames) - len(simulated[0])} ACDC frames of patients {lo:03d}-{hi:03d} "
          f"and the {len(simulated[0])} simulated frames")
    det, record = train_detector(frames, np.array(boxes), merge(cfg, {"train": ft["train"]}), seed=cfg["seed"],
                                 progress=ev["progress"], initial=detector)
    det.save(out_dir / "model-finetuned")
    write_json(out_dir / "model-finetuned" / "training.json", record, indent=2)
    held = {"acdc": [s for s in sets["acdc"] if not lo <= acdc_patient(s["id"]) <= hi]}
    if "sunnybrook" in sets:
        held["sunnybrook"] = sets["sunnybrook"]
    out = dict(train_patients=[lo, hi], train_slices=len(tuning), train_real_frames=len(frames) - len(simulated[0]),
               training=record, sets={}, simulated_only={})
    for name, seqs in held.items():
        rows, scores, labels = evaluate_set(det, seqs, quality_frames=ev["quality_frames_real"], rng=rng,
                                            desc=f"{name} (fine-tuned)")
        out["sets"][name] = set_metrics(rows, scores, labels)
        ids = {s["id"] for s in seqs}
        base = [r for r in curves[name][2] if r["id"] in ids]
        out["simulated_only"][name] = set_metrics(base, np.zeros(0), np.zeros(0, bool))
    return out


def time_fast_mode(detector, seqs, repeats):
    """Median wall time of fast-mode localization of the first held-out (25-frame) sequence."""
    cine = seqs[0]["cine"]
    detector.localize(cine, mode="fast")  # warm-up: first calls trace the Keras graphs
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        detector.localize(cine, mode="fast")
        times.append(time.perf_counter() - t0)
    return dict(sequence_shape=list(cine.shape), seconds_median=float(np.median(times)), seconds=times,
                threads=detector_threads())


def detector_threads():
    import tensorflow as tf

    return dict(intra_op=tf.config.threading.get_intra_op_parallelism_threads(),
                inter_op=tf.config.threading.get_inter_op_parallelism_threads())


def targets(m, record, timing):
    """The issue's benchmarks: measured value, target, met or not."""
    t = []

    def add(name, value, goal, ok):
        t.append(dict(name=name, value=value, target=goal, met=None if value is None else bool(ok)))

    sim = m["simulated"]
    pr = sim["proposals"] or {}
    for k in ("accuracy", "sensitivity", "specificity"):
        v = pr.get(k)
        add(f"simulated proposal {k} (%)", v, f">= {PAPER[k]}", v is not None and v >= PAPER[k])
    cont = sim["containment_myocardium"]
    v = cont and cont["percent"]
    add("simulated whole-LV containment (% frames)", v, ">= 99", v is not None and v >= 99)
    for name in ("sunnybrook", "acdc"):
        if name not in m:
            continue
        c = m[name]["containment_myocardium"]
        v = c and c["percent"]
        add(f"{name} whole-LV containment (% frames)", v, ">= 90", v is not None and v >= 90)
        ce = m[name]["detection_fast"]["centre_mm"]
        v = ce and ce["median"]
        add(f"{name} median centre error (mm)", v, "< 5", v is not None and v < 5)
    v = timing["seconds_median"]
    add("fast-mode localization of a 25-frame sequence (s)", v, "< 0.5", v < 0.5)
    v = record["seconds"]
    add("training (s)", v, "< 600", v < 600)
    return t


# -- figures and report ------------------------------------------------------------------------------

def figures(curves, sets, detector, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    fig, ax = plt.subplots(1, 2, figsize=(10, 4.5))
    for name, (scores, labels, _) in curves.items():
        if labels.size and labels.any() and (~labels).any():
            fpr, tpr, _ = roc_curve(labels, scores)
            pre, rec, _ = precision_recall_curve(labels, scores)
            ax[0].plot(fpr, tpr, label=name)
            ax[1].plot(rec, pre, label=name)
    ax[0].plot(1 - PAPER["specificity"] / 100, PAPER["sensitivity"] / 100, "k*", ms=10, label="paper (Sec. 3)")
    ax[0].set(xlabel="1 - specificity", ylabel="sensitivity", title="Proposal classification: ROC")
    ax[1].set(xlabel="recall", ylabel="precision", title="Proposal classification: PR")
    for a in ax:
        a.legend(loc="lower right" if a is ax[0] else "lower left")
        a.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, out_dir / "roc_pr.png", dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name, (_, _, rows) in curves.items():
        iou = [r["iou_fast"] for r in rows if "iou_fast" in r]
        ce = [r.get("centre_mm_fast", np.nan) for r in rows if "iou_fast" in r]
        ax[0].hist(iou, bins=np.linspace(0, 1, 21), histtype="step", density=True, label=name)
        if np.isfinite(ce).any():
            ax[1].hist(np.array(ce)[np.isfinite(ce)], bins=np.linspace(0, 30, 31), histtype="step", density=True,
                       label=name)
    ax[0].set(xlabel="IoU with the ground-truth LV box (fast mode)", ylabel="density")
    ax[1].set(xlabel="centre error (mm, fast mode)", ylabel="density")
    for a in ax:
        a.legend()
    fig.tight_layout()
    save_figure(fig, out_dir / "errors.png", dpi=110)
    plt.close(fig)

    n = 4
    fig, ax = plt.subplots(len(sets), n, figsize=(3 * n, 3 * len(sets)), squeeze=False)
    for i, (name, seqs) in enumerate(sets.items()):
        for j, k in enumerate(np.linspace(0, len(seqs) - 1, n).astype(int)):
            s = seqs[k]
            fr = next(f for f, m in s["masks"].items() if "o" in m)
            found = detector.localize(s["cine"], mode="fast")
            a = ax[i, j]
            a.imshow(s["cine"][fr], cmap="gray")
            a.contour(s["masks"][fr]["o"], levels=[0.5], colors="lime", linewidths=0.8)
            for b, c in ((found["box"], "red"), (found["transform"].box, "yellow")):
                a.add_patch(plt.Rectangle((b[1] - 0.5, b[0] - 0.5), b[3] - b[1], b[2] - b[0], fill=False, color=c, lw=1))
            a.set_title(f"{name}: {s['id']}", fontsize=8)
            a.axis("off")
    fig.suptitle("green: LV epicardium (GT), red: detected sequence box, yellow: 64x64 ROI crop", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "examples.png", dpi=100)
    plt.close(fig)


def _f(v, fmt="{:.2f}"):
    return "-" if v is None else fmt.format(v)


def report(r):
    lines = ["# Heart localization layers (Fast R-CNN LV detector)", "",
             f"Profile `{r['profile']}`, seed {r['seed']}, cohort sha256 `{r['cohort_sha256']}`: {r['train_subjects']} training subjects "
             f"({r['train_frames']} frames), {r['test_subjects']} held-out subjects. Detector trained on simulated data only; "
             f"training {r['training']['seconds']:.0f} s (proposals {r['training']['proposal_seconds']:.0f} s). "
             f"Versions: {r['versions']}.", "",
             "Real sets hold only the patients the phantom was never calibrated on (`experiments/realism.toml` [split]: "
             f"ACDC {r['split']['calibration_acdc'][0]:03d}-{r['split']['calibration_acdc'][1]:03d} and Sunnybrook "
             f"{', '.join(r['split']['calibration_sunnybrook'])} are left out).", "",
             "## Targets", "", "| benchmark | measured | target | met |", "|---|---|---|---|"]
    for t in r["targets"]:
        lines.append(f"| {t['name']} | {_f(t['value'])} | {t['target']} | {'-' if t['met'] is None else ('yes' if t['met'] else 'NO')} |")
    lines += ["", "## Proposal classification (quality-mode selective search, positive = IoU >= 0.5)", "",
              "| set | frames | proposals | positives | accuracy % | sensitivity % | specificity % | balanced acc. % | ROC AUC | AP |",
              "|---|---|---|---|---|---|---|---|---|---|",
              f"| paper (Sec. 3) | 2.85k images | ~2k / image | - | {PAPER['accuracy']} | {PAPER['sensitivity']} | "
              f"{PAPER['specificity']} | - | - | - |"]
    for name, m in r["sets"].items():
        p = m["proposals"]
        if p:
            nq = m["detection_quality"]["iou"]["n"] if m["detection_quality"]["iou"] else 0
            lines.append(f"| {name} | {nq} | {p['n']} | {p['positives']} | {_f(p['accuracy'])} | {_f(p['sensitivity'])} | "
                         f"{_f(p['specificity'])} | {_f(p['balanced_accuracy'])} | {_f(p['roc_auc'], '{:.4f}')} | "
                         f"{_f(p['average_precision'], '{:.4f}')} |")
    lines += ["", "The paper does not say how its proposals were balanced; accuracy over *all* proposals of a frame is "
              "dominated by background, so sensitivity, specificity and balanced accuracy are the comparable numbers.", "",
              "## Detection and ROI containment", "",
              "| set | slices | frames | IoU median (fast) | IoU >= 0.5 % (fast) | centre error median mm (fast) | "
              "centre p90 mm | centre median px | centre median mm / px (sequence box) | IoU median (quality) | containment myocardium % | "
              "containment endocardium % | ROI side px median |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, m in r["sets"].items():
        df, dq, ds = m["detection_fast"], m["detection_quality"], m.get("detection_sequence") or {}
        cm, ci = m["containment_myocardium"], m["containment_endocardium"]
        lines.append(
            f"| {name} | {m['slices']} | {m['frames']} | {_f(df['iou'] and df['iou']['median'])} | {_f(df['iou_ge_0_5'], '{:.1f}')} | "
            f"{_f(df['centre_mm'] and df['centre_mm']['median'])} | {_f(df['centre_mm'] and df['centre_mm']['p90'])} | "
            f"{_f(df['centre_px'] and df['centre_px']['median'])} | {_f(ds.get('centre_mm') and ds['centre_mm']['median'])} / "
            f"{_f(ds.get('centre_px') and ds['centre_px']['median'])} | {_f(dq['iou'] and dq['iou']['median'])} | "
            f"{_f(cm and cm['percent'], '{:.1f}')} ({cm['frames'] if cm else 0}) | {_f(ci and ci['percent'], '{:.1f}')} "
            f"({ci['frames'] if ci else 0}) | {_f(m['roi_side_px'] and m['roi_side_px']['median'], '{:.0f}')} |")
    lines += ["", "Containment: the sequence's 64x64 ROI (fast mode: detection on a few frames, one box per sequence by "
              "`ofrnn.localization.sequence_box`, crop by `ofrnn.roi.sequence_transform`) holds every pixel of the "
              "epicardial contour (simulated: every frame's myocardium; Sunnybrook: ED o-contours; ACDC: labels 2|3 at ED "
              "and ES). The endocardium column (Sunnybrook i-contours at ED and ES) is a lower bound. Centre errors compare "
              "a box with the epicardial contour's box of the same frame: the fast columns each frame's own detection "
              "(the paper's per-frame detector), the sequence-box column the one box of the whole cine that the crop is "
              "cut around (what `ofrnn predict` uses). ACDC files carry no "
              "pixel spacing, so its centre error is in pixels only (ACDC's in-plane spacing is 1.37-1.68 mm).", ""]
    ft = r.get("finetuned")
    if ft:
        lo, hi = ft["train_patients"]
        lines += ["## Variant: fine-tuned on a disjoint real subset (reported separately)", "",
                  f"The simulated detector above, fine-tuned ({ft['training']['seconds']:.0f} s) on "
                  f"{ft['train_real_frames']} ED/ES frames of ACDC patients {lo:03d}-{hi:03d} ({ft['train_slices']} "
                  "slices) mixed with its simulated training frames; evaluated only on frames it never saw: Sunnybrook "
                  f"and the ACDC slices of the other patients. Beside it, the simulated-only detector on the same frames.",
                  "", "| set | frames | containment % (sim-only) | containment % (fine-tuned) | IoU >= 0.5 % (sim-only) | "
                  "IoU >= 0.5 % (fine-tuned) | centre median mm / px (sim-only) | centre median mm / px (fine-tuned) |",
                  "|---|---|---|---|---|---|---|---|"]
        for name, m in ft["sets"].items():
            b = ft["simulated_only"][name]

            def centre(x):
                d = x["detection_fast"]
                mm, px = d["centre_mm"], d["centre_px"]
                return f"{_f(mm and mm['median'])} / {_f(px and px['median'])}"

            lines.append(f"| {name} | {m['frames']} | {_f(b['containment_myocardium']['percent'], '{:.1f}')} | "
                         f"{_f(m['containment_myocardium']['percent'], '{:.1f}')} | "
                         f"{_f(b['detection_fast']['iou_ge_0_5'], '{:.1f}')} | {_f(m['detection_fast']['iou_ge_0_5'], '{:.1f}')} | "
                         f"{centre(b)} | {centre(m)} |")
        lines.append("")
    det = r["settings"]["detect"]
    gamma = float(det.get("motion_prior", 0))
    chosen = ("; its exponent chosen on calibration data by `make localize-rule`" if gamma else
              "; shown at exponent 1")
    lines += ["### Sequence rule: per-frame detections vs the motion prior", "",
              f"Whole-LV containment (myocardium) of the sequence crop, detections on {det['fast_frames']} frames, when "
              "they rank boxes by LV probability alone (the paper's detector) and by LV probability times the mean of "
              f"m^{gamma or 1.0:g} inside the box, m the cine's temporal-change map (`ofrnn.localization.motion_map`; "
              f"an extension{chosen}). Configured: "
              f"**{'motion prior, exponent %g' % gamma if gamma else 'per-frame'}** (the headline numbers above).", "",
              f"| set | per-frame % | motion prior (exponent {gamma or 1.0:g}) % |", "|---|---|---|"]
    for name, m in r["sets"].items():
        a, b = m.get("containment_myocardium_per_frame"), m.get("containment_myocardium_motion_prior")
        lines.append(f"| {name} | {_f(a and a['percent'], '{:.1f}')} | {_f(b and b['percent'], '{:.1f}')} |")
    lines.append("")
    tm = r["timing"]
    lines += [f"Fast-mode localization of one {tm['sequence_shape']} sequence: median {tm['seconds_median']:.3f} s "
              f"(TensorFlow threads {tm['threads']}).", ""]
    if r["skipped"]:
        lines += ["Skipped: " + "; ".join(f"{k}: {v}" for k, v in r["skipped"].items()), ""]
    lines += ["Figures: `roc_pr.png` (ROC and PR of the proposal classifier, paper's operating point starred), "
              "`errors.png` (IoU and centre error), `examples.png` (detections and crops).", ""]
    return "\n".join(lines)
