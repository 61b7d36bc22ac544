"""Evaluation metrics against hand-computed confusion matrices."""
import numpy as np
import pytest

from ofrnn import metrics as M


def test_pixel_metrics_hand_computed():
    # 10 pixels: truth 4 infarct; prediction hits 3, misses 1, and raises 2 false alarms
    t = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
    p = np.array([1, 1, 1, 0, 1, 1, 0, 0, 0, 0])
    m = M.pixel_metrics(t, p)
    assert (m["tn"], m["fp"], m["fn"], m["tp"]) == (4, 2, 1, 3)
    assert m["accuracy"] == pytest.approx(7 / 10)
    assert m["sensitivity"] == pytest.approx(3 / 4)
    assert m["specificity"] == pytest.approx(4 / 6)
    assert m["precision"] == pytest.approx(3 / 5)
    assert m["dice"] == pytest.approx(6 / 9)


def test_auc_perfect_and_reversed_scores():
    t = np.array([0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.8, 0.9, 0.3, 0.7])
    m = M.pixel_metrics(t, s > 0.5, s)
    assert m["roc_auc"] == 1.0 and m["pr_auc"] == 1.0
    assert M.pixel_metrics(t, s < 0.5, 1 - s)["roc_auc"] == 0.0


def test_sensitivity_at_specificity_reads_the_roc_curve():
    # 20 negatives scored 0..19, 4 positives scored 18.5, 17.5, 10.5, 2.5. Specificity >= 0.95
    # allows one false positive (19): only 18.5 is above it. >= 0.90 allows 19 and 18: 2 of 4.
    # >= 0.55 allows 11..19: 3 of 4.
    t = np.r_[np.zeros(20), np.ones(4)]
    s = np.r_[np.arange(20.0), [18.5, 17.5, 10.5, 2.5]]
    assert M.sensitivity_at_specificity(t, s, specificity=0.95) == pytest.approx(0.25)
    assert M.sensitivity_at_specificity(t, s, specificity=0.90) == pytest.approx(0.5)
    assert M.sensitivity_at_specificity(t, s, specificity=0.55) == pytest.approx(0.75)
    assert M.pixel_metrics(t, s > 18, s)["sensitivity_at_spec95"] == pytest.approx(0.25)


def test_undefined_ratios_are_nan_not_errors():
    m = M.pixel_metrics(np.zeros(5), np.zeros(5), np.zeros(5))
    assert m["accuracy"] == 1.0 and m["specificity"] == 1.0
    assert np.isnan(m["sensitivity"]) and np.isnan(m["roc_auc"])


def test_infarct_size_and_error_in_percent_of_myocardium():
    myo = np.zeros((4, 5), bool)
    myo[1:3] = True  # 10 pixels
    truth = np.zeros_like(myo)
    truth[1, :2] = True  # 2 / 10 = 20 %
    pred = np.zeros_like(myo)
    pred[1, :3] = True
    pred[0, 0] = True  # outside the myocardium: does not count
    assert M.infarct_size(truth, myo) == pytest.approx(20.0)
    assert M.infarct_size_error(pred, truth, myo) == pytest.approx(10.0)


def test_segment_rule_and_metrics_per_level():
    aha = np.zeros((2, 8), np.uint8)
    aha[:, :4] = 7
    aha[:, 4:] = 8  # two segments of 8 pixels
    truth = np.zeros((2, 8), bool)
    truth[0, :2] = True  # segment 7: 2/8 = 1/4 -> abnormal (rule >= 1/4)
    truth[0, 4] = True  # segment 8: 1/8 -> normal
    assert M.segment_labels(truth, aha) == {7: 1, 8: 0}
    pred = np.zeros_like(truth)
    pred[:, 4:] = True  # wrong on both
    prob = pred.astype(float)
    rows = M.segment_records("a", "mid", truth, pred, prob, aha) + \
        M.segment_records("b", "apical", truth, truth, truth.astype(float), aha)
    s = M.segment_metrics(rows)
    assert s["accuracy"] == {"apical": 1.0, "mid": 0.0, "all": 0.5}
    assert s["n_segments"]["all"] == 4
    assert s["auc_per_segment"] == {7: None, 8: None}  # each segment one class only
    # scores: positives 0.0 (a) and 0.25 (b), negatives 1.0 (a) and 0.125 (b): 1 of 4 pairs ranked right
    assert s["auc"] == pytest.approx(0.25)


def test_youden_threshold_separates_classes():
    t = np.array([0, 0, 0, 1, 1])
    s = np.array([0.1, 0.2, 0.35, 0.4, 0.9])
    thr = M.youden_threshold(t, s)
    assert 0.35 < thr <= 0.4
    assert M.youden_threshold(np.zeros(3), s[:3]) == 0.5


