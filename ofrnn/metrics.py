"""Evaluation of pixel-level infarct detection (paper Sec. 3, "Performance evaluation criteria").

Pixel level (the paper's 94.35 % accuracy, 91.23 % sensitivity, 98.42 % specificity): the
confusion matrix of predicted vs traced infarct over every pixel of the 64x64 ROIs (as the paper)
and, because ROI pixels outside the heart are trivially normal, over myocardium pixels only.
ROC / PR curves and their areas come from the infarct probabilities (Fig. 3(a, b)).

Clinical measures: infarct Dice, infarct size error (percentage points of the myocardium), and a
per-slice call (infarct present or not, :func:`slice_call`) scored as detected / missed / false
positive.

Uncertainty: pixels of one slice are strongly correlated, so a binomial interval over pixels would be
far too narrow. Pixel-level ratios, Dice and AUC get a percentile bootstrap over *subjects*
(:func:`bootstrap_subjects`); counts of independent units (segments, slice calls) get Wilson score
intervals (:func:`wilson_interval`).

Segment level (the paper's 99.2 / 98.1 / 97.9 % for apical / mid / basal slices): each AHA
segment present in a slice is *abnormal* when infarct covers at least :data:`SEGMENT_RULE`
(one quarter) of its pixels; the predicted label compares the predicted mask's share of the
segment with a cut: the same quarter by default, or a cut a trained fold chose on its validation
subjects (:func:`ofrnn.evaluate.choose_segment_cut`). The mean infarct probability over the
segment is its score for the per-segment AUC (as Zhang et al., Radiology 2019, report AUC per
segment).
"""
from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

#: a segment is abnormal when at least this fraction of its myocardium is infarcted
SEGMENT_RULE = 0.25
#: the predicted-infarct shares from which a segment call may be chosen on validation subjects
#: (:func:`ofrnn.evaluate.choose_segment_cut`); the truth always keeps :data:`SEGMENT_RULE`
SEGMENT_CUTS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5)

#: a slice is called infarcted when at least this many of its 64x64 ROI pixels inside the region
#: scored (the myocardium when known, else the whole ROI) are predicted infarct. The ROI is resampled
#: to the heart's size, so the rule is independent of the image resolution; 10 pixels are about 1.5 %
#: of a typical ROI myocardium. Fixed a priori, never tuned on a test fold.
CALL_MIN_PIXELS = 10

#: the pixel metrics that get a bootstrap interval (:func:`pixel_intervals`)
INTERVAL_METRICS = ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc", "pr_auc")

