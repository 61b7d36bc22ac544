"""The AHA 16-segment bull's-eye: infarct extent per myocardial segment, the way clinicians read it.

Cerqueira et al., "Standardized myocardial segmentation and nomenclature for tomographic imaging of
the heart", Circulation 105 (2002) 539-542: the basal ring (segments 1-6) outside, the mid ring
(7-12), the apical ring (13-16) inside (segment 17, the apex cap, is not in a short-axis slice).
Segments run counter-clockwise from the anterior one at the top: basal and mid 60 degrees each
(anterior, anteroseptal, inferoseptal, inferior, inferolateral, anterolateral), apical 90 degrees
each (anterior, septal, inferior, lateral).
"""
from __future__ import annotations

import numpy as np

from .files import pyplot, save_figure

#: (ring, first segment, number of segments, start angle of the first, degrees counter-clockwise
#: from 3 o'clock); ring 0 is the outermost
_RINGS = ((0, 1, 6, 60.0), (1, 7, 6, 60.0), (2, 13, 4, 45.0))

def cohort_percent(per_subject):
    """Mean infarct percent per segment over the slices that contain it, and how many slices that is.

    Parameters
    ----------
    per_subject : list of dict
        {segment: percent} per slice (:func:`ofrnn.metrics.segment_percent`).

    Returns
    -------
    (dict, dict)
        {segment: mean percent} and {segment: number of slices}.
    """
    sums, counts = {}, {}
    for d in per_subject:
        for s, v in d.items():
            sums[s] = sums.get(s, 0.0) + v
            counts[s] = counts.get(s, 0) + 1
    return {s: sums[s] / counts[s] for s in sums}, counts


def plot_bullseye(path, percent, *, title=None, counts=None):
    """Draw the 16-segment bull's-eye with each segment's infarct percent (grey: not in the data).

    Parameters
    ----------
    path : path
        PNG to write.
    percent : dict
        {segment: infarct % of the segment}, e.g. from :func:`ofrnn.metrics.segment_percent` (one
        slice fills one ring) or :func:`cohort_percent`.
    title : str, optional
    counts : dict, optional
        {segment: slices} printed under each value (for a cohort).
    """
    import matplotlib
    from matplotlib import cm, colors

    plt = pyplot()
    cmap = matplotlib.colormaps["magma_r"]
    norm = colors.Normalize(0, 100)
    fig = plt.figure(figsize=(4.6, 4.2), dpi=100)
    ax = fig.add_axes((0.02, 0.05, 0.75, 0.82), projection="polar")
    for ring, first, n, start in _RINGS:
        outer, inner = 3 - ring, 2 - ring
        width = 2 * np.pi / n
        for k in range(n):
            seg = first + k
            theta = np.deg2rad(start) + k * width
            v = percent.get(seg)
            face = "0.85" if v is None else cmap(norm(v))
            ax.bar(theta + width / 2, outer - inner, width=width, bottom=inner, color=face, edgecolor="white", lw=1.5)
            label = f"{seg}\n" + ("-" if v is None else f"{v:.0f} %")
            if counts and seg in counts:
                label += f"\n(n={counts[seg]})"
            bright = v is not None and v > 55
            ax.text(theta + width / 2, inner + 0.5, label, ha="center", va="center", fontsize=6.5,
                    color="white" if bright else "black")
    ax.set_ylim(0, 3)
    ax.set_axis_off()
    cax = fig.add_axes((0.82, 0.15, 0.035, 0.6))
    fig.colorbar(cm.ScalarMappable(norm=norm, cmap=cmap), cax=cax, label="predicted infarct, % of segment")
    fig.suptitle(title or "AHA 16-segment bull's-eye", fontsize=9)
    fig.text(0.02, 0.01, "outer: basal (1-6), middle: mid (7-12), inner: apical (13-16); top = anterior, "
                         "left = septum", fontsize=6)
    save_figure(fig, path)
    plt.close(fig)


__all__ = ["cohort_percent", "plot_bullseye"]
