"""Phantom physiology report: what the simulator promises, measured on a cohort's stored masks.

Run with ``make phantom-stats`` (``ofrnn experiment phantom``). For every subject: slice ejection
fraction (area), mean systolic wall thickening of remote and of scar sectors
(:mod:`ofrnn.simulate.measure`), largest change of myocardial area over the cycle
(incompressibility), infarct share of the myocardium, SNR. Writes ``metrics.json`` (per subject
and summaries), ``report.md``, ``physiology.png`` (distributions) and ``gallery.png`` (ED/ES
crops with the scar outlined).
"""
from __future__ import annotations

import platform
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .._version import __version__
from ..files import atomic_write_text, save_figure, write_json
from ..simulate import SNR_RANGE
from ..simulate.measure import area_ejection_fraction, remote_and_scar_thickening
from ..store import open_cohort


def _summary(values):
    v = np.asarray([x for x in values if x is not None and not np.isnan(x)], float)
    if not v.size:
        return None
    return dict(n=int(v.size), mean=float(v.mean()), sd=float(v.std()), min=float(v.min()),
                p5=float(np.percentile(v, 5)), median=float(np.median(v)), p95=float(np.percentile(v, 95)),
                max=float(v.max()))


def measure_subject(s, *, sectors, scar_share, guard):
    area = s.myocardium_t.reshape(len(s.myocardium_t), -1).sum(1).astype(float)
    scar, remote = remote_and_scar_thickening(s, n_sectors=sectors, scar_share=scar_share, guard=guard)
    return dict(id=s.id, level=s.level, infarct=bool(s.infarct.any()), ef=area_ejection_fraction(s),
                thickening_remote=remote, thickening_scar=scar,
                myocardial_area_change=float(np.abs(area / area[0] - 1).max()),
                infarct_share=float(s.infarct.sum() / max(s.myocardium.sum(), 1)),
                transmurality=float(s.attrs.get("infarct_max_transmurality", np.nan)),
                territory=s.attrs.get("infarct_territory", ""), snr=float(s.attrs.get("snr", np.nan)),
                spacing_mm=float(s.spacing_mm[0]))