def test_dice_threshold_maximises_dice():
    t = np.array([0, 0, 0, 0, 1, 1, 0, 1])
    s = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.8, 0.65, 0.9])
    thr = M.dice_threshold(t, s)
    # thresholds 0.7 (Dice 1.0) beats 0.6 (3 tp, 2 fp: Dice 0.75)
    assert thr == pytest.approx(0.7)
    assert M.pixel_metrics(t, s >= thr)["dice"] == 1.0


def test_wilson_interval_known_values():
    from ofrnn.metrics import wilson_interval

    # 14 of 16 AHA segments right: the example, 64-96 %
    lo, hi = wilson_interval(14, 16)
    assert lo == pytest.approx(0.6398, abs=1e-4) and hi == pytest.approx(0.9650, abs=1e-4)
    # Brown, Cai & DasGupta (2001): 0 of 10 gives (0, 0.2775); never outside [0, 1]
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10)[1] == pytest.approx(1.0) and all(np.isnan(wilson_interval(0, 0)))
    with pytest.raises(ValueError):
        wilson_interval(3, 2)


def test_bootstrap_over_subjects_covers_the_statistic_and_is_seeded():
    from ofrnn.metrics import bootstrap_subjects

    x = np.random.default_rng(1).normal(5.0, 1.0, 40)
    lo, hi = bootstrap_subjects(lambda i: float(x[i].mean()), len(x), seed=3)
    assert lo < x.mean() < hi
    # the interval of a mean shrinks like 1 / sqrt(n): about 2 x 1.96 / sqrt(40) = 0.62 wide here
    assert 0.4 < hi - lo < 0.85
    assert bootstrap_subjects(lambda i: float(x[i].mean()), len(x), seed=3) == (lo, hi)
    # a constant statistic has a zero-width interval
    assert bootstrap_subjects(lambda i: 1.0, 5) == (1.0, 1.0)


def test_pixel_intervals_contain_the_pooled_values_and_are_exact_when_subjects_agree():
    from ofrnn.metrics import pixel_intervals, pixel_metrics

    rng = np.random.default_rng(0)
    truth = rng.random((8, 16, 16)) < 0.2
    prob = np.clip(0.5 * truth + 0.6 * rng.random((8, 16, 16)), 0, 1)
    pred = prob >= 0.5
    ci = pixel_intervals(truth, pred, prob, n_boot=300)
    m = pixel_metrics(truth, pred, prob)
    for k in ("accuracy", "sensitivity", "specificity", "dice", "roc_auc"):
        assert ci[k][0] <= m[k] <= ci[k][1], k
    # eight copies of one subject: every resample is the same pool, the interval has no width
    same = [np.repeat(a[:1], 8, axis=0) for a in (truth, pred, prob)]
    ci = pixel_intervals(*same, n_boot=50)
    m = pixel_metrics(*(a[0] for a in same))
    assert ci["dice"] == pytest.approx((m["dice"], m["dice"]))
    assert ci["roc_auc"][0] == pytest.approx(m["roc_auc"], abs=2e-3)  # histogram areas, 4096 bins


def test_slice_call_and_outcome_on_hand_made_masks():
    from ofrnn.metrics import CALL_MIN_PIXELS, call_outcome, call_summary, slice_call

    myo = np.zeros((64, 64), bool)
    myo[20:44, 20:24] = True  # 96 pixels
    truth = np.zeros_like(myo)
    truth[20:30, 20:24] = True
    pred = np.zeros_like(myo)
    pred[20:23, 20:24] = True  # 12 pixels on the infarct
    assert slice_call(pred, myo) and CALL_MIN_PIXELS <= 12
    assert call_outcome(truth, pred, myo) == "detected"
    few = np.zeros_like(myo)
    few[20:22, 20:24] = True  # 8 pixels: below the rule
    assert call_outcome(truth, few, myo) == "missed"
    far = np.zeros_like(myo)
    far[40:44, 20:24] = True  # 16 pixels, none on the infarct
    assert call_outcome(truth, far, myo) == "misplaced"
    assert call_outcome(np.zeros_like(myo), far, myo) == "false positive"
    outside = np.zeros_like(myo)
    outside[0:10, 0:10] = True  # predicted outside the myocardium does not count
    assert call_outcome(np.zeros_like(myo), outside, myo) == "true negative"
    rows = [dict(outcome=o) for o in ("detected", "detected", "missed", "true negative", "false positive")]
    s = call_summary(rows)
    assert s["sensitivity"] == pytest.approx(2 / 3) and s["specificity"] == pytest.approx(0.5)
    assert s["counts"]["missed"] == 1


