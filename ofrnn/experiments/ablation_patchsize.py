"""Fig. 3(e): accuracy and computation time of OF-RNN for N x N local patches, N = 3, 5, ..., 17.

"Because the displacements of the LV wall between two consecutive images are small (approximately
1 or 2 pixels/frame), it is necessary to adjust the size of the patch to capture sufficient local
motion information" (Sec. 3): one cell per N (the ``patch`` setting), same folds as ``make train``;
time = training seconds and inference seconds per subject (features + network, 64x64 ROI).

``ofrnn experiment ablation_patchsize [--profile quick|paper|smoke]``; settings in
``experiments/ablation_patchsize.toml``; results in ``results/ablation_patchsize/`` (metrics.json,
report.md, patchsize.png).
"""
from __future__ import annotations

import time
from pathlib import Path

from ..files import save_figure
from . import _cells


def _n(cfg, cell):
    return int(cfg["cells"][cell]["patch"])


def figure(path, cfg, summary):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cells = sorted(summary, key=lambda c: _n(cfg, c))
    n = [_n(cfg, c) for c in cells]
    acc = [100 * (summary[c]["myocardium"]["accuracy"]["mean"] or float("nan")) for c in cells]
    sd = [100 * summary[c]["myocardium"]["accuracy"]["sd"] for c in cells]
    tt = [summary[c]["train_s"]["mean"] / 60 for c in cells]
    fig, a = plt.subplots(figsize=(5.5, 4), dpi=100)
    auc = [100 * (summary[c]["myocardium"]["roc_auc"]["mean"] or float("nan")) for c in cells]
    a.errorbar(n, acc, yerr=sd, marker="o", color="C0", capsize=3, label="accuracy")
    a.plot(n, auc, marker="^", color="C2", label="ROC AUC")
    a.set(xlabel="patch size N (N x N)", ylabel="myocardium pixels (%)", xticks=n, title="cf. paper Fig. 3(e)")
    a.legend(loc="lower right", fontsize=8)
    b = a.twinx()
    b.plot(n, tt, marker="s", color="C1")
    b.set_ylabel("training time (min)", color="C1")
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def report(cfg, summary, env):
    cells = sorted(summary, key=lambda c: _n(cfg, c))
    lines = ["# Fig. 3(e): patch size N", "",
             *_cells.scope(cfg, summary),
             "The paper shows this as a plot only (11 x 11: 'better accuracy in a reasonable amount of time').", "",
             "| N | accuracy | Dice | ROC AUC | train s | predict s/subject |", "|---|---|---|---|---|---|"]
    for c in cells:
        s = summary[c]
        lines.append(f"| {_n(cfg, c)} | {_cells.pct(s['myocardium']['accuracy'])} ({_cells.pct(s['roi']['accuracy'])}) "
                     f"| {_cells.pct(s['myocardium']['dice'])} | {_cells.pct(s['myocardium']['roc_auc'], 2)} | "
                     f"{s['train_s']['mean']:.0f} | {s['predict_s_per_subject']['mean']:.2f} |")
    acc = {c: summary[c]["myocardium"]["accuracy"]["mean"] for c in cells}
    if len(acc) > 1 and None not in acc.values():
        best = max(acc, key=acc.get)
        lines += ["", f"Highest accuracy at N = {_n(cfg, best)}."]
    lines += ["", "![Fig. 3(e)](patchsize.png)", "", _cells.footer(env, summary), ""]
    return lines


def run(config, profile, out_dir):
    t0 = time.perf_counter()
    cfg, summary = _cells.run_grid(config, profile, out_dir, title="Fig. 3(e)")
    env = _cells.environment(cfg)
    figure(Path(out_dir) / "patchsize.png", cfg, summary)
    result = dict(figure="3e", patch={c: _n(cfg, c) for c in summary}, cells=summary, environment=env,
                  seconds=sum(s["total_s"] for s in summary.values()),
                  wall_seconds=time.perf_counter() - t0, settings=cfg)
    _cells.write_outputs(out_dir, result, report(cfg, summary, env))
    print(f"wrote {out_dir}/metrics.json, report.md and patchsize.png")
    return 0
