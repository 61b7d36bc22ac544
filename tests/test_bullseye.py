"""The AHA bull's-eye: percent per segment on hand-made masks, cohort means, the figure."""
import numpy as np
import pytest


def test_segment_percent_on_a_hand_made_slice():
    from ofrnn.bullseye import cohort_percent
    from ofrnn.metrics import segment_labels, segment_percent

    aha = np.zeros((10, 10), np.uint8)
    aha[0:2, :] = 7   # 20 pixels
    aha[2:4, :] = 8   # 20 pixels
    pred = np.zeros((10, 10), np.uint8)
    pred[0:1, :] = 1  # half of segment 7
    pred[5:, :] = 1   # outside the myocardium: counts for no segment
    assert segment_percent(pred, aha) == {7: pytest.approx(50.0), 8: 0.0}
    assert segment_labels(pred, aha) == {7: 1, 8: 0}  # abnormal from a quarter of the segment
    mean, counts = cohort_percent([{7: 50.0, 8: 0.0}, {7: 100.0, 13: 20.0}])
    assert mean == {7: 75.0, 8: 0.0, 13: 20.0} and counts == {7: 2, 8: 1, 13: 1}


def test_bullseye_figure_is_written(tmp_path):
    from ofrnn.bullseye import plot_bullseye

    plot_bullseye(tmp_path / "b.png", {1: 10.0, 9: 80.0, 13: 100.0}, counts={1: 2}, title="test")
    assert (tmp_path / "b.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*"))  # written atomically: no temporary file left
