"""The paper's figures from stored results (no training): Fig. 2, Fig. 3(a-e), Fig. 4.

* Fig. 2: predicted infarct (green) over the end-diastolic ROI with the traced infarct outlined
  (yellow), test subjects of the full model's cell of ``make ablation-features``;
* Fig. 3(a, b): ROC and PR of the full model (myocardium pixels and all ROI pixels);
* Fig. 3(c, d): ROC and PR of local-only, global-only and both features (Table 1 cells);
* Fig. 3(e): the patch-size plot of ``make ablation-patchsize``;
* Fig. 4: the optical-flow example of ``make flow-bench``.

``ofrnn experiment figures`` (``make figures``) writes ``results/figures/`` (PNG files, metrics.json
listing what was drawn from which source, report.md); a figure whose source is missing is listed
with the command that makes it.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np

from ..files import save_figure
from . import _cells
from .ablation_features import LABELS, load_scores, roc_pr_figure


def _load(path):
    path = Path(path)
    return json.loads(path.read_text()) if path.is_file() else None


def fig2(path, folder, folds, *, n):
    """Grid of Fig. 2 style overlays: the ``n`` test subjects with the largest traced infarcts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for k in folds:
        f = Path(folder) / f"fold{k}.npz"
        if f.is_file():
            with np.load(f) as d:
                for i in range(len(d["ids"])):
                    rows.append(dict(id=str(d["ids"][i]), level=str(d["levels"][i]), image=d["image"][i].astype(float),
                                     prob=d["prob"][i].astype(float), infarct=d["infarct"][i],
                                     myocardium=d["myocardium"][i], threshold=float(d["threshold"])))
    if not rows:
        return None
    rows = sorted(rows, key=lambda r: -int(r["infarct"].sum()))[:n]
    fig, axes = plt.subplots(1, len(rows), figsize=(2.6 * len(rows), 2.9), dpi=100, squeeze=False)
    for ax, r in zip(axes[0], rows):
        pred = r["prob"] >= r["threshold"]
        ax.imshow(r["image"], cmap="gray", interpolation="nearest")
        green = np.zeros(pred.shape + (4,))
        green[..., 1] = 1.0
        green[..., 3] = 0.45 * pred
        ax.imshow(green, interpolation="nearest")
        if r["infarct"].any():
            ax.contour(r["infarct"].astype(float), levels=[0.5], colors="yellow", linewidths=0.8)
        m = r["myocardium"].astype(bool)
        inter = np.count_nonzero(pred & m & r["infarct"].astype(bool))
        denom = np.count_nonzero(pred & m) + np.count_nonzero(r["infarct"].astype(bool) & m)
        ax.set_title(f"{r['id']} ({r['level']})\nmyocardium Dice {2 * inter / denom if denom else float('nan'):.2f}",
                     fontsize=7)
        ax.axis("off")
    fig.suptitle("cf. paper Fig. 2: predicted infarct (green), traced infarct (yellow)", fontsize=8)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)
    return [r["id"] for r in rows]


def run(config, profile, out_dir):
    cfg = _cells.resolve_plain(config, profile)
    results = _cells._path(cfg["results"])
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    made, missing = {}, {}
    feats = _load(results / "ablation_features" / "metrics.json")
    if feats is None:
        for name in ("fig2_overlays.png", "fig3ab_roc_pr.png", "fig3cd_local_global.png"):
            missing[name] = "not run yet: make ablation-features"
    else:
        cells = feats["cells"]
        if "both" in cells:
            full = cells["both"]
            ids = fig2(out_dir / "fig2_overlays.png", full["folder"], full["folds"], n=cfg["overlays"])
            made["fig2_overlays.png"] = dict(source=full["folder"], subjects=ids)
            roc_pr_figure(out_dir / "fig3ab_roc_pr.png",
                          [("myocardium pixels", *load_scores(full["folder"], full["folds"])),
                           ("all ROI pixels", *load_scores(full["folder"], full["folds"], region="roi"))],
                          title="OF-RNN (cf. paper Fig. 3a, b)")
            made["fig3ab_roc_pr.png"] = dict(source=full["folder"], folds=full["folds"])
        roc_pr_figure(out_dir / "fig3cd_local_global.png",
                      [(LABELS[c], *load_scores(s["folder"], s["folds"])) for c, s in cells.items()],
                      title="(cf. paper Fig. 3c, d), myocardium")
        made["fig3cd_local_global.png"] = dict(source={c: s["folder"] for c, s in cells.items()})
    for name, src, make in (("fig3e_patchsize.png", results / "ablation_patchsize" / "patchsize.png",
                             "make ablation-patchsize"),
                            ("fig4_flow.png", results / "flow" / "fig4.png", "make flow-bench")):
        if src.is_file():
            shutil.copyfile(src, out_dir / name)
            made[name] = dict(source=str(src))
        else:
            missing[name] = f"not run yet: {make}"
    result = dict(profile=profile, made=made, missing=missing, seconds=time.perf_counter() - t0)
    lines = ["# Figures (paper Figs. 2-4), drawn from stored results", ""]
    lines += [f"![{n}]({n})" for n in made] + [""]
    lines += [f"- {n}: {why}" for n, why in missing.items()] + [""]
    _cells.write_outputs(out_dir, result, lines)
    print(f"wrote {len(made)} figures to {out_dir} ({len(missing)} missing)")
    return 0