#: number of bootstrap resamples over subjects behind every 95 % interval of a pixel-level metric
N_BOOTSTRAP = 1000


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
        confusion counts ``tn, fp, fn, tp``. ``pr_auc`` is scikit-learn's average precision;
        ``sensitivity_at_spec95`` is the highest sensitivity of the ROC curve at specificity
        >= 0.95: a property of the scores' curve, as optimistic as picking that threshold on
        these very pixels, so it is reported beside the decision threshold's ``sensitivity``,
        never instead of it.
    """
    tn, fp, fn, tp = confusion(y_true, y_pred)
    out = dict(n=tn + fp + fn + tp, tn=tn, fp=fp, fn=fn, tp=tp,
               accuracy=_ratio(tp + tn, tn + fp + fn + tp), sensitivity=_ratio(tp, tp + fn),
               specificity=_ratio(tn, tn + fp), precision=_ratio(tp, tp + fp), dice=_ratio(2 * tp, 2 * tp + fp + fn))
    if y_score is not None:
        t = np.asarray(y_true, dtype=bool).ravel()
        s = np.asarray(y_score, dtype=float).ravel()
        both = t.any() and not t.all()
        # one ROC curve for both: its area is what roc_auc_score computes (the same roc_curve and auc)
        fpr, tpr, _ = skm.roc_curve(t, s) if both else (None, None, None)
        out["roc_auc"] = float(skm.auc(fpr, tpr)) if both else float("nan")
        out["pr_auc"] = float(skm.average_precision_score(t, s)) if both else float("nan")
        out["sensitivity_at_spec95"] = _best_tpr(fpr, tpr, 0.95) if both else float("nan")
    return out


def sensitivity_at_specificity(y_true, y_score, *, specificity):
    """The ROC curve's best sensitivity at a minimum specificity.

    Parameters
    ----------
    y_true : array of {0, 1}
        Traced infarct labels; both classes must be present.
    y_score : array of float
        Infarct scores of the same pixels.
    specificity : float, keyword-only
        Minimum specificity in [0, 1], e.g. 0.95.

    Returns
    -------
    float
        The highest true-positive rate among the curve's points with false-positive rate
        <= 1 - ``specificity`` (scikit-learn's ``roc_curve``).
    """
    fpr, tpr, _ = skm.roc_curve(np.asarray(y_true, dtype=bool).ravel(), np.asarray(y_score, dtype=float).ravel())
    return _best_tpr(fpr, tpr, specificity)


def _best_tpr(fpr, tpr, specificity):
    # 1e-12: 1 - 0.9 is 0.0999... in floating point, which would exclude a false-positive rate of exactly 0.1
    return float(tpr[fpr <= 1 - specificity + 1e-12].max())


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


def segment_percent(mask, aha_segments):
    """Percent of each AHA segment's pixels inside ``mask``.

    Parameters
    ----------
    mask : array of {0, 1}, (H, W)
        E.g. predicted or traced infarct.
    aha_segments : array of int, (H, W)
        AHA segment 1-16 of each myocardium pixel, 0 elsewhere.

    Returns
    -------
    dict
        {segment: percent in [0, 100]} for the segments present.
    """
    aha = np.asarray(aha_segments)
    m = np.asarray(mask, dtype=bool)
    return {int(s): 100.0 * np.count_nonzero(m & (aha == s)) / np.count_nonzero(aha == s)
            for s in np.unique(aha[aha > 0])}


def segment_labels(mask, aha_segments, *, rule=SEGMENT_RULE):
    """Per AHA segment present: {segment: 1 if at least ``rule`` of its pixels are in ``mask``}."""
    return {s: int(pct >= 100.0 * rule) for s, pct in segment_percent(mask, aha_segments).items()}


def segment_records(subject_id, level, truth, pred, prob, aha_segments, *, rule=SEGMENT_RULE, cut=None):
    """One row per AHA segment of one slice: level, segment, true and predicted label, score.

    The true label is 1 when at least ``rule`` of the segment's pixels are traced infarct; the
    predicted one when at least ``cut`` (default ``rule``) are predicted infarct. ``pred_share`` is
    that predicted fraction, so other cuts can be applied to the rows; ``score`` is the mean
    infarct probability over the segment (its AUC score).
    """
    aha = np.asarray(aha_segments)
    t = segment_labels(truth, aha, rule=rule)
    share = segment_percent(pred, aha)
    cut = rule if cut is None else cut
    prob = np.asarray(prob, dtype=float)
    # the call compares the same fraction that other cuts are later applied to (pred_share)
    return [dict(subject=subject_id, level=level, segment=s, truth=t[s], pred=int(share[s] / 100.0 >= cut),
                 pred_share=share[s] / 100.0, score=float(prob[aha == s].mean())) for s in sorted(t)]


def segment_metrics(records, *, cut=SEGMENT_RULE):
    """Segment normal/abnormal accuracy per slice level and overall, and AUC per AHA segment.

    Parameters
    ----------
    records : list of dict
        Rows from :func:`segment_records` of every evaluated slice.
    cut : float, keyword-only
        The predicted share from which a segment is called abnormal: applied to the rows'
        ``pred_share`` (rows without it keep their ``pred``), and recorded in ``rule``.

    Returns
    -------
    dict
        ``accuracy`` {level: value, "all": value} with ``accuracy_ci95`` (Wilson),
        ``n_segments`` and ``n_abnormal`` {level: count}, ``auc_per_segment`` {segment: AUC or
        None when the test set holds one class only} with ``n_abnormal_per_segment`` (an AUC on
        one or two abnormal segments says little), and ``auc`` over all segments.
    """
    out = dict(rule=f"abnormal when infarct covers >= {SEGMENT_RULE:g} of the segment's pixels; called abnormal "
                    f"when >= {cut:g} of them are predicted infarct", cut=cut,
               accuracy={}, accuracy_ci95={}, n_segments={}, n_abnormal={}, auc_per_segment={},
               n_abnormal_per_segment={})
    records = [dict(r, pred=int(r["pred_share"] >= cut)) if "pred_share" in r else r for r in records]
    levels = sorted({r["level"] for r in records})
    for lv in levels + ["all"]:
        rows = [r for r in records if lv == "all" or r["level"] == lv]
        k = sum(r["truth"] == r["pred"] for r in rows)
        out["accuracy"][lv] = _ratio(k, len(rows))
        out["accuracy_ci95"][lv] = wilson_interval(k, len(rows))
        out["n_segments"][lv] = len(rows)
        out["n_abnormal"][lv] = sum(r["truth"] for r in rows)
    for s in sorted({r["segment"] for r in records}):
        rows = [r for r in records if r["segment"] == s]
        t = [r["truth"] for r in rows]
        out["n_abnormal_per_segment"][s] = sum(t)
        out["auc_per_segment"][s] = (float(skm.roc_auc_score(t, [r["score"] for r in rows]))
                                     if 0 < sum(t) < len(t) else None)
    t = [r["truth"] for r in records]
    out["auc"] = float(skm.roc_auc_score(t, [r["score"] for r in records])) if 0 < sum(t) < len(t) else None
    return out


def mean_sd(values):
    """Mean and sample sd (ddof 1) of per-fold values, None and NaN skipped: {mean, sd, n}.

    ``mean`` is None when no value is finite; ``sd`` is 0 for a single value. The one place every
    table over folds (fold reports, ablations, yardstick, report) takes its mean +- sd from.
    """
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    fin = np.isfinite(v)
    return dict(mean=float(np.nanmean(v)) if fin.any() else None,
                sd=float(np.nanstd(v, ddof=1)) if fin.sum() > 1 else 0.0, n=int(fin.sum()))


def wilson_interval(k, n, *, level=0.95):
    """Wilson score interval of a binomial proportion ``k / n``.

    Parameters
    ----------
    k, n : int
        Successes and trials (``0 <= k <= n``).
    level : float
        Coverage, 0.95 by default.

    Returns
    -------
    (low, high) : tuple of float
        In [0, 1]; ``(nan, nan)`` when ``n == 0``.

    References
    ----------
    E. B. Wilson, "Probable inference, the law of succession, and statistical inference",
    J. Am. Stat. Assoc. 22 (1927) 209-212. Brown, Cai and DasGupta, Stat. Sci. 16 (2001) 101-133
    recommend it over the Wald interval for small ``n``.
    """
    from scipy.stats import norm

    if n == 0:
        return float("nan"), float("nan")
    if not 0 <= k <= n:
        raise ValueError(f"need 0 <= k <= n, got k={k}, n={n}")
    z = float(norm.ppf(0.5 + level / 2))
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return float(max(0.0, centre - half)), float(min(1.0, centre + half))


def rank_auc(y_true, y_score):
    """ROC AUC from the ranks of the scores: the Mann-Whitney U statistic over n1 * n0.

    The value :func:`sklearn.metrics.roc_auc_score` gives (tied scores count half), about twenty
    times faster on a few hundred values, for bootstrap loops that compute it a thousand times.

    Parameters
    ----------
    y_true : array (n,) of bool or {0, 1}
    y_score : array (n,) of float

    Returns
    -------
    float
        The AUC; NaN when ``y_true`` holds one class only.

    References
    ----------
    Hanley and McNeil, Radiology 143:29 (1982).
    """
    from scipy.stats import rankdata

    y_true = np.asarray(y_true, dtype=bool)
    n1 = int(y_true.sum())
    n0 = y_true.size - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    return float((rankdata(y_score)[y_true].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def bootstrap_subjects(statistic, n_subjects, *, n_boot=N_BOOTSTRAP, level=0.95, seed=0, strata=None):
    """Percentile bootstrap interval of a statistic over subjects (resampled with replacement).

    Parameters
    ----------
    statistic : callable
        ``statistic(idx)`` -> float or dict of floats, computed on the subjects ``idx`` (an int
        array of length ``n_subjects``, repeats allowed). NaN values (e.g. an AUC of a resample
        with one class only) are left out of the percentiles.
    n_subjects : int
    n_boot : int
        Number of resamples.
    level : float
        Coverage of the interval.
    seed : int
        Seed of the resampling (NumPy ``default_rng``).
    strata : int array (n_subjects,), optional
        Stratum of each subject: each resample draws within every stratum (in ascending code
        order) as many subjects as it holds, so the strata keep their sizes (e.g. real and
        simulated subjects of a two-class AUC).

    Returns
    -------
    dict or (low, high)
        The interval of each value the statistic returns (``(nan, nan)`` when undefined).

    References
    ----------
    Efron and Tibshirani, *An Introduction to the Bootstrap*, Chapman & Hall 1993, ch. 13.
    Resampling whole subjects keeps the correlation of pixels within a slice (a cluster bootstrap).
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n_subjects)] if strata is None else \
        [np.flatnonzero(np.asarray(strata) == c) for c in np.unique(strata)]
    draws = [statistic(np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])) for _ in range(n_boot)]
    q = (100 * (1 - level) / 2, 100 * (1 + level) / 2)

    def interval(v):
        v = np.asarray(v, dtype=float)
        v = v[np.isfinite(v)]
        return tuple(float(x) for x in np.percentile(v, q)) if len(v) else (float("nan"), float("nan"))

    if isinstance(draws[0], dict):
        return {k: interval([d[k] for d in draws]) for k in draws[0]}
    return interval(draws)


