"""Figures and the markdown report of the phantom-realism experiment (:mod:`ofrnn.experiments.realism`):
galleries of simulated and real frames, the moderate edges, texture, geometry and profile plots, ROC
curves, and ``report.md`` from the experiment's metrics.
"""
from __future__ import annotations

import numpy as np

from ..files import pyplot, save_figure
from ..simulate.mri import MT_RANGE
from .realism_measures import (AIR_DISTANCE_EDGES, BLOOD_DEPTH_EDGES, COHERENCE_SIGMA_PX, CONTRAST_MARGIN_PX,
                               CORE_DEPTH, FAT_BAND_PX, FAT_QUANTILE, GRADIENT_MAX, INTENSITY_MAX, LEVEL_LABELS,
                               MODERATE_GRADIENT, PIXEL_BAND_MIN_PIXELS, PIXEL_BAND_NAMES, PIXEL_BANDS, PROFILE_KEYS,
                               RIM_DEPTH, STATISTICS, TISSUE_LABELS, coherence_map, heart_crop, normalise)

#: the report's number format of a tissue measure (the rest: two decimals)
TISSUE_FORMATS = {"blood_percentile": "{:.1f}", "snr": "{:.1f}", "air_blood": "{:.3f}"}


def _gallery_picks(groups, shown, n):
    """Frame indices for the gallery rows: simulated ones spread over the cohort; real frames of
    ``shown``, half ACDC and half Sunnybrook where both exist."""
    sim = np.flatnonzero(groups == "simulated")
    rows = [sim[np.linspace(0, len(sim) - 1, n).astype(int)]]
    real = []
    sets = [np.flatnonzero(shown & np.char.startswith(groups, p)) for p in ("acdc", "sunnybrook")]
    sets = [s for s in sets if s.size]
    for j, s in enumerate(sets):
        k = n // len(sets) + (j < n % len(sets))
        real.append(s[np.linspace(0, len(s) - 1, k).astype(int)])
    rows.append(np.concatenate(real) if real else np.array([], int))
    return rows


def _gallery_cells(ax, picks, frames):
    """Each gallery panel with a frame: ``(axes, frame index, frame)`` row by row over ``picks``;
    every panel's axes are switched off, and panels beyond a row's picks stay empty."""
    for r, idx in enumerate(picks):
        for j in range(ax.shape[1]):
            ax[r, j].axis("off")
            if j < len(idx):
                yield ax[r, j], idx[j], frames[idx[j]]


def _edge_figure(frames, picks, coherence, out_dir):
    """The gallery's first frames with their moderate edges (:data:`MODERATE_GRADIENT`) coloured by
    the structure tensor's coherence (:func:`coherence_map`) over the frame in grey."""
    plt = pyplot()
    n = max(len(idx) for idx in picks)
    fig, ax = plt.subplots(2, n, figsize=(3.4 * n, 7.2), squeeze=False)
    shown = None
    for a, i, f in _gallery_cells(ax, picks, frames):
        c, g = coherence_map(f["image"])
        moderate = (g >= MODERATE_GRADIENT[0]) & (g < MODERATE_GRADIENT[1])
        # the frame dimmed to a third, so the coloured edges stand out
        a.imshow(np.clip(normalise(f["image"]), 0, 1.1), cmap="gray", vmin=0, vmax=3.0)
        shown = a.imshow(np.ma.masked_where(~moderate, c), cmap="viridis", vmin=0, vmax=1, interpolation="nearest")
        a.set_title(f"{f['group'].split()[0]} {f['subject']}: "
                    + (f"{coherence[i]:.2f}" if np.isfinite(coherence[i]) else "n/a"), fontsize=7)
    if shown is not None:
        fig.colorbar(shown, ax=ax, shrink=0.6, label="orientation coherence")
    fig.suptitle(f"moderate edges ({MODERATE_GRADIENT[0]:g}-{MODERATE_GRADIENT[1]:g} x p99 per pixel) coloured by "
                 "coherence (1 = a straight edge), over the whole frame; top: simulated, bottom: real; title: the median "
                 "over the body", fontsize=9)
    save_figure(fig, out_dir / "edges.png", dpi=90)
    plt.close(fig)


