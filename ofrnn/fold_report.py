"""What one trained fold shows a reader: report.md, ROC/PR curves, training curves, Fig. 2 overlays;
and the mean +- sd over folds.

:func:`ofrnn.train.run_fold` trains and evaluates; this module turns its result into figures and
Markdown. Every report says what it is (data, split, profile, ROI source), sets the paper's numbers
(:data:`PAPER`, Sec. 3 "MI area detection") beside ours only with a note on what is comparable, and
gives each headline number a 95 % interval (:mod:`ofrnn.metrics`).
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from . import metrics as M
from .files import atomic_write_text, content_digest, pyplot, save_figure, write_json
from .predict import overlay_png
from .store import open_cohort

#: the paper's results (Sec. 3, "MI area detection"), shown beside ours in every report. The pixel
#: numbers come from 10-fold CV over 114 patients, the segment accuracies from a 2/3 - 1/3 holdout.
PAPER = dict(accuracy=0.9435, sensitivity=0.9123, specificity=0.9842,
             segment_accuracy=dict(apical=0.992, mid=0.981, basal=0.979))

#: the paper's pixel-level evaluation scheme, and the one its segment accuracies come from
PAPER_PIXEL_SPLIT = "10-fold CV over 114 patients"
PAPER_SEGMENT_SPLIT = "holdout, 2/3 train - 1/3 test"

#: the training stages, their Keras CSV logs and what they are
STAGES = (("local", "train_log_local.csv", "LSTM-RNN on P_l (Eq. 1)"),
          ("head", "train_log_head.csv", "discriminate layers on frozen P(p)"),
          ("finetune", "train_log.csv", "end-to-end fine-tuning"))


# -- figures ----------------------------------------------------------------------------------------
def plot_curves(path, subjects, probs, threshold):
    """ROC and PR curves of the test subjects (all ROI pixels and myocardium), cf. paper Fig. 3(a, b).

    Each curve marks our operating point (``threshold``); the ROC also marks the paper's (sensitivity
    91.23 %, specificity 98.42 %). The paper gives no precision, so the PR panel has no paper point.

    Parameters
    ----------
    path : path
        PNG to write.
    subjects : list
        Prepared subjects with ROI-space ``infarct`` and ``myocardium`` (64, 64).
    probs : list of arrays (64, 64)
        Their infarct probabilities.
    threshold : float
        The decision threshold of the fold.
    """
    plt = pyplot()
    truth = np.stack([r.infarct for r in subjects]).astype(bool)
    myo = np.stack([r.myocardium for r in subjects]).astype(bool)
    prob = np.stack(probs)
    fig, (a, b) = plt.subplots(1, 2, figsize=(10, 4.5), dpi=100)
    for colour, label, sel in (("C0", "all ROI pixels", np.ones_like(truth)), ("C1", "myocardium", myo)):
        if not truth[sel].any():
            continue
        c = M.curves(truth[sel], prob[sel])
        m = M.pixel_metrics(truth[sel], prob[sel] >= threshold, prob[sel])
        a.plot(c["fpr"], c["tpr"], colour, label=f"{label} (AUC {m['roc_auc']:.3f})")
        b.plot(c["recall"], c["precision"], colour, label=f"{label} (AP {m['pr_auc']:.3f})")
        a.plot(1 - m["specificity"], m["sensitivity"], "o", color=colour, mec="k",
               label=f"ours at threshold {threshold:.2f}")
        b.plot(m["sensitivity"], m["precision"], "o", color=colour, mec="k")
    a.plot(1 - PAPER["specificity"], PAPER["sensitivity"], "k*", ms=11, label="paper (Sec. 3; other data)")
    a.plot([0, 1], [0, 1], "k:", lw=0.8)
    a.set(xlabel="1 - specificity", ylabel="sensitivity", title="ROC (cf. paper Fig. 3a)")
    b.set(xlabel="recall (sensitivity)", ylabel="precision", title="PR (cf. paper Fig. 3b); dots: our threshold")
    a.legend(loc="lower right", fontsize=7)
    b.legend(loc="lower left", fontsize=7)
    fig.suptitle(f"{len(subjects)} test subjects, pixels pooled", fontsize=9)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def read_training_log(folder):
    """Per stage: the epochs' loss and val_loss from the Keras CSV logs, and the epoch kept.

    Early stopping restores the weights of the epoch with the lowest validation loss (Keras
    ``EarlyStopping(restore_best_weights=True)``: the first minimum), so that epoch is the one kept.

    Returns
    -------
    dict
        {stage: dict(what, epochs (1-based list), loss, val_loss, kept (1-based), kept_val_loss)};
        stages without a log are left out.
    """
    out = {}
    for stage, name, what in STAGES:
        path = Path(folder) / name
        if not path.is_file():
            continue
        with open(path, newline="") as f:
            rows = [r for r in csv.DictReader(f) if r.get("val_loss")]
        if not rows:
            continue
        val = [float(r["val_loss"]) for r in rows]
        k = int(np.argmin(val))
        out[stage] = dict(what=what, epochs=list(range(1, len(rows) + 1)), loss=[float(r["loss"]) for r in rows],
                          val_loss=val, kept=k + 1, kept_val_loss=val[k])
    return out


def plot_training(path, log):
    """Training and validation loss per epoch of each stage; the kept epoch is circled.

    Parameters
    ----------
    path : path
        PNG to write.
    log : dict
        :func:`read_training_log`.
    """
    plt = pyplot()
    fig, axes = plt.subplots(1, max(1, len(log)), figsize=(4.5 * max(1, len(log)), 3.5), dpi=100, squeeze=False)
    for ax, (stage, s) in zip(axes[0], log.items()):
        ax.plot(s["epochs"], s["loss"], "C0-o", ms=3, label="training loss")
        ax.plot(s["epochs"], s["val_loss"], "C1-o", ms=3, label="validation loss")
        ax.plot(s["kept"], s["kept_val_loss"], "o", mfc="none", mec="k", ms=11, label=f"kept: epoch {s['kept']}")
        ax.set(xlabel="epoch", ylabel="cross-entropy", title=f"{stage}: {s['what']}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    save_figure(fig, path)
    plt.close(fig)


def select_overlays(per_subject):
    """Which test slices get a Fig. 2 overlay, and why (a stated rule, not the best cases).

    The rule: the best, the median and the worst myocardium Dice among slices with a traced infarct;
    every missed or misplaced infarct; every false-positive slice; and one infarct-free slice called
    correctly, when there is one.

    Parameters
    ----------
    per_subject : list of dict
        Rows of :func:`ofrnn.metrics.evaluate_rois` (``dice_myocardium``, ``has_infarct``, ``outcome``).

    Returns
    -------
    list of (int, str)
        Row index and reason, in row order, each slice once.
    """
    why = {}
    inf = sorted((i for i, p in enumerate(per_subject) if p["has_infarct"]),
                 key=lambda i: (per_subject[i]["dice_myocardium"], i))
    if inf:
        why.setdefault(inf[-1], "best Dice")
        why.setdefault(inf[len(inf) // 2], "median Dice")
        why.setdefault(inf[0], "worst Dice")
    for i, p in enumerate(per_subject):
        if p["outcome"] in ("missed", "misplaced", "false positive"):
            why.setdefault(i, p["outcome"])
    negatives = [i for i, p in enumerate(per_subject) if p["outcome"] == "true negative"]
    if negatives:
        why.setdefault(negatives[0], "infarct-free, called correctly")
    return sorted(why.items())


def overlays(folder, subjects, probs, threshold, per_subject):
    """Fig. 2-style PNGs of the slices :func:`select_overlays` picks, into ``folder``.

    Parameters
    ----------
    folder : path
        ``overlays/`` of the fold; PNGs of an earlier selection are removed first.
    subjects : list of RoiSubject
        The test subjects (ROI frames and labels).
    probs : list of arrays (64, 64)
        Their infarct probabilities.
    threshold : float
    per_subject : list of dict
        :func:`ofrnn.metrics.evaluate_rois` rows of the same subjects, in the same order.

    Returns
    -------
    list of (str, str)
        (subject id, reason) of each overlay drawn.
    """
    folder = Path(folder)
    folder.mkdir(exist_ok=True)
    for old in folder.glob("*.png"):  # a figure of an earlier selection would pass for this one's
        old.unlink()
    drawn = []
    for i, reason in select_overlays(per_subject):
        r, p = subjects[i], per_subject[i]
        dice = "n/a (no infarct)" if not p["has_infarct"] else f"{p['dice_myocardium']:.2f}"
        overlay_png(folder / f"{r.id}.png", r.roi[0], probs[i] >= threshold, truth=r.infarct,
                    myocardium=r.myocardium, frame="ROI frame 0 (end-diastole)",
                    title=f"{r.id} ({r.level}), {reason}: myocardium Dice {dice}, {p['outcome']}")
        drawn.append((r.id, reason))
    return drawn


# -- report.md --------------------------------------------------------------------------------------
def _pct(v, digits=1):
    return "n/a" if v is None or (isinstance(v, float) and np.isnan(v)) else f"{100 * v:.{digits}f} %"


def format_ci(ci, digits=1, *, percent=True, sign=False):
    """' [low, high]' of an interval (empty when undefined): in percent of a ratio by default, else
    as the numbers are (``sign``: with an explicit + for differences)."""
    if ci is None or any(v is None or np.isnan(v) for v in ci):
        return ""
    lo, hi = (100 * v for v in ci) if percent else ci
    f = f"{{:{'+' if sign else ''}.{digits}f}}"
    return f" [{f.format(lo)}, {f.format(hi)}]"


def describe_data(data):
    """One sentence on the data a fold ran on.

    Parameters
    ----------
    data : dict
        :func:`cohort_description` (an empty dict for results written before it).

    Returns
    -------
    str
        Markdown, without a final full stop.
    """
    if data.get("source") == "simulated":
        field = data.get("acquisition", {}).get("field_t")
        field = "1.5 or 3 T per subject" if field is None else f"{field} T"
        text = (f"**simulated** short-axis bSSFP cines (`ofrnn simulate`, seed {data.get('seed')}, "
                f"{data.get('n_subjects')} subjects, {field}), not the paper's 114 patients; "
                "infarcts are drawn by the simulator, so the ground truth is exact")
    else:
        text = (f"**{data.get('source', 'unknown')}** cines ({data.get('n_subjects')} subjects), "
                "ingested with `ofrnn ingest`; ground truth as supplied with them")
    extra = data.get("extra_training")
    if extra:
        seed = f", seed {extra.get('seed')}" if extra.get("source") == "simulated" else ""
        text += (f". **Beyond the paper**: every fold's training subjects also include all {extra.get('n_subjects')} "
                 f"subjects of another {extra.get('source', 'unknown')} cohort ({extra.get('sha256')}{seed}), "
                 "never validated or tested on")
    return text


def _split_sentence(result):
    sp = result["split"]
    return (f"{sp['scheme']}: {len(sp['train'])} training, {len(sp['val'])} validation (from the training folds: "
            f"early stopping, and the threshold when a rule chooses it) and **{len(sp['test'])} test subjects**, "
            "one slice each.")


def _profile_sentence(cfg, reductions):
    if reductions is None:
        return f"`{cfg['profile']}` (its settings file has no `paper` profile to compare it with)."
    if not reductions:
        return f"`{cfg['profile']}`: the paper's network sizes and training budget."
    items = "; ".join(f"{k} {v[0]} (`paper`: {v[1]})" for k, v in reductions.items())
    return f"`{cfg['profile']}`, scaled down from the `paper` profile to fit a 2-core CPU. It differs in: {items}."


def comparison_note(cfg=None, *, one_fold=True):
    """The paragraph set wherever the paper's numbers appear: what is and is not comparable.

    ``cfg``: the training settings (for the network's sizes; the paper's when None); ``one_fold``:
    the text speaks of one fold's test subjects and their intervals.
    """
    cfg = cfg or dict(lstm_layers=4, patch=11, frames=25, global_patch=3)
    sample = ("One fold's test subjects are a sample of about a dozen slices, hence the wide intervals. " if one_fold
              else "A mean over folds hides how few slices each fold holds; see the per-fold intervals. ")
    patches = f"{cfg['patch']}x{cfg['patch']}x{cfg['frames']} patches"
    if cfg.get("local_learner", "lstm") == "cnn":  # (runs written before the setting existed used the LSTM)
        local, follow = (f"**beyond the paper**, Table 2's CNN in place of the LSTM-RNN (`local_learner = \"cnn\"`) "
                         f"over {patches}", "otherwise follow")
    else:
        local, follow = f"{cfg['lstm_layers']}-layer LSTM over {patches}", "follow"
    if cfg.get("wall_geometry", "none") == "learned":
        local, follow = (local + ", which also reads, **beyond the paper**, each pixel's transmural depth and wall "
                         "thickness from a learned myocardium segmenter (`wall_geometry = \"learned\"`)", "otherwise follow")
    return (
        f"**What is comparable with the paper.** The network ({local}, {cfg['global_patch']}x{cfg['global_patch']} "
        f"trajectory patches, 3-layer SAE and softmax) and the metrics' definitions {follow} the paper. The data do not: "
        "the paper used 114 patients' cines with LGE-traced infarcts, which are private; ours are simulated (or your "
        "own). The scale may not: a reduced profile has fewer units and epochs. The paper's pixel numbers are a "
        "10-fold CV mean. " + sample + "The paper's accuracy, sensitivity and specificity imply about 57 % infarct "
        "pixels among those it scored (94.35 = 91.23 p + 98.42 (1 - p)); over all 64x64 ROI pixels infarct is a few "
        "percent here, so our all-ROI accuracy mostly measures specificity, and the myocardium-only column is the "
        "clinically meaningful one. Read the paper's numbers as a reference point, not as a target this run should "
        "match.")


#: what comparison_note says with the paper's own sizes (for make report)
COMPARISON_NOTE = comparison_note(one_fold=False)


def glossary(cfg):
    """The glossary paragraph of a fold report, with this run's sizes."""
    return (
        f"ROI: the 64x64 crop around the LV box (margin {100 * cfg['roi_margin']:.0f} %) that the network sees; "
        "*ROI source* `gt` = the annotated LV box, `detector` = the heart localization layers. ED/ES: end-diastole "
        f"(frame 0, the ECG trigger) / end-systole. P_l: a pixel's {cfg['patch']}x{cfg['patch']} intensity patch "
        f"over the {cfg['frames']} frames (local motion, the LSTM's input). P_g: its "
        f"{cfg['global_patch']}x{cfg['global_patch']} optical-flow trajectory features (global motion). Interval: "
        "95 %, a bootstrap over test subjects (pixels of one slice are correlated) or Wilson's for counts of "
        "segments and slices.")


