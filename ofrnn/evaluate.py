"""Evaluation of a trained OF-RNN fold (paper Sec. 3): the probability maps of held-out subjects,
the decision threshold chosen on validation subjects, and the end-to-end setting in which the
fold's heart localization layers find the ROIs.

:mod:`ofrnn.train` trains and calls these; the scores themselves are :mod:`ofrnn.metrics`' and the
report :mod:`ofrnn.fold_report`'s. The threshold is never chosen on the test fold: a number (0.5:
the softmax's argmax) or a rule applied to validation subjects drawn from the training folds
(:func:`choose_threshold`; the default "auto" picks 0.5 or the Dice rule by
:func:`threshold_transfer`).
"""
from __future__ import annotations

import time

import numpy as np

from . import metrics as M
from .errors import OfrnnError
from .pipeline import prepare_cohort
from .predict import predict_roi
from .store import open_cohort


def predict_all(network, subjects, cfg, *, progress=True):
    """ROI probability maps of prepared subjects, and seconds per subject.

    Parameters
    ----------
    network : keras.Model
        The trained OF-RNN (:func:`ofrnn.train.build`).
    subjects : list of RoiSubject
        Prepared subjects (:func:`ofrnn.pipeline.prepare_cohort`) with ROI sequences and flows.
    cfg : ofrnn.settings.TrainingSettings
        The run's settings (:func:`ofrnn.predict.roi_features` reads :meth:`~ofrnn.settings.TrainingSettings.inference`).
    progress : bool, keyword-only
        Show a progress bar.

    Returns
    -------
    probs : list of float32 arrays (64, 64)
        Infarct probability of every ROI pixel, one map per subject (:func:`ofrnn.predict.predict_roi`).
    seconds : list of float
        Wall time per subject (features and network).
    """
    from tqdm import tqdm

    config = cfg.inference()
    probs, secs = [], []
    for rs in tqdm(subjects, desc="evaluate", unit="subject", disable=not progress):
        t0 = time.perf_counter()
        probs.append(predict_roi(network, rs, config))
        secs.append(time.perf_counter() - t0)
    return probs, secs


#: the rules the "auto" threshold chooses between, the first winning ties
AUTO_RULES = (0.5, "dice")


def choose_threshold(rule, subjects, probs):
    """The decision threshold: a number, or chosen on (validation) ``subjects`` over all ROI pixels.

    Rules: "dice" (maximum Dice), "youden" (maximum sensitivity + specificity - 1), or "auto": of
    :data:`AUTO_RULES` (the softmax's 0.5 and "dice") the one with the higher myocardium Dice on
    subjects it did not choose from (:func:`threshold_transfer`), then applied to all ``subjects``.
    "auto" keeps 0.5 for a well-calibrated network, where ten subjects place a threshold worse than
    the softmax does, and falls back on "dice" for a learner whose scores sit below 0.5 (at 0.5 the
    P_g-only model of Table 1 reached myocardium Dice 0.007 on its validation subjects).

    Parameters
    ----------
    rule : float or {"auto", "dice", "youden"}
        The profile's ``threshold`` setting.
    subjects : list of RoiSubject
        Validation subjects with ``infarct`` (and, for "auto", ``myocardium``) masks; never the test fold.
    probs : list of (64, 64) arrays
        Their infarct probabilities.

    Returns
    -------
    float
        The threshold: a pixel is called infarct where its probability is at least this.

    Raises
    ------
    OfrnnError
        For a rule that is none of the above.
    """
    if rule == "auto":
        transfer = threshold_transfer(subjects, probs, rules=AUTO_RULES)
        best = max(AUTO_RULES, key=lambda r: transfer[str(r)]) if transfer else AUTO_RULES[0]
        return choose_threshold(best, subjects, probs)
    if rule in ("dice", "youden"):
        truth = np.stack([r.infarct for r in subjects])
        pick = M.dice_threshold if rule == "dice" else M.youden_threshold
        return pick(truth, np.stack(probs))
    try:
        return float(rule)
    except (TypeError, ValueError):
        raise OfrnnError(f"threshold {rule!r} is not 'auto', 'dice', 'youden' or a number",
                         field="threshold") from None