def test_prediction_summary_counts_only_the_myocardium_on_hand_made_masks():
    """Area, % of myocardium and centroid come from predicted pixels inside the myocardium only."""
    from ofrnn.predict import subject_summary
    from ofrnn.store import Subject

    H = W = 20
    myo = np.zeros((H, W), np.uint8)
    myo[4:8, 4:16] = 1                      # 48 pixels
    pred = np.zeros((H, W), np.uint8)
    pred[4:6, 4:8] = 1                      # 8 pixels inside, centroid (4.5, 5.5)
    pred[12:20, 0:10] = 1                   # 80 pixels outside the myocardium: not infarct
    roi = np.ones((H, W), bool)
    s = Subject(id="t", cine=np.zeros((2, H, W), np.float32), spacing_mm=(1.5, 2.0), level="mid",
                frame_times_ms=np.array([0.0, 40.0]), myocardium=myo)
    out = subject_summary(pred.astype(np.float32), pred, s, (0, 0, H, W), roi_mask=roi, called=True, threshold=0.5,
                          model={"profile": "quick"})
    assert out["infarct_pixels"] == 8 and out["predicted_pixels_outside_region"] == 80
    assert out["infarct_area_mm2"] == pytest.approx(8 * 1.5 * 2.0)
    assert out["percent_of_myocardium"] == pytest.approx(100 * 8 / 48)
    assert out["centroid_rc_px"] == pytest.approx([4.5, 5.5])
    assert out["centroid_rc_mm"] == pytest.approx([4.5 * 1.5, 5.5 * 2.0])  # (row, col) x (row, col) spacing
    assert out["region"].startswith("myocardium") and out["infarct_present"] is True
    # the myocardium unknown (raw DICOM): every predicted pixel in the ROI counts, and the file says so
    roi = np.zeros((H, W), bool)
    roi[0:10, 0:10] = True
    s.myocardium = None
    out = subject_summary(pred.astype(np.float32), pred, s, (0, 0, 10, 10), roi_mask=roi, called=False,
                          threshold=0.5, model={})
    assert out["infarct_pixels"] == 8 and out["percent_of_myocardium"] is None
    assert out["region"].startswith("myocardium unknown") and out["infarct_present"] is False
    empty = subject_summary(np.zeros((H, W), np.float32), np.zeros((H, W), np.uint8), s, (0, 0, 10, 10),
                            roi_mask=roi, called=False, threshold=0.5, model={})
    assert empty["centroid_rc_px"] is None and empty["infarct_area_mm2"] == 0


def test_roi_check_flags_boxes_no_lv_could_fill():
    from ofrnn.predict import roi_check

    spacing = (1.4, 1.4)
    ok = roi_check(dict(box=[100, 100, 150, 145], frame_scores=[0.9, 0.95, 0.8]), spacing)  # 70 x 63 mm
    assert ok["warning"] is None and ok["lv_box_mm"] == [70.0, 63.0] and ok["lv_score"] == pytest.approx(0.9)
    huge = roi_check(dict(box=[6, 54, 126, 170], frame_scores=[0.9]), spacing)  # 168 mm: a torso, not an LV
    assert "LV box 168 mm" in huge["warning"]
    unsure = roi_check(dict(box=[100, 100, 150, 145], frame_scores=[0.2, 0.3, 0.9]), spacing)
    assert "LV probability 0.30" in unsure["warning"]


def test_bootstrap_subjects_keeps_each_stratum_its_size():
    from ofrnn.metrics import bootstrap_subjects

    strata = np.r_[np.zeros(3, int), np.ones(7, int)]
    seen = []

    def stat(idx):
        seen.append(idx)
        return float(np.mean(strata[idx]))
    lo, hi = bootstrap_subjects(stat, 10, n_boot=50, seed=1, strata=strata)
    assert lo == hi == 0.7  # 3 of stratum 0 and 7 of stratum 1 in every resample
    assert all(len(i) == 10 and set(i[:3]) <= {0, 1, 2} for i in seen)
    assert len({tuple(i) for i in seen}) > 1  # still resampled


def test_rank_auc_is_sklearns_roc_auc_with_ties_and_nan_for_one_class():
    from sklearn.metrics import roc_auc_score

    from ofrnn.metrics import rank_auc

    rng = np.random.default_rng(3)
    for n, digits in ((7, 1), (60, 1), (300, 2), (300, 6)):  # few distinct scores: many ties
        truth = rng.random(n) < 0.4
        truth[:2] = [True, False]
        score = np.round(rng.random(n) + 0.3 * truth, digits)
        assert rank_auc(truth, score) == pytest.approx(roc_auc_score(truth, score), abs=1e-12)
    assert rank_auc([1, 1, 0], [0.2, 0.9, 0.5]) == 0.5  # one of two positive pairs ranked right
    assert np.isnan(rank_auc([1, 1], [0.2, 0.3])) and np.isnan(rank_auc([0, 0], [0.2, 0.3]))