def _timings_table(timings):
    rows = [("prepare ROI sequences and flows (cache hits are fast)", "prepare", "s"),
            ("stage 1: LSTM-RNN", "local", "s"), ("stage 2: auto-encoder pre-training", "autoencoders", "s"),
            ("stage 3 (optional): discriminate layers on frozen P(p)", "head", "s"),
            ("stage 4: fine-tuning", "finetune", "s"), ("fine-tuning throughput", "finetune_pixels_per_s", "pixels/s"),
            ("the fold's heart localization layers (training)", "localizer", "s"),
            ("inference per test subject (network only)", "network_per_subject", "s"),
            ("whole fold", "total", "s")]
    lines = ["| step | value | unit |", "|---|---|---|"]
    for label, key, unit in rows:
        if key in timings:
            v = timings[key]
            lines.append(f"| {label} | {v:.0f} | {unit} |" if v >= 10 else f"| {label} | {v:.2f} | {unit} |")
    return lines


def _versions_table(versions):
    lines = ["| package | version |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in versions.items() if not isinstance(v, dict)]
    flow = versions.get("flow_params")
    if flow:
        lines += ["", "Deep optical flow settings: " + ", ".join(f"{k} = {v}" for k, v in flow.items()) + "."]
    return lines


def write_report(path, result, *, overlays_drawn=(), training=None):
    """``report.md`` of one fold: what it is, the paper beside ours with 95 % intervals, per-slice
    outcomes, AHA segments, training, figures, timings and versions.

    Parameters
    ----------
    path : path
        The Markdown file to write.
    result : dict
        :func:`ofrnn.train.run_fold`'s result (``metrics`` from :func:`ofrnn.metrics.evaluate_rois`).
    overlays_drawn : list of (id, reason)
        From :func:`overlays`.
    training : dict, optional
        From :func:`read_training_log`.
    """
    m, cfg = result["metrics"], result["config"]
    L = (_scope_section(result) + _pixel_section(m, len(result["split"]["test"])) + _calls_section(m)
         + _end_to_end_section(m, result.get("metrics_detected_roi"), cfg)
         + _segment_section(m["segments"], holdout=str(result["split"].get("fold")) == "holdout",
                            at_rule=m.get("segments_at_rule"))
         + _training_section(training) + _figures_section(result, overlays_drawn)
         + ["", f"## Timings ({result['versions'].get('machine', 'machine not recorded')}) and versions", ""]
         + _timings_table(result["timings"]) + [""] + _versions_table(result["versions"])
         + ["", "## Glossary", "", glossary(cfg), ""])
    atomic_write_text(path, "\n".join(L))


def _scope_section(result):
    """Title, "What this is" and the comparison note."""
    m, cfg = result["metrics"], result["config"]
    fold = result["split"].get("fold", cfg.get("fold"))
    title = ("OF-RNN, holdout split (2/3 train - 1/3 test)" if str(fold) == "holdout" else
             f"OF-RNN, test fold {fold} of {cfg['n_folds']}-fold cross-validation")
    roi_src = ("annotated LV boxes (`gt`): the heart localization layers are bypassed" if cfg["roi"] == "gt"
               else "boxes from the heart localization layers (`detector`), the paper's end-to-end setting")
    flow_src = ("estimated by the deep optical flow, as in the paper" if cfg["flow"] == "estimated"
                else "the simulator's exact flow (an ablation: no estimation error)")
    return [f"# {title} ({len(result['split']['test'])} test subjects)", "", "## What this is", "",
            f"- **Data**: {describe_data(result.get('data', {}))}.",
            f"- **Split**: {_split_sentence(result)}",
            f"- **Profile**: {_profile_sentence(cfg, result.get('profile_reductions'))}",
            f"- **ROI source**: {roi_src}. **Global motion**: {flow_src}.",
            f"- **Decision threshold** {m['threshold']:.3f}, {_threshold_origin(cfg['threshold'])}", "",
            comparison_note(cfg)]


def _threshold_origin(rule):
    """How the decision threshold came about: a named rule (a string) or a number in the settings."""
    if isinstance(rule, str):
        return f"chosen by `{rule}` on the validation subjects, never on the test fold."
    return "fixed in the settings" + (" (0.5: the softmax's own decision)." if float(rule) == 0.5 else ".")


def _pixel_section(m, n_test):
    """The paper's pixel numbers beside ours (all ROI pixels, myocardium), Dice and size error."""
    L = ["", f"## Pixels (95 % intervals: bootstrap over the {n_test} test subjects)", "",
         f"| metric | paper ({PAPER_PIXEL_SPLIT}) | ours, all ROI pixels | ours, myocardium only |", "|---|---|---|---|"]
    for k in M.INTERVAL_METRICS:
        paper = _pct(PAPER[k], 2) if k in PAPER else "-"
        L.append(f"| {k} | {paper} | {_pct(m['roi'][k])}{format_ci(m['roi'].get('ci95', {}).get(k))} | "
                 f"{_pct(m['myocardium'][k])}{format_ci(m['myocardium'].get('ci95', {}).get(k))} |")
    dice, err = m["dice_myocardium_mean"], m.get("size_error_ci95") or {}
    return L + ["", f"Mean infarct Dice in the myocardium over test slices with an infarct: "
                    f"{'n/a' if dice is None else format(dice, '.3f')}"
                    f"{format_ci(m.get('dice_myocardium_ci95'), 3, percent=False)}. "
                    f"Infarct size error: {m['size_error_mean_pct']:+.1f}{format_ci(err.get('mean'), percent=False, sign=True)}"
                    f" (mean) and {m['size_error_abs_mean_pct']:.1f}{format_ci(err.get('abs_mean'), percent=False)} "
                    "(mean absolute) percentage points "
                    "of the myocardium."]


def _calls_section(m):
    """Slice calls: the rule, outcome counts with Wilson intervals, and the per-subject table."""
    calls = m.get("calls")
    if not calls:
        return []
    c = calls["counts"]
    L = ["", "## Slices: detected, missed, false positive", "",
         f"Rule: {calls['rule']}. Detected {c['detected']}, misplaced (called, no overlap) {c['misplaced']}, "
         f"missed {c['missed']}, false positive {c['false positive']}, true negative {c['true negative']}. "
         f"Slice-level sensitivity {_pct(calls['sensitivity'])}{format_ci(calls['sensitivity_ci95'])}, "
         f"specificity {_pct(calls['specificity'])}{format_ci(calls['specificity_ci95'])} (Wilson).", "",
         "| subject | level | traced infarct (% of myocardium) | predicted (%) | size error (pp) | "
         "myocardium Dice | call |", "|---|---|---|---|---|---|---|"]
    for p in m["per_subject"]:
        d = "-" if not p["has_infarct"] else f"{p['dice_myocardium']:.2f}"
        L.append(f"| {p['id']} | {p['level']} | {p['size_true_pct']:.1f} | {p['size_pred_pct']:.1f} | "
                 f"{p['size_error_pct']:+.1f} | {d} | {p['outcome']} |")
    return L


def _segment_section(seg, *, holdout, at_rule=None):
    """AHA segment accuracy per level beside the paper's (labelled when the split differs), and the AUC."""
    head = (f"paper ({PAPER_SEGMENT_SPLIT})" if holdout else
            f"paper (its {PAPER_SEGMENT_SPLIT}: **another split**, not comparable with one CV fold)")
    L = ["", "## AHA segments", "", f"A segment is abnormal when {seg['rule'].removeprefix('abnormal when ')}; "
         "accuracy = share of segments whose predicted label equals the traced one (Wilson 95 % intervals).", "",
         f"| level | {head} | ours | segments (abnormal) |", "|---|---|---|---|"]
    for lv in ("apical", "mid", "basal", "all"):
        if lv in seg["accuracy"]:
            L.append(f"| {lv} | {_pct(PAPER['segment_accuracy'].get(lv))} | {_pct(seg['accuracy'][lv])}"
                     f"{format_ci(seg.get('accuracy_ci95', {}).get(lv))} | {seg['n_segments'][lv]} "
                     f"({seg.get('n_abnormal', {}).get(lv, '?')}) |")
    if at_rule is not None and seg.get("cut", M.SEGMENT_RULE) != M.SEGMENT_RULE:
        L += ["", "The cut was chosen on the validation subjects (it called more of their segments right, each "
                  "subject left out in turn, than the truth's own quarter did). At that quarter the accuracy "
                  "would be " + ", ".join(f"{lv} {_pct(at_rule['accuracy'][lv])}" for lv in ("apical", "mid", "basal",
                                                                                             "all")
                                          if lv in at_rule["accuracy"]) + "."]
    auc, ci = seg["auc"], format_ci(seg.get("auc_ci95"), 3, percent=False)
    few = [s for s, n in seg.get("n_abnormal_per_segment", {}).items()
           if seg["auc_per_segment"].get(s) is not None and n <= 2]
    return L + ["", f"Segment AUC (mean probability per segment, all segments): "
                    f"{'n/a' if auc is None else format(auc, '.3f')}{ci}. Per-segment AUCs are in metrics.json"
                + (f"; those of segments {', '.join(map(str, few))} rest on one or two abnormal segments and say "
                   "little." if few else ".")]


def _training_section(training):
    """Training curves and the epoch kept per stage."""
    if not training:
        return ["", "## Training", "", "No training log in this folder."]
    L = ["", "## Training", "", "![training curves](training.png)", "",
         "| stage | epochs run | epoch kept (lowest validation loss) | its validation loss |", "|---|---|---|---|"]
    L += [f"| {stage}: {s['what']} | {len(s['epochs'])} | {s['kept']} | {s['kept_val_loss']:.4f} |"
          for stage, s in training.items()]
    return L + ["", "The auto-encoders are pre-trained without validation (train_log_autoencoders.csv)."]


def _figures_section(result, overlays_drawn):
    """ROC/PR, bull's-eyes and the overlays with the rule that chose them."""
    L = ["", "## Figures", "", "![ROC and PR](roc_pr.png)", ""]
    if result.get("bullseyes"):
        L += ["AHA bull's-eyes of the test slices, traced and predicted (mean infarct % per segment; n = slices "
              "holding the segment):", ""] + [f"![{n}]({n})" for n in result["bullseyes"]] + [""]
    L += ["Overlays (`overlays/`): the ROI at frame 0 (end-diastole); predicted infarct filled green, traced "
          "infarct outlined yellow, myocardium outlined cyan. Chosen by a fixed rule (best, median and worst "
          "Dice, every missed, misplaced and false-positive slice, one correct infarct-free slice), not by "
          "looks:", ""]
    return L + ([f"- `overlays/{sid}.png`: {reason}" for sid, reason in overlays_drawn] or ["- none drawn"])


def _end_to_end_section(m, e, cfg):
    """This fold's own ROIs and detected ROIs side by side (the paper's end-to-end setting)."""
    if not e:
        return []
    cov, loc = e["coverage"], e["localizer"]
    how = (f"reused (trained before on the same {loc['subjects']} subjects, settings and training revision)"
           if loc.get("reused") else
           f"trained here on {loc['frames']} frames of the fold's {loc['subjects']} training and validation subjects "
           f"in {loc['seconds'] / 60:.1f} min")
    own = "annotated ROI" if cfg["roi"] == "gt" else "ROI of the run's localizer"
    rule = ""
    if loc.get("rule"):
        from .localization import describe_sequence_rule  # a fold's report is written where TensorFlow runs

        rule = (" Its sequence rule (`experiments/localization.toml` [detect], chosen by `make localize-rule`): "
                f"{describe_sequence_rule(loc['rule'])}.")
    L = ["", "## End to end: ROIs from the heart localization layers", "",
         f"The fold's own heart localization layers (Fast R-CNN, profile `{loc.get('profile', 'full')}`; {how}; never "
         f"shown the test fold) find the ROI; the same network and threshold then score it.{rule} The detected ROI holds "
         f"the whole annotated LV box in {_pct(cov['lv_held'])} of the test subjects and "
         f"{_pct(cov['infarct_inside'])} of the traced infarct on average: infarct outside the ROI is not scored, "
         "so read these rows with that coverage.", "",
         f"| myocardium pixels | {own} | detected ROI |", "|---|---|---|"]
    for k in ("sensitivity", "specificity", "dice", "roc_auc"):
        L.append(f"| {k} | {_pct(m['myocardium'][k])}{format_ci(m['myocardium'].get('ci95', {}).get(k))} | "
                 f"{_pct(e['myocardium'][k])}{format_ci(e['myocardium'].get('ci95', {}).get(k))} |")
    a, b = m["segments"], e["segments"]
    L.append(f"| AHA segment accuracy (all) | {_pct(a['accuracy'].get('all'))}"
             f"{format_ci(a.get('accuracy_ci95', {}).get('all'))} | {_pct(b['accuracy'].get('all'))}"
             f"{format_ci(b.get('accuracy_ci95', {}).get('all'))} |")
    return L


def plot_fold_bullseyes(folder, subjects, probs, threshold):
    """Traced and predicted infarct, mean % per AHA segment over the test slices, as two bull's-eyes
    (``bullseye_traced.png``, ``bullseye_predicted.png`` in ``folder``). Returns the file names."""
    from .bullseye import cohort_percent, plot_bullseye

    names = []
    for kind, masks in (("traced", [r.infarct for r in subjects]), ("predicted", [p >= threshold for p in probs])):
        per = [M.segment_percent(np.asarray(k, bool) & (r.myocardium > 0), r.aha) for k, r in zip(masks, subjects)]
        mean, counts = cohort_percent(per)
        name = f"bullseye_{kind}.png"
        plot_bullseye(Path(folder) / name, mean, counts=counts,
                      title=f"{kind} infarct, mean % per AHA segment over {len(subjects)} test slices")
        names.append(name)
    return names


# -- over folds -------------------------------------------------------------------------------------
_SUMMARY = [("roi", k) for k in ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc")] + \
           [("myocardium", k) for k in ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc",
                                        "sensitivity_at_spec95")]


