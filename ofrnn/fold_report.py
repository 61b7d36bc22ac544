"""What one trained fold shows a reader: ROC/PR curves, Fig. 2 overlays, report.md; and the mean +- sd over folds.

:func:`ofrnn.train.run_fold` trains and evaluates; this module turns its result into figures and
Markdown beside the paper's numbers (:data:`PAPER`, Sec. 3 "MI area detection").
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import metrics as M
from .files import atomic_write_text, save_figure, write_json
from .predict import overlay_png

#: the paper's results (Sec. 3, "MI area detection"), shown beside ours in every report
PAPER = dict(accuracy=0.9435, sensitivity=0.9123, specificity=0.9842,
             segment_accuracy=dict(apical=0.992, mid=0.981, basal=0.979))


def plot_curves(path, subjects, probs):
    """ROC and PR curves of the test subjects (all ROI pixels and myocardium), cf. paper Fig. 3(a, b).

    ``subjects``: prepared subjects with ``infarct`` and ``myocardium`` (64, 64); ``probs``: their
    (64, 64) infarct probabilities. Writes a PNG at ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    truth = np.stack([r.infarct for r in subjects]).astype(bool)
    myo = np.stack([r.myocardium for r in subjects]).astype(bool)
    prob = np.stack(probs)
    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    for label, sel in (("all ROI pixels", np.ones_like(truth)), ("myocardium", myo)):
        if not truth[sel].any():
            continue
        c = M.curves(truth[sel], prob[sel])
        m = M.pixel_metrics(truth[sel], prob[sel] >= 0.5, prob[sel])
        a.plot(c["fpr"], c["tpr"], label=f"{label} (AUC {m['roc_auc']:.3f})")
        b.plot(c["recall"], c["precision"], label=f"{label} (AP {m['pr_auc']:.3f})")
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (cf. paper Fig. 3a)")
    b.set(xlabel="recall", ylabel="precision", title="PR (cf. paper Fig. 3b)")
    a.legend(loc="lower right", fontsize=8)
    b.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def overlays(folder, subjects, probs, threshold, n):
    """Fig. 2-style PNGs of the ``n`` test subjects with the largest traced infarcts into ``folder``."""
    folder.mkdir(exist_ok=True)
    order = sorted(range(len(subjects)), key=lambda i: -int(subjects[i].infarct.sum()))[:n]
    for i in order:
        r = subjects[i]
        d = M.pixel_metrics(r.infarct[r.myocardium > 0], probs[i][r.myocardium > 0] >= threshold)["dice"]
        overlay_png(folder / f"{r.id}.png", r.roi[0], probs[i] >= threshold, truth=r.infarct,
                    title=f"{r.id} ({r.level}) myocardium Dice {d:.2f}")


def _fmt(v):
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.2f} %"