def slice_call(pred, region, *, min_pixels=CALL_MIN_PIXELS):
    """Is the slice called infarcted? At least ``min_pixels`` predicted infarct pixels inside ``region``.

    Parameters
    ----------
    pred, region : array of bool, (64, 64)
        Predicted infarct and the pixels that count, in ROI space: the myocardium when it is
        known, else every ROI pixel.
    min_pixels : int
        :data:`CALL_MIN_PIXELS` by default.

    Returns
    -------
    bool
    """
    return bool(np.count_nonzero(np.asarray(pred, dtype=bool) & np.asarray(region, dtype=bool)) >= min_pixels)


def call_outcome(truth, pred, region, *, min_pixels=CALL_MIN_PIXELS):
    """How the slice call compares with the traced infarct.

    Parameters
    ----------
    truth, pred, region : array of bool, (64, 64)
        Traced and predicted infarct and the myocardium, in ROI space.
    min_pixels : int
        The rule of :func:`slice_call`.

    Returns
    -------
    str
        One of ``"detected"`` (infarct traced, called, and the prediction overlaps it),
    ``"misplaced"`` (traced and called, but no overlap), ``"missed"`` (traced, not called),
    ``"false positive"`` (no infarct traced, called) or ``"true negative"``.
    """
    t = np.asarray(truth, dtype=bool) & np.asarray(region, dtype=bool)
    p = np.asarray(pred, dtype=bool) & np.asarray(region, dtype=bool)
    called = slice_call(pred, region, min_pixels=min_pixels)
    if t.any():
        if not called:
            return "missed"
        return "detected" if (t & p).any() else "misplaced"
    return "false positive" if called else "true negative"


