"""The phantom-only LV detector over several training seeds: mean +- sd (issue 12).

Run with ``make localize-seeds`` (``ofrnn experiment localization_seeds``) after ``make localize``
(seed 0) and the ``seed1`` / ``seed2`` profiles of ``experiments/localization.toml``. Reads each
run's ``metrics.json``, checks that all of them scored the same cohort and the same real sets, and
writes ``metrics.json`` and ``report.md``: per set, whole-LV containment (per-frame rule, the
paper's, and the motion-prior extension), median centre error, median IoU and the proposal
classifier's sensitivity and specificity, each as mean +- sd over the seeds with the per-seed
values. The fine-tuned variant (``make localize`` only) is listed apart, clearly labelled.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .._version import __version__
from ..errors import OfrnnError
from ..files import atomic_write_text, write_json

REPO = Path(__file__).resolve().parents[2]

#: (key, column title, reader of one set's metrics); ACDC files carry no spacing, so its centre
#: error is in pixels. A title with '%' marks a percentage (one decimal in the report; the rest two)
MEASURES = (
    ("containment", "whole-LV containment % (configured rule)", lambda m: m["containment_myocardium"]["percent"]),
    ("containment_per_frame", "containment, per-frame ranking % (the paper's)",
     lambda m: m["containment_myocardium_per_frame"]["percent"]),
    ("containment_motion_prior", "containment, motion prior % (extension)",
     lambda m: m["containment_myocardium_motion_prior"]["percent"]),
    ("centre_mm", "centre error median mm", lambda m: m["detection_fast"]["centre_mm"]["median"]),
    ("centre_px", "centre error median px", lambda m: m["detection_fast"]["centre_px"]["median"]),
    ("iou", "IoU median (fast)", lambda m: m["detection_fast"]["iou"]["median"]),
    ("centre_mm_sequence", "centre error median mm, sequence box (the crop's)",
     lambda m: m["detection_sequence"]["centre_mm"]["median"]),
    ("sensitivity", "proposal sensitivity %", lambda m: m["proposals"]["sensitivity"]),
    ("specificity", "proposal specificity %", lambda m: m["proposals"]["specificity"]),
)


def _read(m, get):
    try:
        v = get(m)
    except (KeyError, TypeError):
        return None
    return None if v is None else float(v)


def _stats(values):
    """Mean and sample sd over the values present; ``values`` keeps one entry per seed (None where
    a run lacks the measure)."""
    v = np.array([x for x in values if x is not None], float)
    if not v.size:
        return None
    return dict(mean=float(v.mean()), sd=float(v.std(ddof=1)) if v.size > 1 else 0.0, values=list(values))


def _compared_settings(settings):
    """What must agree across the runs: every setting but the seed, the fine-tuned variant (one run's
    extra) and the bundle a rescoring run reads (`make localize-rescore`)."""
    out = {k: v for k, v in settings.items() if k not in ("seed", "finetune")}
    out["evaluate"] = {k: v for k, v in out.get("evaluate", {}).items() if k != "model"}
    return out


def collect(runs):
    """Per set and measure, mean / sd / per-seed values over the runs' ``metrics.json``.

    Raises
    ------
    OfrnnError
        When a run is missing, or the runs scored different cohorts or real sets.
    """
    metrics = []
    for run in runs:
        path = REPO / run / "metrics.json"
        if not path.is_file():
            raise OfrnnError(f"{path}: missing; run `make localize` and `make localize-seeds` first", field="runs")
        metrics.append(json.loads(path.read_text()))
    digests = {m["cohort_sha256"] for m in metrics}
    if len(digests) > 1:
        raise OfrnnError(f"the runs scored different cohorts ({', '.join(sorted(digests))}); rerun them on one",
                         field="cohort_sha256")
    seeds = [m["seed"] for m in metrics]
    if len(set(seeds)) < len(seeds):
        raise OfrnnError(f"the runs repeat a seed ({seeds})", field="seed")
    same = [_compared_settings(m["settings"]) for m in metrics]
    for run, s in zip(runs, same):
        if s != same[0]:
            raise OfrnnError(f"{run}: other settings than {runs[0]} besides the seed", field="settings")
    sizes = [{k: dict(slices=v["slices"], frames=v["frames"]) for k, v in m["sets"].items()} for m in metrics]
    for run, size in zip(runs, sizes):
        if size != sizes[0]:
            raise OfrnnError(f"{run}: scored other real sets than {runs[0]} ({size})", field="sets")
    table = {name: {key: _stats([_read(m["sets"][name], get) for m in metrics]) for key, _, get in MEASURES}
             for name in sizes[0]}
    finetuned = next((dict(seed=m["seed"], train_patients=m["finetuned"]["train_patients"],
                           sets={k: {key: _read(v, get) for key, _, get in MEASURES}
                                                 for k, v in m["finetuned"]["sets"].items()})
                      for m in metrics if m.get("finetuned")), None)
    from ..localization import sequence_rule

    rule = sequence_rule(metrics[0]["settings"].get("detect", {}))
    return dict(runs=list(runs), seeds=seeds, cohort_sha256=digests.pop(), sets=table,
                sizes=sizes[0], finetuned=finetuned, rule=rule)


def _cell(s, fmt="{:.1f}"):
    if s is None:
        return "-"
    per = " / ".join("-" if v is None else fmt.format(v) for v in s["values"])
    return f"**{fmt.format(s['mean'])} ± {fmt.format(s['sd'])}** ({per})"


def report(r):
    from ..localization import describe_sequence_rule

    lines = ["# Heart localization over training seeds (phantom-only detector)", "",
             f"Seeds {', '.join(map(str, r['seeds']))} (`{'`, `'.join(r['runs'])}`), cohort sha256 `{r['cohort_sha256']}`. "
             "Mean ± sd (sample sd) over seeds, then the value of each seed. The seed draws the detector's weights and "
             "its training batches, and also which simulated subjects are held out and which real frames the proposal "
             "classifier is scored on: the spread is the whole pipeline's. The detector is trained on simulated frames "
             "only; real sets hold only the patients the phantom was not calibrated on. ACDC files carry no pixel "
             "spacing, so its centre error is in pixels.", "",
             "Configured sequence rule (the motion prior and the motion proposals are extensions chosen on "
             f"calibration data by `make localize-rule`): {describe_sequence_rule(r['rule'])}.", "",
             "| set | slices (frames) | " + " | ".join(title for _, title, _ in MEASURES) + " |",
             "|---|---|" + "---|" * len(MEASURES)]
    for name, row in r["sets"].items():
        size = r["sizes"][name]
        lines.append(f"| {name} | {size['slices']} ({size['frames']}) | " + " | ".join(
            _cell(row[key], "{:.1f}" if "%" in title else "{:.2f}") for key, title, _ in MEASURES)
            + " |")
    lines += ["", "Targets (issue 12): whole-LV containment >= 90 % on real Sunnybrook and ACDC evaluation frames "
              "(mean of 3 seeds), median centre error < 5 mm; simulated containment >= 96 %."]
    ft = r["finetuned"]
    if ft:
        lines += ["", f"**Fine-tuned variant** (seed {ft['seed']} only; fine-tuned on real ACDC frames of patients "
                  f"{ft['train_patients'][0]:03d}-{ft['train_patients'][1]:03d}; not phantom-only):", "",
                  "| set | whole-LV containment % | centre error median mm | centre error median px |", "|---|---|---|---|"]
        for name, row in ft["sets"].items():
            f = lambda v, fmt="{:.2f}": "-" if v is None else fmt.format(v)  # noqa: E731
            lines.append(f"| {name} | {f(row['containment'], '{:.1f}')} | {f(row['centre_mm'])} | {f(row['centre_px'])} |")
    return "\n".join(lines) + "\n"


def run(config, profile, out_dir):
    """Collect the runs named in ``config['runs']`` and write ``metrics.json`` and ``report.md``."""
    if profile != "full":
        raise OfrnnError(f"unknown profile {profile!r}; known: full", field="profile")
    r = collect(config["runs"])
    r["versions"] = dict(ofrnn=__version__)
    out_dir = Path(out_dir)
    write_json(out_dir / "metrics.json", r, indent=1)
    atomic_write_text(out_dir / "report.md", report(r))
    print(report(r))