THRESHOLD_RULES = ("dice", "youden", 0.5)


def threshold_transfer(subjects, probs, rules=THRESHOLD_RULES):
    """Myocardium Dice of each threshold rule on subjects it did not choose its threshold from.

    Leave one subject out: each subject is thresholded by the rule applied to the other ``subjects``
    (a number is applied as it is), and Dice is pooled over all of them. A rule's Dice on the subjects
    it chose from flatters it; this one compares rules fairly without touching the test fold.

    Parameters
    ----------
    subjects : list of RoiSubject
        With ``infarct`` and ``myocardium`` masks, (64, 64) each; the validation subjects.
    probs : list of (64, 64) arrays
        Infarct probabilities, one map per subject.
    rules : sequence
        Rules of :func:`choose_threshold`.

    Returns
    -------
    dict {str(rule): myocardium Dice}
        Empty for fewer than two subjects (nothing to choose from).
    """
    if len(subjects) < 2:
        return {}
    truth = np.stack([r.infarct for r in subjects]).astype(bool)
    myo = np.stack([r.myocardium for r in subjects]).astype(bool)
    prob = np.stack(probs)
    out = {}
    for rule in rules:
        pred = np.zeros_like(truth)
        for i in range(len(subjects)):
            rest = [j for j in range(len(subjects)) if j != i]
            thr = choose_threshold(rule, [subjects[j] for j in rest], [prob[j] for j in rest])
            pred[i] = prob[i] >= thr
        out[str(rule)] = M.pixel_metrics(truth[myo], pred[myo])["dice"]
    return out


def _correct_calls(rows, cut):
    """How many segment rows a cut on their predicted share calls right (a plain int: the shares may
    be NumPy floats, and the count goes into JSON records)."""
    return int(sum((r["pred_share"] >= cut) == bool(r["truth"]) for r in rows))


def _best_cut(rows):
    """The cut of :data:`ofrnn.metrics.SEGMENT_CUTS` with the most correct segment calls in ``rows``
    (ties: the one nearest :data:`ofrnn.metrics.SEGMENT_RULE`, then the lower)."""
    # distances rounded: 0.35 and 0.15 lie equally far from 0.25, and the lower one should win
    return max(M.SEGMENT_CUTS, key=lambda c: (_correct_calls(rows, c), -round(abs(c - M.SEGMENT_RULE), 6), -c))


def choose_segment_cut(records):
    """The predicted infarct share from which a segment is called abnormal, chosen on validation subjects.

    A pixel decision threshold tuned for Dice need not make the predicted share of a segment the
    best estimate of whether a quarter of it is infarcted (a network that under-segments calls
    infarcted segments normal). Two rules are compared on subjects they did not choose from (leave
    one subject out, as :func:`threshold_transfer`): the truth's own rule
    (:data:`ofrnn.metrics.SEGMENT_RULE`) and the cut of :data:`ofrnn.metrics.SEGMENT_CUTS` with the
    most correct calls. The second is taken only when it calls more segments right there; it is
    then chosen again on all ``subjects``.

    Parameters
    ----------
    records : list of dict
        The validation subjects' segment rows at the fold's pixel threshold (the ``records`` of
        :func:`ofrnn.metrics.evaluate_rois`, with ``subject``, ``truth`` and ``pred_share``); never
        the test fold's.

    Returns
    -------
    cut : float
        The share, in (0, 1).
    transfer : dict
        Correct calls on left-out subjects, {"rule": ..., "best": ...}, with ``n_segments``
        (empty for fewer than two subjects: the truth's rule is kept).
    """
    subjects = sorted({r["subject"] for r in records})
    if len(subjects) < 2:
        return M.SEGMENT_RULE, {}
    correct = dict(rule=_correct_calls(records, M.SEGMENT_RULE), best=0)
    for sid in subjects:
        cut = _best_cut([r for r in records if r["subject"] != sid])
        correct["best"] += _correct_calls([r for r in records if r["subject"] == sid], cut)
    cut = _best_cut(records) if correct["best"] > correct["rule"] else M.SEGMENT_RULE
    return cut, dict(correct, n_segments=len(records))