def _binned_areas(pos, neg):
    """ROC AUC and average precision from score histograms of positives and negatives (same bins)."""
    P, N = pos.sum(), neg.sum()
    if P == 0 or N == 0:
        return float("nan"), float("nan")
    # descending scores: cumulative true and false positives at each bin taken as a threshold
    tp = np.cumsum(pos[::-1])
    fp = np.cumsum(neg[::-1])
    neg_below = N - fp  # negatives scored below the bin
    auc = float((pos[::-1] * (neg_below + 0.5 * neg[::-1])).sum() / (P * N))
    keep = pos[::-1] > 0
    ap = float((pos[::-1][keep] / P * tp[keep] / (tp[keep] + fp[keep])).sum())
    return auc, ap


def pixel_intervals(truth, pred, prob, mask=None, *, n_boot=N_BOOTSTRAP, seed=0, bins=4096):
    """95 % subject-bootstrap intervals of the pooled pixel metrics of :func:`pixel_metrics`.

    Parameters
    ----------
    truth, pred : array of bool, (S, H, W)
        Traced and predicted infarct of S subjects.
    prob : array of float, (S, H, W)
        Infarct probabilities in [0, 1].
    mask : array of bool, (S, H, W), optional
        The pixels scored (e.g. the myocardium); all when None.
    n_boot, seed : int
        Resamples and their seed (:func:`bootstrap_subjects`).
    bins : int
        The ROC and PR areas of a resample are computed from per-subject score histograms with
        this many bins over [0, 1] (ties within a bin count one half), so a resample costs
        microseconds instead of a sort of every pixel; the confusion counts are exact.

    Returns
    -------
    dict
        {metric: (low, high)} for :data:`INTERVAL_METRICS`.
    """
    truth = np.asarray(truth, dtype=bool)
    pred = np.asarray(pred, dtype=bool)
    mask = np.ones_like(truth) if mask is None else np.asarray(mask, dtype=bool)
    S = len(truth)
    counts = np.zeros((S, 4))  # tn, fp, fn, tp
    hist = np.zeros((S, 2, bins))  # negatives, positives
    edges = np.linspace(0.0, 1.0, bins + 1)
    for i in range(S):
        t, p, s = truth[i][mask[i]], pred[i][mask[i]], np.asarray(prob[i], dtype=float)[mask[i]]
        counts[i] = [np.sum(~t & ~p), np.sum(~t & p), np.sum(t & ~p), np.sum(t & p)]
        hist[i, 0] = np.histogram(s[~t], edges)[0]
        hist[i, 1] = np.histogram(s[t], edges)[0]

    def stat(idx):
        tn, fp, fn, tp = counts[idx].sum(axis=0)
        neg, pos = hist[idx].sum(axis=0)
        auc, ap = _binned_areas(pos, neg)
        return dict(accuracy=_ratio(tp + tn, tn + fp + fn + tp), sensitivity=_ratio(tp, tp + fn),
                    specificity=_ratio(tn, tn + fp), precision=_ratio(tp, tp + fp),
                    dice=_ratio(2 * tp, 2 * tp + fp + fn), roc_auc=auc, pr_auc=ap)

    return bootstrap_subjects(stat, S, n_boot=n_boot, seed=seed)


