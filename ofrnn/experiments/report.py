"""``make report``: results/REPORT.md, every result beside the paper's, regenerated from results/ alone.

Reads the ``metrics.json`` (and ``report.md``) that the other experiments left under ``results/``:
phantom physiology, heart localization, Table 3 (optical flow), pixel-level and AHA-segment MI
detection (``make train`` / ``make cv``), Table 1, Table 2, the patch-size study and the figures.
Nothing is retrained or recomputed; a part that has not been run says which command makes it.
The targets of the paper's orderings are checked on the stored numbers and stated as measured.
"""
from __future__ import annotations

import json
import os
import platform
import re
import time
from importlib import metadata
from pathlib import Path

from ..files import atomic_write_text, write_json
from ..fold_report import COMPARISON_NOTE, PAPER_SEGMENT_SPLIT, describe_data, fold_table, format_ci
from . import _cells

#: the paper's headline numbers (Xu et al., MICCAI 2017, Sec. 3)
PAPER_PIXEL = dict(accuracy=94.35, sensitivity=91.23, specificity=98.42)
PAPER_SEGMENTS = dict(apical=99.2, mid=98.1, basal=97.9)
PAPER_LOCALIZATION = dict(accuracy=96.49, sensitivity=94.39, specificity=98.67)
PAPER_TABLE3 = {"hs": ("12.6 ± 9.2", 100), "pyramid-hs": ("7.4 ± 3.4", 100), "deep": ("5.7 ± 2.3", 100),
                "lucas-kanade": ("5.7 ± 4.1", 55), "phase": ("5.5 ± 3.9", 13)}


def _load(path):
    try:
        return json.loads(Path(path).read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _f(v, fmt="{:.1f}"):
    return "n/a" if v is None else fmt.format(v)


def embed(folder, name):
    """A sub-report's report.md, headings demoted and relative links rebased onto ``name/``."""
    path = Path(folder) / "report.md"
    if not path.is_file():
        return []
    text = path.read_text()
    text = re.sub(r"^(#+)", r"##\1", text, flags=re.M)
    text = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda m: f"]({name}/{m.group(1)})", text)
    return ["<details><summary>full report: " + f"<code>results/{name}/report.md</code></summary>", "", text.strip(),
            "", "</details>", ""]