def fold_table(results):
    """Mean +- sd over folds of the headline metrics (:func:`ofrnn.metrics.mean_sd`).

    Returns
    -------
    dict
        {"roi.<metric>" | "myocardium.<metric>" | "segments.<level>" | "segments_at_rule.<level>" |
        "dice_myocardium_mean": {mean, sd, n}}; metrics a stored fold lacks count as missing.
        ``segments`` call a segment at each fold's chosen cut (:func:`ofrnn.evaluate.choose_segment_cut`),
        ``segments_at_rule`` at the truth's own quarter.
    """
    table = {f"{g}.{k}": M.mean_sd([r["metrics"][g].get(k) for r in results]) for g, k in _SUMMARY}
    for group in ("segments", "segments_at_rule"):  # the second only in folds since REPORT_VERSION 5
        for lv in ("apical", "mid", "basal", "all"):
            table[f"{group}.{lv}"] = M.mean_sd([r["metrics"].get(group, {}).get("accuracy", {}).get(lv)
                                                for r in results])
    table["dice_myocardium_mean"] = M.mean_sd([r["metrics"].get("dice_myocardium_mean") for r in results])
    return table


#: the validation subjects' myocardium metrics the CV summary averages, with their report names
_VALIDATION_SHOWN = {"dice": "Dice", "roc_auc": "ROC AUC", "sensitivity_at_spec95": "sensitivity at specificity 0.95"}