def _figures(rows, gallery, out_dir):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    normal = [r for r in rows if not r["infarct"]]
    mi = [r for r in rows if r["infarct"]]
    fig, ax = plt.subplots(1, 4, figsize=(17, 3.8))
    bins = np.linspace(0, 0.9, 28)
    ax[0].hist([r["ef"] for r in normal], bins, alpha=0.7, label=f"no infarct (n={len(normal)})")
    ax[0].hist([r["ef"] for r in mi], bins, alpha=0.7, label=f"post-MI (n={len(mi)})")
    ax[0].axvspan(0.55, 0.75, color="g", alpha=0.08, label="normal EF 55-75 %")
    ax[0].set_xlabel("slice ejection fraction (area)")
    ax[0].legend(fontsize=8)
    tb = np.linspace(-0.3, 0.9, 30)
    ax[1].hist([r["thickening_remote"] for r in rows if not np.isnan(r["thickening_remote"])], tb, alpha=0.7,
               label="remote sectors")
    ax[1].hist([r["thickening_scar"] for r in rows if not np.isnan(r["thickening_scar"])], tb, alpha=0.7,
               label="scar sectors (>=60 % infarct)")
    ax[1].set_xlabel("systolic wall thickening (ES/ED - 1)")
    ax[1].legend(fontsize=8)
    ax[2].hist([100 * r["infarct_share"] for r in mi], np.linspace(0, 50, 26))
    ax[2].set_xlabel("infarct, % of slice myocardium")
    ax[3].scatter([r["transmurality"] for r in mi], [r["thickening_scar"] if not np.isnan(r["thickening_scar"])
                                                      else np.nan for r in mi], s=12)
    ax[3].set_xlabel("max transmurality")
    ax[3].set_ylabel("scar-sector thickening")
    fig.tight_layout()
    save_figure(fig, out_dir / "physiology.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(2, len(gallery), figsize=(2.6 * len(gallery), 5.4))
    for j, s in enumerate(gallery):
        es = int(s.attrs.get("es_frame", np.argmin(s.lv_cavity_t.reshape(len(s.cine), -1).sum(1))))
        y0, x0, y1, x1 = s.lv_box[0]
        pad = int(0.5 * max(y1 - y0, x1 - x0))
        sl = (slice(max(0, y0 - pad), y1 + pad), slice(max(0, x0 - pad), x1 + pad))
        for i, t in enumerate((0, es)):
            a = ax[i, j]
            a.imshow(s.cine[t][sl], cmap="gray")
            if i == 0 and s.infarct.any():
                a.contour(s.infarct[sl], [0.5], colors="y", linewidths=0.8)
            a.set_xticks([])
            a.set_yticks([])
            a.set_title(f"{s.id} {s.level} {'ED' if t == 0 else f'ES ({t})'}", fontsize=8)
    fig.suptitle("phantom: end-diastole (scar outlined in yellow; not visible in the image) and end-systole",
                 fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "gallery.png", dpi=90)
    plt.close(fig)


def run(config, profile, out_dir):
    prof = config.get("profile", {}).get(profile, {})
    settings = {**{k: v for k, v in config.items() if k != "profile"}, **prof}
    out_dir = Path(out_dir)
    t0 = time.perf_counter()
    rows, gallery = [], []
    per_level = {}
    with open_cohort(settings["cohort"]) as c:
        ids = c.ids[: settings["subjects"]] if settings.get("subjects") else c.ids
        for sid in tqdm(ids, desc="phantom stats", unit="subject"):
            # everything but the flow fields, which are most of the file and not measured here
            s = c.read(sid, fields=("cine", "lv_box", "infarct", "myocardium", "myocardium_t", "lv_cavity_t"))
            rows.append(measure_subject(s, sectors=settings["sectors"], scar_share=settings["scar_share"],
                                        guard=settings["guard"]))
            n_per_level = max(1, settings["gallery"] // 3)
            if per_level.get(s.level, 0) < n_per_level and (s.infarct.any() or per_level.get(s.level, 0)):
                per_level[s.level] = per_level.get(s.level, 0) + 1
                gallery.append(s)
        params = c.params
    normal = [r for r in rows if not r["infarct"]]
    mi = [r for r in rows if r["infarct"]]
    summary = dict(
        ef_no_infarct=_summary([r["ef"] for r in normal]),
        ef_post_mi=_summary([r["ef"] for r in mi]),
        thickening_remote=_summary([r["thickening_remote"] for r in rows]),
        thickening_remote_no_infarct=_summary([r["thickening_remote"] for r in normal]),
        thickening_scar=_summary([r["thickening_scar"] for r in rows]),
        myocardial_area_change=_summary([r["myocardial_area_change"] for r in rows]),
        infarct_share=_summary([r["infarct_share"] for r in mi]),
        snr=_summary([r["snr"] for r in rows]),
        spacing_mm=_summary([r["spacing_mm"] for r in rows]),
        slices_with_infarct=len(mi), slices=len(rows),
        levels={lv: sum(r["level"] == lv for r in rows) for lv in ("apical", "mid", "basal")},
        territories={t: sum(r["territory"] == t for r in mi) for t in ("LAD", "RCA", "LCX")},
    )
    _figures(rows, gallery[: settings["gallery"]], out_dir)
    metrics = dict(summary=summary, subjects=rows, settings=settings, cohort_params=params,
                   versions=dict(ofrnn=__version__, python=platform.python_version(), numpy=np.__version__),
                   seconds=time.perf_counter() - t0)
    write_json(out_dir / "metrics.json", metrics, nan_as_null=True)
    atomic_write_text(out_dir / "report.md", _report(summary, settings))
    print(f"wrote {out_dir}/metrics.json, report.md, physiology.png, gallery.png")


def _fmt(s, pct=False):
    if s is None:
        return "n/a"
    k = 100 if pct else 1
    u = " %" if pct else ""
    return (f"{k * s['mean']:.2f}{u} ± {k * s['sd']:.2f} (median {k * s['median']:.2f}, 5-95 %: "
            f"{k * s['p5']:.2f}-{k * s['p95']:.2f}, n={s['n']})")


def _report(s, settings):
    rows = [
        ("slice EF, no infarct", _fmt(s["ef_no_infarct"], True), "55-75 % (normal)"),
        ("slice EF, post-MI", _fmt(s["ef_post_mi"], True), "lower than normal"),
        ("wall thickening, remote sectors (all slices)", _fmt(s["thickening_remote"], True), "30-80 % (normal)"),
        ("wall thickening, remote sectors (no-infarct slices)", _fmt(s["thickening_remote_no_infarct"], True),
         "30-80 %"),
        ("wall thickening, scar sectors", _fmt(s["thickening_scar"], True), "< 1/3 of remote; ~0 or negative"),
        ("largest myocardial area change over the cycle", _fmt(s["myocardial_area_change"], True),
         "0 (in-plane incompressible), up to pixel quantisation"),
        ("infarct share of slice myocardium (post-MI)", _fmt(s["infarct_share"], True),
         "EMIDEC LGE: median 22 %, IQR 14-37 %"),
        ("SNR (blood / noise sigma, per receive channel)", _fmt(s["snr"]), "%g-%g" % SNR_RANGE),
        ("pixel spacing (mm)", _fmt(s["spacing_mm"]), "1.3-1.6"),
    ]
    lines = ["# Phantom physiology", "",
             f"Cohort `{settings['cohort']}`: {s['slices']} slices ({s['levels']}), {s['slices_with_infarct']} with "
             f"infarct ({s['territories']}). Measured on the stored masks by `ofrnn.simulate.measure`; thickening "
             f"over {settings['sectors']} sectors, scar = >= {100 * settings['scar_share']:.0f} % infarct, remote = no "
             f"infarct within {settings['guard']} sectors.", "",
             "| quantity | measured: mean ± sd (median, 5-95 %) | expected |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c} |" for a, b, c in rows]
    lines += ["", "![distributions](physiology.png)", "", "![gallery](gallery.png)", ""]
    return "\n".join(lines)