def _cpu():
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment_section():
    versions = {}
    for pkg in ("ofrnn", "tensorflow", "keras", "numpy", "scipy", "scikit-learn", "scikit-image",
                "opencv-contrib-python-headless", "h5py"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return ["## Environment (of this report; each experiment also records its own in metrics.json)", "",
            f"- CPU: {_cpu()}, {os.cpu_count()} cores; Python {platform.python_version()} on {platform.system()}",
            "- " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]


# -- sections ---------------------------------------------------------------------------------------------
def phantom(root):
    m = _load(root / "phantom" / "metrics.json")
    L = ["## Phantom physiology (the simulated cohort)", ""]
    if m is None:
        return L + ["not run yet: make phantom-stats", ""], None
    s = m.get("summary", {})

    def row(key, label, expected):
        v = s.get(key)
        return f"| {label} | {_f(100 * v['mean'] if v else None)} ± {_f(100 * v['sd'] if v else None)} % | {expected} |"

    L += [f"{s.get('slices', '?')} slices, {s.get('slices_with_infarct', '?')} with infarct, levels {s.get('levels')}.",
          "", "| quantity | measured (mean ± sd) | expected |", "|---|---|---|",
          row("ef_no_infarct", "slice EF, no infarct", "55-75 %"), row("ef_post_mi", "slice EF, post-MI", "lower"),
          row("thickening_remote", "wall thickening, remote", "30-80 %"),
          row("thickening_scar", "wall thickening, scar", "~0"),
          row("infarct_share", "infarct share of myocardium", "EMIDEC median 22 %"), ""]
    return L + embed(root / "phantom", "phantom"), m.get("seconds")


def localization(root):
    m = _load(root / "localization" / "metrics.json")
    L = ["## Heart localization layers (LV detection)", ""]
    if m is None:
        return L + ["not run yet: make localize", ""], None
    L += ["| set | paper acc / sens / spec | ours proposal acc | sens | spec | IoU >= 0.5 (fast) | whole-LV containment |",
          "|---|---|---|---|---|---|---|"]
    for name, s in m.get("sets", {}).items():
        p = s.get("proposals") or {}
        det = s.get("detection_fast") or {}
        cont = s.get("containment_myocardium") or {}
        L.append(f"| {name} | {PAPER_LOCALIZATION['accuracy']} / {PAPER_LOCALIZATION['sensitivity']} / "
                 f"{PAPER_LOCALIZATION['specificity']} | {_f(p.get('accuracy'))} | {_f(p.get('sensitivity'))} | "
                 f"{_f(p.get('specificity'))} | {_f(det.get('iou_ge_0_5'))} % | {_f(cont.get('percent'))} % |")
    L += ["", f"Profile `{m.get('profile')}`.", ""]
    return L + embed(root / "localization", "localization"), m.get("training", {}).get("seconds")


def table3(root):
    m = _load(root / "flow" / "metrics.json")
    L = ["## Table 3: optical flow (global motion)", ""]
    if m is None or "simulated" not in m or "skipped" in m.get("simulated", {}):
        return L + ["not run yet: make flow-bench", ""], None, None
    tab = m["simulated"]["table"]
    L += ["| method | paper AAE (deg) | paper density | ours AAE (deg) | ours density | ms / pair |",
          "|---|---|---|---|---|---|"]
    for meth, r in tab.items():
        paper = PAPER_TABLE3.get(meth, ("-", None))
        L.append(f"| {meth} | {paper[0]} | {'-' if paper[1] is None else f'{paper[1]} %'} | "
                 f"{_f(r.get('aae_mean'), '{:.2f}')} ± {_f(r.get('aae_sd'), '{:.2f}')} | "
                 f"{_f(100 * r['density'] if r.get('density') is not None else None, '{:.0f}')} % | "
                 f"{_f(r.get('ms_per_pair_median'))} |")
    dense = {k: r["aae_mean"] for k, r in tab.items() if r.get("aae_mean") is not None
             and (r.get("density") or 0) >= 0.99 and k in ("deep", "hs", "pyramid-hs")}
    best = min(dense, key=dense.get) if dense else None
    L += [""] + embed(root / "flow", "flow")
    return L, m.get("seconds"), best


def _pct(v, fmt="{:.2f}"):
    return _f(None if v is None else 100 * v, fmt)


_PIXEL_KEYS = ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc")
_HEAD = ["| metric | paper | ours, all ROI pixels | ours, myocardium pixels |", "|---|---|---|---|"]
_SEG_HEAD = ["| level | paper segment accuracy | ours |", "|---|---|---|"]


def train_results(root):
    """(folder name, result) of ``make train`` folds (``fold<k>``) and ``holdout``; other folders under
    results/train (development variants, predictions) are not the paper's evaluation and are left out."""
    out = []
    for f in sorted((root / "train").glob("*/metrics.json")):
        r = _load(f)
        if (re.fullmatch(r"fold\d+|holdout", f.parent.name) and r
                and {"split", "config", "metrics", "timings"} <= set(r)):
            out.append((f.parent.name, r))
    return out


def pixel_level(root):
    L = ["## MI area detection: pixel level and AHA segments (`make train` / `make cv`)", ""]
    cv = _load(root / "train" / "cv" / "metrics.json")
    named = [(n, r) for n, r in train_results(root) if n != "holdout"]
    holdout = next((r for n, r in train_results(root) if n == "holdout"), None)
    folds = [r for _, r in named]
    if cv is None and not folds and holdout is None:
        return L + ["not run yet: make train (one fold) or make cv (ten folds)", ""], None
    if holdout is not None:
        # the paper's segment-level evaluation uses 2/3 of the data for training, 1/3 for testing
        seg = holdout["metrics"]["segments"]["accuracy"]
        L += [f"Segment level, paper's split ({holdout['split']['scheme']}; profile `{holdout['config']['profile']}`):",
              ""] + _SEG_HEAD + [f"| {lv} | {PAPER_SEGMENTS.get(lv, '-')} | {_pct(seg.get(lv), '{:.1f}')} |"
                                 for lv in ("apical", "mid", "basal", "all")] + [""]
    if cv is None and not folds:
        return L, holdout["timings"].get("total")
    data = (cv or {}).get("data") or next((r.get("data") for r in folds if r.get("data")), None)
    if data:
        L += [f"Data: {describe_data(data)}.", ""]
    seg_head = [f"| level | paper ({PAPER_SEGMENT_SPLIT}: another split) | ours |", "|---|---|---|"]
    if cv is None and len(folds) == 1:
        # one fold has no spread over folds: its own subject-bootstrap intervals instead
        (name, r), = named
        m = r["metrics"]

        def one(group, k):
            return _pct(m[group].get(k)) + format_ci(m[group].get("ci95", {}).get(k))

        seg = m["segments"]
        L += [f"**One fold only** ({name}, {m.get('n_subjects', '?')} test subjects, profile `{r['config']['profile']}`): "
              "95 % intervals are a bootstrap over its test subjects (Wilson for segments); `make cv` gives all ten "
              "folds.", ""] + _HEAD
        L += [f"| {k} | {PAPER_PIXEL.get(k, '-')} | {one('roi', k)} | {one('myocardium', k)} |" for k in _PIXEL_KEYS]
        L += [""] + seg_head
        for lv in ("apical", "mid", "basal", "all"):
            L.append(f"| {lv} | {PAPER_SEGMENTS.get(lv, '-')} | {_pct(seg['accuracy'].get(lv), '{:.1f}')}"
                     f"{format_ci(seg.get('accuracy_ci95', {}).get(lv))} |")
        L += ["", COMPARISON_NOTE, "", f"Full report: `results/train/{name}/report.md`.", ""]
        return L, r["timings"].get("total")
    if cv is not None:
        t, what = cv["metrics"], f"Mean ± sd over {cv['n_folds']} folds (`make cv`), profile `{cv['profile']}`."
    else:
        profiles = sorted({r["config"]["profile"] for r in folds})
        t = fold_table(folds)
        what = (f"Mean ± sd over the {len(folds)} stored result(s) {', '.join(n for n, _ in named)} "
                f"(profile {', '.join(profiles)}; `make cv` runs all ten folds).")

    def ms(key):
        s = t.get(key)
        return f"{100 * s['mean']:.2f} ± {100 * s['sd']:.2f}" if s and s["mean"] is not None else "n/a"

    L += [what, ""] + _HEAD
    L += [f"| {k} | {PAPER_PIXEL.get(k, '-')} | {ms('roi.' + k)} | {ms('myocardium.' + k)} |" for k in _PIXEL_KEYS]
    # each fold calls a segment from a predicted share chosen on its validation subjects; the call at the
    # truth's own quarter stands beside it (folds evaluated before the choice existed lack it: n/a)
    L += ["", f"| level | paper ({PAPER_SEGMENT_SPLIT}: another split) | ours, cut chosen on validation subjects "
              "| ours, called at the truth's quarter |", "|---|---|---|---|"]
    L += [f"| {lv} | {PAPER_SEGMENTS.get(lv, '-')} | {ms('segments.' + lv)} | {ms('segments_at_rule.' + lv)} |"
          for lv in ("apical", "mid", "basal", "all")] + [""]
    pooled = (cv or {}).get("pooled", {}).get("calls")
    if pooled:
        c = pooled
        L += [f"Slice calls pooled over folds ({c['rule']}): {c['counts']['detected']} detected, "
              f"{c['counts']['misplaced']} misplaced, {c['counts']['missed']} missed, {c['counts']['false positive']} "
              f"false positive, {c['counts']['true negative']} true negative; slice-level sensitivity "
              f"{_pct(c['sensitivity'], '{:.1f}')}{format_ci(c.get('sensitivity_ci95'))}, specificity "
              f"{_pct(c['specificity'], '{:.1f}')}{format_ci(c.get('specificity_ci95'))} (Wilson 95 %).", ""]
    seconds = sum(r["timings"].get("total", 0.0) for r in folds) or None
    L += [COMPARISON_NOTE, "", "Per-fold reports, with intervals, per-subject tables and figures: "
          "`results/train/fold<k>/report.md`.", ""]
    return L, seconds


def ceiling(root):
    """The yardstick's rows (``make ceiling``) beside OF-RNN's stored folds, myocardium pixels; nothing when
    results/ceiling has not been run."""
    m = _load(root / "ceiling" / "metrics.json")
    if not m or not m.get("rows"):
        return [], None
    from .ceiling import _ms

    folds = {int(n[4:]): r for n, r in train_results(root) if n.startswith("fold")}

    def ms(values):
        return _ms(_cells.mean_sd(values))

    def row(name, flow, beyond, per_fold, segs):
        same = [f["dice"] for k, f in per_fold.items() if k in folds]
        return (f"| {name} | {flow} | {beyond} | {len(per_fold)} | "
                + " | ".join(ms([f[k] for f in per_fold.values()]) for k in ("dice", "sensitivity", "specificity",
                                                                             "roc_auc"))
                + f" | {ms(segs)} | {ms(same)} |")

    L = ["## Yardstick: gradient boosting on hand-made motion features (`make ceiling`)", "",
         "Myocardium pixels of the test folds, mean ± sd over folds in %; the last column is the mean over the folds "
         f"OF-RNN has stored ({sorted(folds) or 'none'}). Full report: `results/ceiling/report.md`.", "",
         "| model | flow | inputs beyond OF-RNN's | folds | Dice | sensitivity | specificity | ROC AUC | "
         "AHA segment accuracy | Dice on OF-RNN's folds |", "|---|---|---|---|---|---|---|---|---|---|"]
    if folds:
        flow = ", ".join(sorted({str(r["config"].get("flow")) for r in folds.values()}))
        L.append(row(f"OF-RNN (profile {', '.join(sorted({str(r['config'].get('profile')) for r in folds.values()}))})",
                     flow, "-", {k: r["metrics"]["myocardium"] for k, r in folds.items()},
                     [r["metrics"]["segments"]["accuracy"].get("all") for r in folds.values()]))
    for r in m["rows"]:
        per = {f["fold"]: f["metrics"]["myocardium"] for f in r["per_fold"]}
        L.append(row(r["label"], r["flow"] or "none", r["beyond"], per,
                     [f["metrics"]["segments"].get("all") for f in r["per_fold"]]))
    return L + [""], m.get("seconds")


def ablation(root, name, make):
    m = _load(root / name / "metrics.json")
    if m is None:
        return [f"not run yet: {make}", ""], None, None
    body = (root / name / "report.md").read_text() if (root / name / "report.md").is_file() else ""
    body = re.sub(r"^(#+)", r"##\1", body, flags=re.M)
    body = re.sub(r"\]\((?!https?:|/|#)([^)]+)\)", lambda mm: f"]({name}/{mm.group(1)})", body)
    return [body.strip(), ""], m.get("seconds"), m


def _acc(m, cell, metric="accuracy"):
    try:
        return m["cells"][cell]["myocardium"][metric]["mean"]
    except (KeyError, TypeError):
        return None


def targets(t1, t2, ps, best_flow):
    """The paper's orderings, checked on the stored numbers (myocardium pixels).

    Accuracy is the paper's measure but depends on the operating point (our threshold is the
    softmax's argmax after sampling that over-represents infarct); the ROC AUC rows give the
    threshold-free ordering beside it.
    """
    L = ["## Targets: the paper's orderings on our cohort", "", "| target | measured | holds? |", "|---|---|---|"]

    def line(target, measured, ok):
        L.append(f"| {target} | {measured} | {'n/a (not run)' if ok is None else ('yes' if ok else '**no**')} |")

    for metric, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")):
        target = f"Table 1: both > local > global ({label})"
        v = {c: _acc(t1, c, metric) for c in ("both", "local", "global")} if t1 else {}
        if v and None not in v.values():
            line(target, ", ".join(f"{c} {100 * x:.1f} %" for c, x in v.items()), v["both"] > v["local"] > v["global"])
        else:
            line(target, "-", None)
    for metric, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")):
        target = f"Table 2: LSTM-RNN best ({label})"
        v = {c: _acc(t2, c, metric) for c in (t2 or {}).get("cells", {})}
        v = {c: x for c, x in v.items() if x is not None}
        if "lstm" in v and len(v) > 1:
            line(target, ", ".join(f"{c} {100 * x:.1f} %" for c, x in v.items()), max(v, key=v.get) == "lstm")
        else:
            line(target, "-", None)
    line("Table 3: deep OF lowest dense AAE", f"lowest of deep/HS/pyramid HS: {best_flow}" if best_flow else "-",
         None if best_flow is None else best_flow == "deep")
    for metric, label in (("accuracy", "accuracy"), ("roc_auc", "ROC AUC")):
        target = f"Fig. 3(e): N = 11 near the sweet spot ({label})"
        pn = {ps["patch"][c]: s["myocardium"][metric]["mean"] for c, s in ps["cells"].items()
              if s["myocardium"][metric]["mean"] is not None} if ps and ps.get("cells") else {}
        if pn:
            top = max(pn.values())
            # "sweet spot": within one percentage point of the best; the smallest such N costs least
            near = sorted(n for n, v in pn.items() if v >= top - 0.01)
            line(target, ", ".join(f"N={n}: {100 * v:.1f} %" for n, v in sorted(pn.items()))
                 + f"; smallest N within 1 point of the best: {near[0]}", 11 in pn and pn[11] >= top - 0.01)
        else:
            line(target, "-", None)
    return L + [""]


def provenance(root):
    """Profile, seed and recorded environment of every stored result."""
    rows = []
    ph = _load(root / "phantom" / "metrics.json")
    if ph:
        cp = ph.get("cohort_params", {})
        rows.append(("cohort (make data)", "-", cp.get("seed"), f"{cp.get('n_subjects')} subjects, "
                     f"{cp.get('acquisition', {}).get('matrix')} px, {cp.get('acquisition', {}).get('frames')} frames"))
    lo = _load(root / "localization" / "metrics.json")
    if lo:
        rows.append(("make localize", lo.get("profile"), lo.get("seed"), lo.get("versions", {}).get("tensorflow")))
    fl = _load(root / "flow" / "metrics.json")
    if fl:
        rows.append(("make flow-bench", fl.get("profile"), "-", fl.get("versions")))
    for name, r in train_results(root):
        rows.append((f"make train ({name})", r["config"].get("profile"), r["config"].get("seed"),
                     r.get("versions", {}).get("tensorflow")))
    for name in ("ablation_features", "ablation_classifier", "ablation_patchsize"):
        m = _load(root / name / "metrics.json")
        if m and m.get("cells"):
            env = m.get("environment", {})
            first = next(iter(m["cells"].values()))
            rows.append((f"make {name.replace('_', '-')}", env.get("profile"), first.get("seed"),
                         f"folds {first.get('folds')}; TF {env.get('tensorflow')}, {env.get('cpu_count')} cores, "
                         f"{env.get('gpus')} GPUs, {env.get('strategy')}"))
    if not rows:
        return []
    return (["## Profiles, seeds and recorded environments", "", "| result | profile | seed | recorded |",
             "|---|---|---|---|"] + [f"| {a} | {b} | {c} | {d} |" for a, b, c, d in rows] + [""])


def run(config, profile, out_dir):
    cfg = _cells.resolve_plain(config, profile)
    root = _cells._path(cfg["results"])
    output = _cells._path(cfg["output"])
    t0 = time.perf_counter()
    times = {}
    L = ["# OF-RNN reproduction report", "",
         "Xu et al., *Direct detection of pixel-level myocardial infarction areas via a deep-learning algorithm*, "
         "MICCAI 2017, reproduced on a simulated cohort (`make data`: 114 cine bSSFP slices with exact ground "
         "truth) and, where available, public real data. Every number below was read from `results/`; "
         "`make report` regenerates this file without training anything. Paper numbers are shown beside ours.",
         ""]
    L += environment_section()
    sec, times["phantom-stats"] = phantom(root)
    L += sec
    sec, times["localize"] = localization(root)
    L += sec
    sec, times["flow-bench"], best_flow = table3(root)
    L += sec
    sec, times["train"] = pixel_level(root)
    L += sec
    sec, seconds = ceiling(root)
    L += sec
    if sec:
        times["ceiling"] = seconds
    L += ["## Table 1: local and global motion features", ""]
    sec, times["ablation-features"], t1 = ablation(root, "ablation_features", "make ablation-features")
    L += sec
    L += ["## Table 2: LSTM-RNN versus other learners", ""]
    sec, times["ablation-classifier"], t2 = ablation(root, "ablation_classifier", "make ablation-classifier")
    L += sec
    L += ["## Fig. 3(e): patch size", ""]
    sec, times["ablation-patchsize"], ps = ablation(root, "ablation_patchsize", "make ablation-patchsize")
    L += sec
    L += targets(t1, t2, ps, best_flow)
    figs = _load(root / "figures" / "metrics.json")
    L += ["## Figures", ""]
    if figs is None:
        L += ["not run yet: make figures", ""]
    else:
        L += [f"- [{n}](figures/{n})" for n in figs["made"]] + [f"- {n}: {w}" for n, w in figs["missing"].items()] + [""]
    L += provenance(root)
    L += ["## Run times (seconds, as recorded by each experiment)", "", "| step | seconds |", "|---|---|"]
    folders = {"phantom-stats": "phantom", "localize": "localization", "flow-bench": "flow", "train": "train",
               "ablation-features": "ablation_features", "ablation-classifier": "ablation_classifier",
               "ablation-patchsize": "ablation_patchsize", "ceiling": "ceiling"}
    present = {k: any((root / folders[k]).glob("**/metrics.json")) for k in times}
    L += [f"| make {k} | {'not run' if not present[k] else ('not recorded' if v is None else f'{v:.0f}')} |"
          for k, v in times.items()] + [""]
    L += ["## Where we differ from the paper, and why", ""] + [f"- {n}" for n in cfg.get("notes", [])] + [""]
    output.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(output, "\n".join(L) + "\n")
    summary = dict(profile=profile, output=str(output), seconds=time.perf_counter() - t0, run_times=times,
                   present=present)
    write_json(Path(out_dir) / "metrics.json", summary)
    print(f"wrote {output}")
    return 0