def figures(frames, groups, evaluation, by_group, per_frame, curves, is_real, cfg, out_dir):
    """Write the experiment's figures into ``out_dir``: ``gallery.png`` and ``crops.png`` (simulated
    frames over real evaluation frames, or calibration frames when none are loaded), ``edges.png``,
    ``texture.png``, ``geometry.png``, ``profiles.png`` and ``roc.png``.

    Parameters
    ----------
    frames : list of dict
        The frames (:func:`ofrnn.experiments.realism.load_frames`).
    groups : (N,) str array
        Each frame's group (:data:`ofrnn.experiments.realism.GROUPS`).
    evaluation, is_real : (N,) bool arrays
    by_group, per_frame : dict
        Summaries and per-frame measures (:func:`ofrnn.experiments.realism.group_summaries`).
    curves : dict
        ROC curves: name -> (scores, which frames they score).
    cfg : dict
        The resolved settings (``experiments/realism.toml``).
    out_dir : Path
    """
    plt = pyplot()
    n = cfg["gallery"]["frames"]
    shown = evaluation if evaluation.any() else ~evaluation & (groups != "simulated")
    picks = _gallery_picks(groups, shown, n)
    for name, crop in (("gallery.png", False), ("crops.png", True)):
        fig, ax = plt.subplots(2, n, figsize=(1.9 * n, 4.2), squeeze=False)
        for a, _, f in _gallery_cells(ax, picks, frames):
            img = heart_crop(f["image"], f["lv"], scale=cfg["cnn"]["crop_scale"], size=96) if crop \
                else normalise(f["image"])
            a.imshow(np.clip(img, 0, 1.1), cmap="gray", vmin=0, vmax=1.1)
            a.set_title(f"{f['group'].split()[0]} {f['subject']}", fontsize=7)
        fig.suptitle("top: simulated; bottom: real " + ("evaluation frames (never fitted)" if evaluation.any()
                                                        else "calibration frames")
                     + (" - heart-centred crops" if crop else ""), fontsize=9)
        fig.tight_layout()
        save_figure(fig, out_dir / name, dpi=90)
        plt.close(fig)

    _edge_figure(frames, _gallery_picks(groups, shown, max(1, n // 2)), per_frame["edge_coherence"], out_dir)

    st = cfg["statistics"]
    centres = lambda hi, n: (np.arange(n) + 0.5) * hi / n  # noqa: E731  (bin centres on [0, hi])
    axes_x = dict(intensity=centres(INTENSITY_MAX, st["intensity_bins"]), gradient=centres(GRADIENT_MAX, st["gradient_bins"]),
                  lbp=np.arange(10), spectrum=centres(0.5, st["spectrum_bins"]))
    labels = dict(intensity="intensity / 99th percentile", gradient="gradient magnitude per pixel",
                  lbp="uniform LBP code (8 neighbours)", spectrum="spatial frequency (cycles / pixel)")
    fig, ax = plt.subplots(1, 4, figsize=(18, 3.8))
    for a, key in zip(ax, ("intensity", "gradient", "lbp", "spectrum")):
        for g, r in by_group.items():
            m, s = np.array(r["texture"][key]["mean"]), np.array(r["texture"][key]["sd"])
            a.plot(axes_x[key], m, label=f"{g} ({r['frames']})", lw=2 if g == "simulated" else 1)
            a.fill_between(axes_x[key], m - s, m + s, alpha=0.1)
        a.set_xlabel(labels[key])
        a.set_yscale("log" if key in ("intensity", "gradient") else "linear")
    ax[0].set_ylabel("share of pixels")
    ax[3].set_ylabel("log10 share of power")
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "texture.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(1, 5, figsize=(22, 3.6))
    by = {g: np.flatnonzero(groups == g) for g in by_group}
    measures = (("lv_size", "LV diameter / FOV side", np.linspace(0, 0.45, 30)),
                ("body_fraction", "body share of the FOV", np.linspace(0, 1, 30)),
                ("blood_percentile", "LV blood percentile among body pixels", np.linspace(40, 100, 31)),
                ("rv_direction_deg", "RV direction from the LV (deg; 180 = image left)", np.linspace(0, 360, 37)),
                ("skin_direction_deg", "nearest skin from the LV (deg; 90 = up)", np.linspace(0, 360, 37)))
    for a, (key, title, bins) in zip(ax, measures):
        for g, idx in by.items():
            v = per_frame[key][idx]
            v = v[np.isfinite(v)]
            if v.size:
                a.hist(v, bins, density=True, histtype="step", lw=2 if g == "simulated" else 1, label=g)
        a.set_xlabel(title)
    ax[0].legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "geometry.png", dpi=90)
    plt.close(fig)

    fig, ax = plt.subplots(1, 2, figsize=(11, 3.8))
    for a, (kind, edges, xlabel, ylabel) in zip(ax, (
            ("blood", BLOOD_DEPTH_EDGES, "depth from the LV blood pool's contour (px)", "LV blood / its median"),
            ("air", AIR_DISTANCE_EDGES, "distance from the body (px)", "air outside the body / blood median"))):
        x = np.arange(len(edges))
        for g, r in by_group.items():
            rows = [r.get(k) for k in PROFILE_KEYS[kind]]
            if not any(rows):
                continue
            med, q1, q3 = (np.array([row[q] if row else np.nan for row in rows]) for q in ("median", "q1", "q3"))
            a.plot(x, med, marker="o", lw=2 if g == "simulated" else 1, label=g)
            a.fill_between(x, q1, q3, alpha=0.12)
        a.set_xticks(x, [f"{lo}-{hi}" for lo, hi in zip(edges, edges[1:])] + [f">= {edges[-1]}"], fontsize=8)
        a.set_xlabel(xlabel)
        a.set_ylabel(ylabel)
    ax[1].set_yscale("log")
    ax[0].legend(fontsize=7)
    fig.suptitle("median (IQR) over frames", fontsize=9)
    fig.tight_layout()
    save_figure(fig, out_dir / "profiles.png", dpi=90)
    plt.close(fig)

    from sklearn.metrics import roc_curve

    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for name, (s, m) in curves.items():
        fpr, tpr, _ = roc_curve(is_real[m], s[m])
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], "k:", lw=0.8)
    ax.set_xlabel("simulated frames called real")
    ax.set_ylabel("real frames called real")
    ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, out_dir / "roc.png", dpi=90)
    plt.close(fig)