def _of_folds(n, total):
    """What a mean over folds adds when only ``n`` of ``total`` folds have the metric (stored before it existed)."""
    return f" ({n} of {total} folds)" if n < total else ""


def aggregate(results, out):
    """Mean +- sd over folds of the headline metrics; writes ``out``/metrics.json and report.md.

    Slice calls are also pooled over folds (every subject is tested once), with Wilson intervals.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    table = fold_table(results)
    rows = [p for r in results for p in r["metrics"]["per_subject"] if "outcome" in p]
    pooled = {}
    if len(rows) == sum(len(r["metrics"]["per_subject"]) for r in results):
        pooled["calls"] = M.call_summary(rows)
    cfg = results[0]["config"]
    n_subjects = sum(len(r["split"]["test"]) for r in results)
    # the validation subjects' myocardium metrics: what an option is judged on (folds stored before the
    # threshold-free two were kept lack them; n counts the folds that have them)
    validation = {k: M.mean_sd([r.get("validation", {}).get("myocardium", {}).get(k) for r in results])
                  for k in _VALIDATION_SHOWN}
    summary = dict(folds=[r["split"]["scheme"] for r in results], n_folds=len(results), n_test_subjects=n_subjects,
                   profile=cfg["profile"], roi=cfg["roi"], flow=cfg["flow"], data=results[0].get("data"),
                   metrics=table, validation=validation, pooled=pooled, paper=PAPER)
    write_json(out / "metrics.json", summary, indent=2)
    L = [f"# OF-RNN cross-validation: {len(results)} folds, {n_subjects} test subjects", "",
         f"- **Data**: {describe_data(results[0].get('data', {}))}.",
         f"- **Profile**: {_profile_sentence(cfg, results[0].get('profile_reductions'))}",
         f"- **ROI source** `{cfg['roi']}`; **flow** `{cfg['flow']}`. Every subject is tested exactly once.", "",
         comparison_note(cfg, one_fold=False), "",
         f"| metric | paper ({PAPER_PIXEL_SPLIT}; segments: {PAPER_SEGMENT_SPLIT}) | ours (mean +- sd over folds) |",
         "|---|---|---|"]
    for key, s in table.items():
        name = key.split(".")[-1]
        paper = PAPER.get(name) if key.startswith("roi.") else (
            PAPER["segment_accuracy"].get(name) if key.startswith(("segments.", "segments_at_rule.")) else None)
        unit = "" if key == "dice_myocardium_mean" else " %"
        scale = 1 if key == "dice_myocardium_mean" else 100
        # folds stored before a metric existed lack it: n says how many folds a row averages
        ours = "-" if s["mean"] is None else (f"{scale * s['mean']:.2f} +- {scale * s['sd']:.2f}{unit}"
                                              + _of_folds(s["n"], len(results)))
        L.append(f"| {key} | {_pct(paper, 2) if paper else '-'} | {ours} |")
    cuts = [r["metrics"]["segments"].get("cut") for r in results]
    if any(c is not None for c in cuts):
        L += ["", "`segments.*` call a segment abnormal from the predicted share each fold chose on its validation "
                  f"subjects (cuts {', '.join('-' if c is None else format(c, 'g') for c in cuts)}); "
                  f"`segments_at_rule.*` from the truth's own {M.SEGMENT_RULE:g}."]
    if "calls" in pooled:
        c = pooled["calls"]
        counts = ", ".join(f"{n} {k}" for k, n in c["counts"].items())
        L += ["", f"Slice calls pooled over folds ({c['rule']}): {counts}; slice-level sensitivity "
                  f"{_pct(c['sensitivity'])}{format_ci(c['sensitivity_ci95'])}, specificity "
                  f"{_pct(c['specificity'])}{format_ci(c['specificity_ci95'])} (Wilson 95 %)."]
    shown = [f"{_VALIDATION_SHOWN[k]} {v['mean']:.3f} +- {v['sd']:.3f}{_of_folds(v['n'], len(results))}"
             for k, v in validation.items() if v["mean"] is not None]
    if shown:
        L += ["", "Validation subjects (held out of each fold's training subjects; options and settings are compared "
                  f"on these, never on the test folds), myocardium, mean +- sd over folds: {', '.join(shown)}."]
    transfer = [r.get("validation", {}).get("threshold_transfer") for r in results]
    common = [rule for rule in (transfer[0] or {}) if all(t and rule in t for t in transfer)]
    if common:
        means = {rule: M.mean_sd([t[rule] for t in transfer])["mean"] for rule in common}
        rules = ", ".join(f"`{rule}` " + ("-" if m is None else f"{m:.3f}") for rule, m in means.items())
        L += ["", f"Decision threshold `{cfg['threshold']}`. Threshold rules on the validation subjects only, each "
                  f"subject thresholded by the rule applied to the others (mean myocardium Dice over folds): {rules}."]
    L += ["", "The per-fold reports (`../fold<k>/report.md`) give intervals, per-subject tables and figures."]
    atomic_write_text(out / "report.md", "\n".join(L) + "\n")
    return summary


def cohort_description(cohort):
    """What a report says about the data: source, generator settings, subject count, content digest.

    No path, file name or patient field: ``sha256`` (:func:`ofrnn.files.content_digest`) names
    the cohort's content instead.

    Parameters
    ----------
    cohort : path
        A cohort file (:mod:`ofrnn.store`).

    Returns
    -------
    dict
        ``source``, ``n_subjects``, ``sha256``; for simulated cohorts also ``seed``,
        ``acquisition`` and ``generator``.
    """
    with open_cohort(cohort) as c:
        params = dict(c.params)
        out = dict(source=c.source, n_subjects=len(c.ids), sha256=content_digest(cohort))
    if c.source == "simulated":
        out.update(seed=params.get("seed"), acquisition=params.get("acquisition", {}),
                   generator=params.get("generator"))
    return out


__all__ = ["PAPER", "cohort_description", "PAPER_PIXEL_SPLIT", "PAPER_SEGMENT_SPLIT", "COMPARISON_NOTE", "comparison_note", "glossary", "format_ci", "plot_curves",
           "read_training_log", "plot_training", "select_overlays", "plot_fold_bullseyes", "fold_table", "overlays", "describe_data", "write_report",
           "aggregate"]
