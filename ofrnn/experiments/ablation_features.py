"""Table 1 and Fig. 3(c, d): local motion features only, global only, and both (paper Sec. 3).

Three cells of the same network on the same subject-wise folds as ``make train``: P(p) is the
LSTM-RNN's local feature alone, the flow trajectories P_g(p) alone, or their concatenation (the
paper's model); the encoders, softmax, staged training and threshold rule are shared (the
``features`` setting of :func:`ofrnn.train.build`).

``ofrnn experiment ablation_features [--profile quick|paper|smoke]``; settings in
``experiments/ablation_features.toml``; results in ``results/ablation_features/`` (metrics.json,
report.md, roc_pr.png = Fig. 3(c, d)).
"""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ..files import save_figure
from . import _cells

#: the paper's Table 1 (accuracy, sensitivity, specificity), in %
PAPER = {"local": (92.6, 86.5, 97.9), "global": (87.3, 79.4, 96.2), "both": (94.3, 91.2, 98.4)}
LABELS = {"local": "local motion only", "global": "global motion only", "both": "local + global (OF-RNN)",
          "both_image": "P_g in image axes, per-frame flow",
          "both_wall": "P_g on a patch along the wall, relative to its centre (strain)",
          "both_wall_valuenorm": "P_g along the wall, standardised value by value",
          "global_wall": "global motion only, P_g along the wall",
          "global_wall_valuenorm": "global motion only, P_g along the wall, standardised value by value",
          "both_valuenorm": "P_g standardised value by value",
          "both_tissue": "P_l follows the tissue on the image axes (nearest pixel)",
          "both_imagepatch": "P_l fixed at p on the image axes",
          "both_exact": "exact (simulator) flow",
          "global_exact": "global motion only, exact (simulator) flow",
          "both_myosampling": "more normal myocardium in the training draw (0.3/0.5/0.1/0.1)",
          "both_sliceref": "P_g relative to the slice's motion (beyond the paper)"}
#: the cells of the paper's Table 1; the others are design choices (issue 10), one change each from "both"
TABLE1 = ("local", "global", "both")


def load_scores(folder, folds, *, region="myocardium"):
    """Pooled (truth, probability) of a cell's test pixels over ``folds`` from its fold<k>.npz files."""
    truth, prob = [], []
    for k in folds:
        f = Path(folder) / f"fold{k}.npz"
        if not f.is_file():
            continue
        with np.load(f) as d:
            sel = d["myocardium"].astype(bool) if region == "myocardium" else np.ones(d["infarct"].shape, bool)
            truth.append(d["infarct"][sel].astype(bool))
            prob.append(d["prob"][sel].astype(np.float32))
    if not truth:
        return None, None
    return np.concatenate(truth), np.concatenate(prob)


def roc_pr_figure(path, curves, *, title):
    """ROC and PR panels of several (label, truth, prob) sets (paper Fig. 3 (a, b) / (c, d))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..metrics import curves as pr_roc, pixel_metrics

    fig, (a, b) = plt.subplots(1, 2, figsize=(9, 4), dpi=100)
    for label, t, p in curves:
        if t is None or not t.any() or t.all():
            continue
        c = pr_roc(t, p)
        m = pixel_metrics(t, p >= 0.5, p)
        a.plot(c["fpr"], c["tpr"], label=f"{label} (AUC {m['roc_auc']:.3f})")
        b.plot(c["recall"], c["precision"], label=f"{label} (AP {m['pr_auc']:.3f})")
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="1 - specificity", ylabel="sensitivity", title=f"ROC {title}")
    b.set(xlabel="recall", ylabel="precision", title=f"PR {title}")
    a.legend(loc="lower right", fontsize=8)
    b.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def report(cfg, summary, env):
    lines = ["# Table 1: local vs global motion features (same folds)", "",
             *_cells.scope(cfg, summary),
             "| features | paper acc / sens / spec | ours accuracy | ours sensitivity | ours specificity | "
             "ours Dice | ours ROC AUC |", "|---|---|---|---|---|---|---|"]
    for cell in [c for c in TABLE1 if c in summary]:
        s = summary[cell]
        m, r = s["myocardium"], s["roi"]
        lines.append(f"| {LABELS[cell]} | {' / '.join(map(str, PAPER[cell]))} | {_cells.pct(m['accuracy'])} "
                     f"({_cells.pct(r['accuracy'])}) | {_cells.pct(m['sensitivity'])} ({_cells.pct(r['sensitivity'])}) "
                     f"| {_cells.pct(m['specificity'])} ({_cells.pct(r['specificity'])}) | {_cells.pct(m['dice'])} | "
                     f"{_cells.pct(m['roc_auc'], 2)} |")
    for metric, label in (("accuracy", "myocardium accuracy"), ("roc_auc", "myocardium ROC AUC (threshold-free)")):
        v = {c: summary[c]["myocardium"][metric]["mean"] for c in summary}
        if set(v) == {"local", "global", "both"} and None not in v.values():
            order = sorted(v, key=v.get, reverse=True)
            lines += ["", f"Ordering by {label}: {' > '.join(order)} "
                          f"({'as' if order == ['both', 'local', 'global'] else 'unlike'} the paper: both > local > global)."]
    design = [c for c in summary if c not in TABLE1]
    if design:
        lines += ["", "## Design choices the paper leaves open", "",
                  "Each row changes one thing from the default model (`both`). Compare on the validation subjects "
                  "(drawn from the training folds); the test-fold columns are reported, not chosen on.", "",
                  "Sensitivity at specificity 0.95 is read off each ROC curve (threshold-free).", "",
                  "| model | validation Dice | validation ROC AUC | validation sens. at spec. 0.95 | test Dice | "
                  "test sensitivity | test specificity | test ROC AUC | test sens. at spec. 0.95 |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for cell in [c for c in ("both",) if c in summary] + design:
            s, v = summary[cell]["myocardium"], summary[cell].get("validation") or {}
            cols = [_cells.pct(v.get("dice")), _cells.pct(v.get("roc_auc"), 2), _cells.pct(v.get("sensitivity_at_spec95")),
                    _cells.pct(s["dice"]), _cells.pct(s["sensitivity"]), _cells.pct(s["specificity"]),
                    _cells.pct(s["roc_auc"], 2), _cells.pct(s.get("sensitivity_at_spec95"))]
            lines.append(f"| {LABELS.get(cell, cell)} | " + " | ".join(cols) + " |")
    lines += ["", "![Fig. 3(c, d)](roc_pr.png)", "", _cells.footer(env, summary), ""]
    return lines


def run(config, profile, out_dir):
    t0 = time.perf_counter()
    cfg, summary = _cells.run_grid(config, profile, out_dir, title="Table 1")
    env = _cells.environment(cfg)
    roc_pr_figure(Path(out_dir) / "roc_pr.png",
                  [(LABELS[c], *load_scores(s["folder"], s["folds"])) for c, s in summary.items() if c in TABLE1],
                  title="(cf. paper Fig. 3c, d), myocardium pixels")
    result = dict(table="1", paper={k: dict(zip(("accuracy", "sensitivity", "specificity"), v))
                                    for k, v in PAPER.items()},
                  cells=summary, environment=env, seconds=sum(s["total_s"] for s in summary.values()),
                  wall_seconds=time.perf_counter() - t0, settings=cfg)
    _cells.write_outputs(out_dir, result, report(cfg, summary, env))
    print(f"wrote {out_dir}/metrics.json, report.md and roc_pr.png")
    return 0
