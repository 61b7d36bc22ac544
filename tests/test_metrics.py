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