def evaluate_rois(subjects, probs, threshold, *, segment_cut=SEGMENT_RULE, intervals=False, seed=0):
    """Pixel, clinical and segment metrics of ROI probability maps against the traced infarcts.

    Parameters
    ----------
    subjects : list
        Objects with ``id``, ``level`` and ROI-space ``infarct``, ``myocardium``, ``aha`` masks
        (:class:`ofrnn.pipeline.RoiSubject`).
    probs : list of arrays
        Infarct probability per ROI pixel, one map per subject.
    threshold : float
    segment_cut : float
        Predicted infarct share from which a segment is called abnormal (its truth keeps
        :data:`SEGMENT_RULE`; :func:`ofrnn.evaluate.choose_segment_cut`).
    intervals : bool
        Add the 95 % intervals (the ``ci95`` entries below): a few thousand bootstrap resamples, about
        2 s, so only for what a report shows (not for validation subjects or yardstick folds).
    seed : int
        Seed of the bootstrap intervals.

    Returns
    -------
    metrics : dict
        ``roi`` (all ROI pixels), ``myocardium`` (myocardium pixels only), each with ``ci95``
        ({metric: (low, high)}, bootstrap over subjects); ``per_subject`` rows (Dice, infarct size
        and its error, the slice call and its ``outcome``, :func:`call_outcome`); ``calls``
        (outcome counts, slice-level sensitivity and specificity with Wilson intervals);
        ``dice_myocardium_mean`` with ``dice_myocardium_ci95``; ``segments``
        (:func:`segment_metrics`, accuracies with Wilson intervals).
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
    if intervals:
        out["roi"]["ci95"] = pixel_intervals(truth, pred, prob, seed=seed)
        out["myocardium"]["ci95"] = pixel_intervals(truth, pred, prob, myo, seed=seed)
    per_subject, records = [], []
    for r, p, s in zip(subjects, pred, prob):
        m = r.myocardium.astype(bool)
        d = pixel_metrics(r.infarct[m], p[m])["dice"]
        per_subject.append(dict(id=r.id, level=r.level, has_infarct=bool(r.infarct.any()), dice_myocardium=d,
                                size_true_pct=infarct_size(r.infarct, m), size_pred_pct=infarct_size(p, m),
                                size_error_pct=infarct_size_error(p, r.infarct, m),
                                called=slice_call(p, m), outcome=call_outcome(r.infarct, p, m)))
        records += segment_records(r.id, r.level, r.infarct, p & m, s, r.aha, cut=segment_cut)
    dice = np.array([p["dice_myocardium"] for p in per_subject if p["has_infarct"]], dtype=float)
    out["dice_myocardium_mean"] = float(np.nanmean(dice)) if len(dice) else None
    out["dice_myocardium_ci95"] = (bootstrap_subjects(lambda i: float(np.nanmean(dice[i])), len(dice), seed=seed)
                                   if intervals and len(dice) else None)
    err = np.array([p["size_error_pct"] for p in per_subject], dtype=float)
    out["size_error_abs_mean_pct"] = float(np.mean(np.abs(err)))
    out["size_error_mean_pct"] = float(np.mean(err))
    out["size_error_ci95"] = (bootstrap_subjects(lambda i: dict(mean=float(err[i].mean()),
                                                                abs_mean=float(np.abs(err[i]).mean())),
                                                 len(err), seed=seed) if intervals else None)
    out["calls"] = call_summary(per_subject)
    out["segments"] = segment_metrics(records, cut=segment_cut)
    out["segments"]["auc_ci95"] = _segment_auc_interval(records, [r.id for r in subjects], seed) if intervals else None
    out["per_subject"] = per_subject
    return out, records


def _segment_auc_interval(records, ids, seed):
    """Subject-bootstrap 95 % interval of the all-segment AUC (resampling slices with their segments)."""
    by_subject = [[r for r in records if r["subject"] == sid] for sid in ids]
    truth = [np.array([r["truth"] for r in rows], bool) for rows in by_subject]
    score = [np.array([r["score"] for r in rows], float) for rows in by_subject]

    def stat(idx):
        return rank_auc(np.concatenate([truth[i] for i in idx]), np.concatenate([score[i] for i in idx]))

    return bootstrap_subjects(stat, len(ids), seed=seed) if ids else None


def call_summary(per_subject):
    """Counts of slice-call outcomes; slice-level sensitivity and specificity with Wilson intervals.

    Parameters
    ----------
    per_subject : list of dict
        Rows with an ``outcome`` (:func:`call_outcome`).

    Returns
    -------
    dict
        ``rule``, ``counts`` {outcome: n}, ``sensitivity`` (detected / slices with infarct) and
        ``specificity`` (true negatives / infarct-free slices), each with ``_ci95`` (Wilson).
    """
    n = {k: sum(p["outcome"] == k for p in per_subject)
         for k in ("detected", "misplaced", "missed", "false positive", "true negative")}
    pos = n["detected"] + n["misplaced"] + n["missed"]
    neg = n["false positive"] + n["true negative"]
    return dict(rule=f"infarct present when >= {CALL_MIN_PIXELS} ROI pixels of the myocardium are predicted infarct",
                counts=n, sensitivity=_ratio(n["detected"], pos), sensitivity_ci95=wilson_interval(n["detected"], pos),
                specificity=_ratio(n["true negative"], neg), specificity_ci95=wilson_interval(n["true negative"], neg))


__all__ = ["SEGMENT_RULE", "SEGMENT_CUTS", "CALL_MIN_PIXELS", "INTERVAL_METRICS", "N_BOOTSTRAP", "wilson_interval", "rank_auc",
           "sensitivity_at_specificity",
           "bootstrap_subjects", "mean_sd", "segment_percent", "slice_call", "call_outcome", "call_summary", "pixel_intervals", "confusion", "pixel_metrics", "curves", "youden_threshold", "dice_threshold", "infarct_size",
           "infarct_size_error", "segment_labels", "segment_records", "segment_metrics", "evaluate_rois"]