def _iqr(s, fmt="{:.2f}"):
    if s is None:
        return "n/a"
    return f"{fmt.format(s['median'])} ({fmt.format(s['q1'])}-{fmt.format(s['q3'])})"


def report(m):
    """``report.md``'s text (markdown) from the experiment's metrics (``metrics.json``'s dict)."""
    sep, g = m["separability"], m["groups"]
    L = ["# Phantom realism: simulated vs real short-axis cine frames", "",
         "`make realism` (`ofrnn experiment realism`, settings `experiments/realism.toml`, profile "
         f"`{m['profile']}`, {m['timings']['total_s']:.0f} s). Real frames are split by patient: calibration "
         f"(ACDC {m['split']['calibration_acdc'][0]:03d}-{m['split']['calibration_acdc'][1]:03d}, Sunnybrook "
         f"{', '.join(m['split']['calibration_sunnybrook'])}) may be fitted, evaluation (every other patient) is only "
         "scored.", ""]
    for k, why in m["skipped"].items():
        L.append(f"- **{k} skipped**: {why}")
    L += ["## Separability (lower is better; 0.5 = indistinguishable; target <= 0.85)", "",
          "ROC AUC of real evaluation frames against held-out simulated frames, 95 % interval from a bootstrap "
          "over subjects. Every model is trained on the calibration real frames and other simulated subjects, and "
          "scores the simulated and evaluation subjects of its own fold.", "",
          "| classifier | all real evaluation frames | ACDC evaluation patients | Sunnybrook evaluation patients |", "|---|---|---|---|"]
    for name, r in sep.items():
        cells = [f"{r[k]['auc']:.3f} [{r[k]['ci95'][0]:.3f}, {r[k]['ci95'][1]:.3f}] ({r[k]['real_frames']} / "
                 f"{r[k]['simulated_frames']} frames)" if k in r else "n/a" for k in ("all", "acdc", "sunnybrook")]
        L.append(f"| {f'statistics: {name} alone' if name in STATISTICS else name} | " + " | ".join(cells) + " |")
    draws = m["settings"]["classifier"]["fold_draws"]
    L += ["", f"Tuning numbers (calibration real frames and simulated frames only, grouped cross-validation: "
          f"{m['settings']['classifier']['folds']} folds for the statistics, {m['settings']['cnn']['folds']} for the "
          "CNNs, which thus train on fewer frames than in the evaluation above"
          + (f"; in brackets the mean ± sd over {draws} draws of the statistics' folds, as the draw alone moves "
             "the AUC by a few hundredths" if draws > 1 else "") + "): AUC "
          + ", ".join(f"{k} {c['auc']:.3f}" + (f" ({c['auc_fold_draws_mean']:.3f} ± {c['auc_fold_draws_sd']:.3f})"
                                               if "fold_draws" in c else "")
                      for k, c in m["separability_calibration"].items()) + ".",
          "", "What gives the phantom away most, one statistic at a time (calibration real frames against "
          "simulated frames: the frames one may tune on; AUC of the statistic alone as a score for real, so "
          "below 0.5 means higher in simulated frames; means over frames: shares of the frame's pixels for the "
          "histograms, log10 of the band's share of the power for the spectrum; intensities and gradients over "
          "each frame's 99th percentile; a histogram's last bin holds everything above it):", "",
          "| statistic | AUC alone | simulated mean | real mean |", "|---|---|---|---|",
          *(f"| {r['name']} | {r['auc']:.3f} | {r['simulated']:.4g} | {r['real']:.4g} |"
            for r in m["separating_statistics"]),
          "", "What the logistic regression of all statistics leans on (fitted on the same frames; for a linear model "
          "the gap between the real and simulated frames' mean log-odds, "
          f"{m['classifier_leaning']['gap']:.1f} here, is the sum over the statistics of coefficient x standardised "
          "mean difference (real - simulated); a family can separate less alone while the model finds the gap "
          "through the others):", "",
          "| statistic | coefficient | standardised difference | share of the gap |", "|---|---|---|---|",
          *(f"| {r['name']} | {r['coefficient']:.3f} | {r['difference']:.2f} | {100 * r['share']:.0f} % |"
            for r in m["classifier_leaning"]["terms"]),
          "", "![ROC](roc.png)", "", "## Galleries", "", "![frames](gallery.png)", "", "![crops](crops.png)", "",
          "## Tissue intensity ratios", "",
          "Median (IQR) over frames. Blood and myocardium from labels (ACDC), manual contours (Sunnybrook; "
          f"myocardium only at ED) and the phantom's masks; myocardium / blood is read {CONTRAST_MARGIN_PX} px in from both "
          "masks' edges, where partial volume and the contour's placement do not mix the two tissues (frames "
          "whose eroded wall or pool is too small give none); the other ratios are over the whole pool's median. The body is the convex hull of the regions above 15 % "
          "of the blood level; its quantiles are over the blood median. Real frames have no labels for fat, "
          "liver, muscle or lung, so two are read where they must lie: the fat under the skin as the "
          f"{FAT_QUANTILE}th percentile of the body's pixels {FAT_BAND_PX[0]}-{FAT_BAND_PX[1]} px in from the skin "
          "(edges on the frame's border or a circular FOV mask's rim are not skin), the lung as the median of the "
          "body's pixels below 0.15 x blood (lung and gas); liver and muscle show only in the body quantiles, the "
          "bright share (>= 0.7 x blood: fat and fluid in bSSFP) and the dark share (< 0.15 x blood). Blood / noise: the blood median over "
          "Immerkaer's noise estimate (edges bias it low). Air / blood: the median outside the body (noise, "
          "ghosts; a reconstruction's blanked zeros left out). Blood core / rim: the LV blood pool's median "
          f"{CORE_DEPTH} or more pixels from its contour over its median {RIM_DEPTH[0]}-{RIM_DEPTH[1]} pixels from "
          "it (in-flow brightens the fast core, the slow blood by the trabeculated wall stays dark); blood IQR / "
          f"median: over the pool's pixels {RIM_DEPTH[0]} or more from the contour (`realism_measures.blood_depth_measures`). The whole "
          "profiles, and the air's beside the body (`realism_measures.air_distance_profile`; a haze that fades away from "
          "the body in real cines, a flat noise floor in the phantom):", "", "![profiles](profiles.png)", ""]
    L += ["| group | frames (subjects) | " + " | ".join(TISSUE_LABELS.values()) + " |",
          "|---" * (len(TISSUE_LABELS) + 2) + "|"]
    for name, r in g.items():
        L.append(f"| {name} | {r['frames']} ({r['subjects']}) | "
                 + " | ".join(_iqr(r.get(k), TISSUE_FORMATS.get(k, "{:.2f}")) for k in TISSUE_LABELS) + " |")
    L += ["", "Where the whole frame's pixels lie over the LV blood median (mean share of the frame; the "
          "99th percentile, median (IQR), sets the scale of the texture statistics' intensity axis):", "",
          "| group | " + " | ".join(LEVEL_LABELS.values()) + " |", "|---" * (len(LEVEL_LABELS) + 1) + "|"]
    for name, r in g.items():
        L.append(f"| {name} | {_iqr(r.get('p99_blood'))} | "
                 + " | ".join(f"{r[k]['mean']:.3f}" if r.get(k) else "n/a" for k in LEVEL_LABELS if k != "p99_blood")
                 + " |")
    sig = m["phantom_signal_over_blood"]
    L += ["", "The phantom's bSSFP signal over LV blood (flip 50 deg, nominal: the drawn transmit field lowers it; TR 3.0 ms at 1.5 T, "
          f"3.2 ms at 3 T; fat at its chemical shift; magnetization transfer at its mid-range {np.mean(MT_RANGE):g} in "
          "liver, muscle, spleen and abdomen; before texture, coil shading and noise):", "",
          "| tissue | " + " | ".join(sig) + " |", "|---|" + "---|" * len(sig)]
    for t in ("lv_myocardium", "subcutaneous_fat", "fat", "liver", "muscle", "spleen", "stomach", "abdomen", "lung"):
        L.append(f"| {t} | " + " | ".join(f"{sig[f][t]:.2f}" for f in sig) + " |")
    L += ["", "## Geometry", "",
          "| group | LV diameter / FOV side | RV direction (deg, 180 = image left) | nearest skin from the LV (deg, "
          "90 = up) | nearest skin (LV diameters) | matrix side (px) | short / long side | pixel (mm) |",
          "|---|---|---|---|---|---|---|---|"]
    for name, r in g.items():
        L.append(f"| {name} | {_iqr(r['lv_size'])} | {_iqr(r['rv_direction_deg'], '{:.0f}')} | "
                 f"{_iqr(r.get('skin_direction_deg'), '{:.0f}')} | {_iqr(r.get('skin_distance_lv'))} | "
                 f"{_iqr(r['matrix'], '{:.0f}')} | {_iqr(r.get('aspect'))} | {_iqr(r['pixel_mm'])} |")
    L += ["", "ACDC's shared copy keeps no pixel spacing. Sunnybrook has no RV contours. The nearest skin is the "
          "body's edge closest to the LV blood pool, off the frame's border: the chest wall, which shows how the "
          "oblique short-axis plane lies in the chest (the phantom turns its torso about the heart to match); its "
          "distance is in epicardial LV diameters (frames without a myocardium contour have none).", "",
          "![geometry](geometry.png)", "", "## Texture", "",
          "Mean ± sd over frames of each group: intensity and gradient histograms of the frame over its 99th "
          "percentile, uniform LBP histograms, radial power spectra (Hann window; shape only).", "",
          "![texture](texture.png)", "",
          "The body's pixel-scale texture by band of the frame over its 99th percentile (median (IQR) over frames; "
          "`realism_measures.pixel_scale_measures`): noise sd (Immerkaer's mask, median-based) and median gradient per "
          "pixel in units of the 99th percentile, the share of pixels tied with their right neighbour after the "
          "LBP's quantisation, and the share with all 8 neighbours at least as bright (LBP code 8); frames: those with at least "
          f"{PIXEL_BAND_MIN_PIXELS} body pixels in the band. Where the noise "
          "sd is small against the gradient, the LBP reads slopes; where ties are many, flat neighbourhoods.", ""]
    for b, lo, hi in zip(PIXEL_BAND_NAMES, (0.0, *PIXEL_BANDS), (*PIXEL_BANDS, None)):
        L += [f"{b} ({lo:g}-{hi:g} x p99):" if hi else f"{b} (>= {lo:g} x p99):", "",
              "| group | frames | noise sd | gradient | ties | 8 of 8 >= centre |", "|---|---|---|---|---|---|"]
        for name, r in g.items():
            n = (r.get(f"px_{b}_noise") or {}).get("n", 0)
            L.append(f"| {name} | {n} | " + " | ".join(
                _iqr(r.get(f"px_{b}_{k}"), "{:.4f}" if k in ("noise", "gradient") else "{:.2f}")
                for k in ("noise", "gradient", "ties", "flat")) + " |")
        L.append("")
    auc = m.get("edge_coherence_auc") or {}
    alone = [f"{name} {auc[key]:.3f}" for key, name in (("evaluation", "evaluation patients"),
                                                          ("calibration", "calibration frames (where its gradient "
                                                                          "band was looked at)"))
             if auc.get(key) is not None]
    L += ["How straight the body's moderate edges run (`realism_measures.edge_coherence`: the median orientation coherence of "
          f"the structure tensor, over {COHERENCE_SIGMA_PX:g} px, at the body's pixels with a gradient of "
          f"{MODERATE_GRADIENT[0]:g}-{MODERATE_GRADIENT[1]:g} x p99 per pixel; 1 along straight edges, about 0.5 for "
          "a mottle of 1 px grain and 0.25 for white noise; median (IQR) over frames; a diagnostic, not one of the "
          "classifier's statistics)"
          + ("; alone as a score for real against the simulated frames, AUC " + ", ".join(alone) if alone else "")
          + ":", "",
          "| group | frames | moderate-edge coherence |", "|---|---|---|"]
    for name, r in g.items():
        L.append(f"| {name} | {(r.get('edge_coherence') or {}).get('n', 0)} | {_iqr(r.get('edge_coherence'))} |")
    L += ["", "![edges](edges.png)", ""]
    L += [f"Versions: {m['versions']}. Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in m["timings"].items()), ""]
    return "\n".join(L)
