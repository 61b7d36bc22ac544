"""Evaluation of pixel-level infarct detection (paper Sec. 3, "Performance evaluation criteria").

Pixel level (the paper's 94.35 % accuracy, 91.23 % sensitivity, 98.42 % specificity): the
confusion matrix of predicted vs traced infarct over every pixel of the 64x64 ROIs (as the paper)
and, because ROI pixels outside the heart are trivially normal, over myocardium pixels only.
ROC / PR curves and their areas come from the infarct probabilities (Fig. 3(a, b)).

Clinical measures: infarct Dice, infarct size error (percentage points of the myocardium).

Segment level (the paper's 99.2 / 98.1 / 97.9 % for apical / mid / basal slices): each AHA
segment present in a slice is *abnormal* when infarct covers at least :data:`SEGMENT_RULE`
(one quarter) of its pixels; the same rule applied to the predicted mask gives the predicted
label, and the mean infarct probability over the segment is its score for the per-segment AUC
(as Zhang et al., Radiology 2019, report AUC per segment).
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

#: a segment is abnormal when at least this fraction of its myocardium is infarcted
SEGMENT_RULE = 0.25


def confusion(y_true, y_pred):
    """(tn, fp, fn, tp) counts of binary labels (any shape, flattened)."""
    t = np.asarray(y_true, dtype=bool).ravel()
    p = np.asarray(y_pred, dtype=bool).ravel()
    tn, fp, fn, tp = skm.confusion_matrix(t, p, labels=[False, True]).ravel()
    return int(tn), int(fp), int(fn), int(tp)


def _ratio(a, b):
    return float(a) / float(b) if b else float("nan")


def pixel_metrics(y_true, y_pred, y_score=None):
    """Accuracy, sensitivity, specificity, precision, Dice (and ROC/PR AUC given scores).

    Parameters
    ----------
    y_true, y_pred : array of {0, 1}
        Traced and predicted infarct labels of the pixels to evaluate.
    y_score : array of float, optional
        Infarct probabilities of the same pixels, for the areas under the ROC and PR curves.

    Returns
    -------
    dict
        Ratios in [0, 1] (NaN when undefined, e.g. sensitivity without infarct pixels) and the
        confusion counts ``tn, fp, fn, tp``. ``pr_auc`` is scikit-learn's average precision.
    """
    tn, fp, fn, tp = confusion(y_true, y_pred)
    out = dict(n=tn + fp + fn + tp, tn=tn, fp=fp, fn=fn, tp=tp,
               accuracy=_ratio(tp + tn, tn + fp + fn + tp), sensitivity=_ratio(tp, tp + fn),
               specificity=_ratio(tn, tn + fp), precision=_ratio(tp, tp + fp), dice=_ratio(2 * tp, 2 * tp + fp + fn))
    if y_score is not None:
        t = np.asarray(y_true, dtype=bool).ravel()
        s = np.asarray(y_score, dtype=float).ravel()
        both = t.any() and not t.all()
        out["roc_auc"] = float(skm.roc_auc_score(t, s)) if both else float("nan")
        out["pr_auc"] = float(skm.average_precision_score(t, s)) if both else float("nan")
    return out


def curves(y_true, y_score):
    """ROC (fpr, tpr) and PR (recall, precision) curves for plotting."""
    t = np.asarray(y_true, dtype=bool).ravel()
    s = np.asarray(y_score, dtype=float).ravel()
    fpr, tpr, _ = skm.roc_curve(t, s)
    precision, recall, _ = skm.precision_recall_curve(t, s)
    return dict(fpr=fpr, tpr=tpr, recall=recall, precision=precision)


def youden_threshold(y_true, y_score):
    """The probability threshold maximising sensitivity + specificity - 1 (Youden's J)."""
    t = np.asarray(y_true, dtype=bool).ravel()
    if t.all() or not t.any():
        return 0.5
    fpr, tpr, thr = skm.roc_curve(t, np.asarray(y_score, dtype=float).ravel())
    i = int(np.argmax(tpr - fpr))
    return float(min(max(thr[i], 0.0), 1.0))


def dice_threshold(y_true, y_score):
    """The probability threshold maximising the Dice coefficient (= F1) of the thresholded scores."""
    t = np.asarray(y_true, dtype=bool).ravel()
    if not t.any():
        return 0.5
    precision, recall, thr = skm.precision_recall_curve(t, np.asarray(y_score, dtype=float).ravel())
    f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
    return float(thr[int(np.argmax(f1))])


def infarct_size(mask, myocardium):
    """Infarct size as a percentage of the myocardium (only infarct inside the myocardium counts)."""
    myo = np.asarray(myocardium, dtype=bool)
    return 100.0 * _ratio(np.count_nonzero(np.asarray(mask, dtype=bool) & myo), np.count_nonzero(myo))


def infarct_size_error(pred, truth, myocardium):
    """Predicted minus traced infarct size, in percentage points of the myocardium."""
    return infarct_size(pred, myocardium) - infarct_size(truth, myocardium)


def segment_labels(mask, aha_segments, *, rule=SEGMENT_RULE):
    """Per AHA segment present: {segment: 1 if at least ``rule`` of its pixels are in ``mask``}."""
    aha = np.asarray(aha_segments)
    m = np.asarray(mask, dtype=bool)
    return {int(s): int(np.count_nonzero(m & (aha == s)) >= rule * np.count_nonzero(aha == s))
            for s in np.unique(aha[aha > 0])}


def segment_records(subject_id, level, truth, pred, prob, aha_segments, *, rule=SEGMENT_RULE):
    """One row per AHA segment of one slice: level, segment, true and predicted label, score."""
    aha = np.asarray(aha_segments)
    t = segment_labels(truth, aha, rule=rule)
    p = segment_labels(pred, aha, rule=rule)
    prob = np.asarray(prob, dtype=float)
    return [dict(subject=subject_id, level=level, segment=s, truth=t[s], pred=p[s],
                 score=float(prob[aha == s].mean())) for s in sorted(t)]


def segment_metrics(records):
    """Segment normal/abnormal accuracy per slice level and overall, and AUC per AHA segment.

    Parameters
    ----------
    records : list of dict
        Rows from :func:`segment_records` of every evaluated slice.

    Returns
    -------
    dict
        ``accuracy`` {level: value, "all": value}, ``n_segments`` {level: count},
        ``auc_per_segment`` {segment: AUC or None when the test set holds one class only}
        and ``auc`` over all segments.
    """
    out = dict(rule=f"abnormal when infarct covers >= {SEGMENT_RULE:g} of the segment's pixels",
               accuracy={}, n_segments={}, auc_per_segment={})
    levels = sorted({r["level"] for r in records})
    for lv in levels + ["all"]:
        rows = [r for r in records if lv == "all" or r["level"] == lv]
        out["accuracy"][lv] = _ratio(sum(r["truth"] == r["pred"] for r in rows), len(rows))
        out["n_segments"][lv] = len(rows)
    for s in sorted({r["segment"] for r in records}):
        rows = [r for r in records if r["segment"] == s]
        t = [r["truth"] for r in rows]
        out["auc_per_segment"][s] = (float(skm.roc_auc_score(t, [r["score"] for r in rows]))
                                     if 0 < sum(t) < len(t) else None)
    t = [r["truth"] for r in records]
    out["auc"] = float(skm.roc_auc_score(t, [r["score"] for r in records])) if 0 < sum(t) < len(t) else None
    return out


def evaluate_rois(subjects, probs, threshold):
    """Pixel, clinical and segment metrics of ROI probability maps against the traced infarcts.

    Parameters
    ----------
    subjects : list
        Objects with ``id``, ``level`` and ROI-space ``infarct``, ``myocardium``, ``aha`` masks
        (:class:`ofrnn.pipeline.RoiSubject`).
    probs : list of arrays
        Infarct probability per ROI pixel, one map per subject.
    threshold : float

    Returns
    -------
    metrics : dict
        ``roi`` (all ROI pixels), ``myocardium`` (myocardium pixels only), per-subject Dice and
        infarct size error, ``segments`` (:func:`segment_metrics`).
    records : list of dict
        The segment rows (:func:`segment_records`).
    """
    truth = np.stack([r.infarct for r in subjects]).astype(bool)
    myo = np.stack([r.myocardium for r in subjects]).astype(bool)
    prob = np.stack(probs)
    pred = prob >= threshold
    out = dict(threshold=threshold, n_subjects=len(subjects),
               roi=pixel_metrics(truth, pred, prob),
               myocardium=pixel_metrics(truth[myo], pred[myo], prob[myo]))
    per_subject, records = [], []
    for r, p, s in zip(subjects, pred, prob):
        m = r.myocardium.astype(bool)
        d = pixel_metrics(r.infarct[m], p[m])["dice"]
        per_subject.append(dict(id=r.id, level=r.level, has_infarct=bool(r.infarct.any()), dice_myocardium=d,
                                size_true_pct=infarct_size(r.infarct, m), size_pred_pct=infarct_size(p, m),
                                size_error_pct=infarct_size_error(p, r.infarct, m)))
        records += segment_records(r.id, r.level, r.infarct, p & m, s, r.aha)
    inf = [p for p in per_subject if p["has_infarct"]]
    out["dice_myocardium_mean"] = float(np.nanmean([p["dice_myocardium"] for p in inf])) if inf else None
    out["size_error_abs_mean_pct"] = float(np.mean([abs(p["size_error_pct"]) for p in per_subject]))
    out["size_error_mean_pct"] = float(np.mean([p["size_error_pct"] for p in per_subject]))
    out["segments"] = segment_metrics(records)
    out["per_subject"] = per_subject
    return out, records


__all__ = ["SEGMENT_RULE", "confusion", "pixel_metrics", "curves", "youden_threshold", "dice_threshold", "infarct_size",
           "infarct_size_error", "segment_labels", "segment_records", "segment_metrics", "evaluate_rois"]