def write_report(path, result):
    """``report.md`` of one fold: the paper's numbers beside ours (all ROI pixels, myocardium, AHA segments)."""
    m = result["metrics"]
    cfg = result["config"]
    seg = m["segments"]["accuracy"]
    lines = [
        f"# OF-RNN, {result['split']['scheme']}",
        "",
        f"Profile `{cfg['profile']}`; cohort `{result['cohort']}`; ROI source **{cfg['roi']}**; "
        f"global motion from **{'estimated (deep optical flow)' if cfg['flow'] == 'estimated' else 'ground-truth simulator'} flow**.",
        f"{len(result['split']['train'])} training, {len(result['split']['val'])} validation, "
        f"{len(result['split']['test'])} test subjects. Decision threshold {m['threshold']:.3f} "
        f"({cfg['threshold']}, chosen on the validation subjects).",
        "",
        "| metric | paper (114 patients, 10-fold CV) | ours, all ROI pixels | ours, myocardium only |",
        "|---|---|---|---|",
    ]
    for k in ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc", "pr_auc"):
        paper = _fmt(PAPER.get(k)) if k in PAPER else "-"
        lines.append(f"| {k} | {paper} | {_fmt(m['roi'][k])} | {_fmt(m['myocardium'][k])} |")
    dice = m["dice_myocardium_mean"]
    lines += ["", f"Infarct Dice in the myocardium, mean over test subjects with infarct: "
                  f"{'n/a' if dice is None else format(dice, '.3f')}; "
                  f"infarct size error {m['size_error_mean_pct']:+.2f} (mean), {m['size_error_abs_mean_pct']:.2f} "
                  f"(mean absolute) percentage points of the myocardium.",
              "", f"AHA segments ({m['segments']['rule']}):", "",
              "| level | paper | ours | segments |", "|---|---|---|---|"]
    for lv in ("apical", "mid", "basal", "all"):
        if lv in seg:
            lines.append(f"| {lv} | {_fmt(PAPER['segment_accuracy'].get(lv))} | {_fmt(seg[lv])} | "
                         f"{m['segments']['n_segments'][lv]} |")
    auc = m["segments"]["auc"]
    lines += ["", f"Segment AUC (mean probability per segment): {'n/a' if auc is None else format(auc, '.3f')}.",
              "", "Note: the paper's accuracy, sensitivity and specificity imply about 57 % infarct pixels among "
              "those it scored (94.35 = 91.23 p + 98.42 (1 - p)); over all 64x64 ROI pixels infarct is only a few "
              "percent here, so our all-ROI accuracy is dominated by specificity. The myocardium-only column is "
              "the clinically meaningful one.",
              "", f"Timings: {json.dumps({k: round(v, 1) for k, v in result['timings'].items()})} (seconds; "
              "`finetune_pixels_per_s` is training throughput).",
              f"Versions: {json.dumps(result['versions'])}.", ""]
    atomic_write_text(path, "\n".join(lines))


_SUMMARY = [("roi", k) for k in ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc")] + \
           [("myocardium", k) for k in ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc")]


def aggregate(results, out):
    """Mean +- sd over folds of the headline metrics; writes ``out``/metrics.json and report.md."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = {}
    for group, k in _SUMMARY:
        v = np.array([r["metrics"][group][k] for r in results], dtype=float)
        table[f"{group}.{k}"] = dict(mean=float(np.nanmean(v)), sd=float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0)
    for lv in ("apical", "mid", "basal", "all"):
        v = np.array([r["metrics"]["segments"]["accuracy"].get(lv, np.nan) for r in results], dtype=float)
        table[f"segments.{lv}"] = dict(mean=float(np.nanmean(v)), sd=float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0)
    v = np.array([r["metrics"]["dice_myocardium_mean"] or np.nan for r in results], dtype=float)
    table["dice_myocardium_mean"] = dict(mean=float(np.nanmean(v)), sd=float(np.nanstd(v, ddof=1)) if len(v) > 1 else 0.0)
    cfg = results[0]["config"]
    summary = dict(folds=[r["split"]["scheme"] for r in results], n_folds=len(results), profile=cfg["profile"],
                   roi=cfg["roi"], flow=cfg["flow"], metrics=table, paper=PAPER)
    write_json(out / "metrics.json", summary, indent=2)
    lines = [f"# OF-RNN cross-validation ({len(results)} folds, profile `{cfg['profile']}`, ROI {cfg['roi']}, "
             f"flow {cfg['flow']})", "", "| metric | paper | ours (mean +- sd over folds) |", "|---|---|---|"]
    for key, s in table.items():
        name = key.split(".")[-1]
        paper = PAPER.get(name) if key.startswith("roi.") else (
            PAPER["segment_accuracy"].get(name) if key.startswith("segments.") else None)
        lines.append(f"| {key} | {_fmt(paper) if paper else '-'} | {100 * s['mean']:.2f} +- {100 * s['sd']:.2f} % |")
    atomic_write_text(out / "report.md", "\n".join(lines) + "\n")
    return summary


__all__ = ["PAPER", "plot_curves", "overlays", "write_report", "aggregate"]