def roi_coverage(cohort, detected):
    """How well detected ROIs cover what is scored: per subject, does the ROI box hold the whole
    annotated frame-0 LV box, and which share of the traced infarct lies inside it (infarct outside
    the ROI is never scored, so detected-ROI metrics alone would hide a missed heart).

    Parameters
    ----------
    cohort : path
        The cohort with annotated ``lv_box`` and ``infarct``.
    detected : list of RoiSubject
        The test subjects prepared with detected ROIs (their ``transform``).

    Returns
    -------
    dict
        ``lv_held`` (share of subjects), ``infarct_inside`` (mean share over subjects with infarct)
        and per subject ``rows``.
    """
    rows = []
    with open_cohort(cohort) as c:
        for rs in detected:
            s = c.read(rs.id, fields=("lv_box", "infarct"))
            y0, x0, y1, x1 = (int(v) for v in rs.transform.box)
            lv = s.lv_box[0]
            inf = s.infarct.astype(bool)
            share = (float(inf[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)].sum() / inf.sum()) if inf.any()
                     else None)
            rows.append(dict(id=rs.id, lv_held=bool(y0 <= lv[0] and x0 <= lv[1] and y1 >= lv[2] and x1 >= lv[3]),
                             infarct_inside=share))
    shares = [r["infarct_inside"] for r in rows if r["infarct_inside"] is not None]
    return dict(lv_held=float(np.mean([r["lv_held"] for r in rows])) if rows else None,
                infarct_inside=float(np.mean(shares)) if shares else None, rows=rows)


def evaluate_end_to_end(network, cohort, test_ids, cfg, threshold, detector, *, segment_cut=M.SEGMENT_RULE,
                        segmenter=None, progress=True):
    """The paper's end-to-end setting: ``detector`` (the fold's heart localization layers, trained on
    its training and validation subjects) finds the test subjects' ROIs, and the trained network and
    the fold's threshold score them.

    Parameters
    ----------
    network : keras.Model
        The fold's trained OF-RNN.
    cohort : path
        The cohort file, with traced infarct, myocardium and AHA masks and annotated ``lv_box``.
    test_ids : list of str
        The test fold's subject ids.
    cfg : ofrnn.settings.TrainingSettings
        The run's settings (frames, flow source, ROI margin, seed, feature settings).
    threshold : float
        The fold's decision threshold (:func:`choose_threshold` on its validation subjects).
    detector : ofrnn.localization.Detector
        The fold's heart localization layers (:func:`ofrnn.train.fold_localizer`).
    segment_cut : float, keyword-only
        The fold's segment call (:func:`choose_segment_cut`).
    segmenter : keras.Model, keyword-only
        The fold's wall segmenter, for ``wall_geometry = "learned"`` (:mod:`ofrnn.wall`).
    progress : bool, keyword-only
        Show progress bars.

    Returns
    -------
    dict
        :func:`ofrnn.metrics.evaluate_rois` metrics on the detected ROIs, with ``coverage``
        (:func:`roi_coverage`).
    """
    subjects = prepare_cohort(cohort, frames=cfg.frames, roi="detector", flow=cfg.flow, margin=cfg.roi_margin,
                              localizer=detector, ids=test_ids, progress=progress)
    if segmenter is not None:
        from .wall import with_wall

        subjects = with_wall(subjects, segmenter)
    probs, _ = predict_all(network, subjects, cfg, progress=progress)
    metrics, _ = M.evaluate_rois(subjects, probs, threshold, segment_cut=segment_cut, seed=cfg.seed, intervals=True)
    metrics.update(coverage=roi_coverage(cohort, subjects))
    return metrics


__all__ = ["predict_all", "AUTO_RULES", "choose_threshold", "THRESHOLD_RULES", "threshold_transfer",
           "choose_segment_cut", "roi_coverage",
           "evaluate_end_to_end"]
