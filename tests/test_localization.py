"""Heart localization layers: proposals, RoI pooling, Fast R-CNN bundle, sequence box and ROI crop."""
import json
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from ofrnn import proposals as P
from ofrnn.errors import OfrnnError
from ofrnn.roi import crop, sequence_transform, uncrop

ROOT = Path(__file__).resolve().parents[1]


def ring_frame(rng, size=96):
    """A bright blood pool inside a dark myocardial ring, a bright RV blob beside it, smooth noise."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    img = ndi.gaussian_filter(rng.normal(0.3, 0.15, (size, size)), 3)
    r_in = rng.uniform(0.07, 0.11) * size
    r_out = r_in * rng.uniform(1.4, 1.7)
    cy, cx = rng.uniform(r_out + 4, size - r_out - 4, 2)
    ang = rng.uniform(0, 2 * np.pi)
    ry, rx = cy + 1.9 * r_out * np.sin(ang), cx + 1.9 * r_out * np.cos(ang)
    img[np.hypot(yy - ry, xx - rx) < r_in * 1.2] = 0.8
    d = np.hypot(yy - cy, xx - cx)
    img[d < r_out] = 0.15
    img[d < r_in] = 0.9
    img += rng.normal(0, 0.03, img.shape)
    myo = d < r_out
    ys, xs = np.nonzero(myo)
    return img.astype(np.float32), np.array([ys.min(), xs.min(), ys.max() + 1, xs.max() + 1], float), myo


def tiny_cfg():
    cfg = tomllib.loads((ROOT / "experiments" / "localization.toml").read_text())
    cfg["model"].update(input_size=64, filters=[8, 8, 8, 8, 8], fc_units=16, stride=8)
    cfg["detect"].update(fast_size=64)
    cfg["train"].update(epochs=2, steps_per_epoch=10, images_per_batch=2, rois_per_image=32, learning_rate=2e-3)
    return cfg


# -- proposals and box arithmetic (no TensorFlow) ------------------------------------------------

@pytest.mark.parametrize("mode", ["fast", "quality"])
def test_proposals_are_valid_boxes_and_cover_the_lv(mode):
    img, gt, _ = ring_frame(np.random.default_rng(1))
    boxes = P.region_proposals(img, mode=mode, size=64)
    assert boxes.ndim == 2 and boxes.shape[1] == 4 and len(boxes) > 10
    assert np.all(boxes[:, 2] > boxes[:, 0]) and np.all(boxes[:, 3] > boxes[:, 1])
    assert np.all(boxes[:, :2] >= 0) and np.all(boxes[:, 2] <= 96) and np.all(boxes[:, 3] <= 96)
    assert len(np.unique(np.round(boxes).astype(int), axis=0)) == len(boxes)
    assert P.box_iou(boxes, gt).max() >= 0.5


def test_fast_mode_on_two_threads_finds_the_boxes_of_one_opencv_call():
    # the two colour spaces' groupings run on their own threads; together they must be exactly
    # OpenCV's switchToSelectiveSearchFast on the same image (a different set would change every
    # trained detector's candidates)
    import cv2

    rng = np.random.default_rng(0)
    img = ring_frame(rng, size=128)[0] + rng.normal(0, 0.1, (128, 128))  # noise: more segments
    u8 = np.round(P.normalize_intensity(img) * 255).astype(np.uint8)
    ss = cv2.ximgproc.segmentation.createSelectiveSearchSegmentation()
    ss.setBaseImage(cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR))
    ss.switchToSelectiveSearchFast()
    x, y, w, h = np.asarray(ss.process(), dtype=float).reshape(-1, 4).T
    one_call = np.unique(np.stack([y, x, y + h, x + w], axis=1), axis=0)
    threaded = np.unique(P._selective_search(u8, "fast"), axis=0)
    assert len(one_call) > 20
    np.testing.assert_array_equal(threaded, one_call)
    # each colour space alone misses boxes the other finds, so the test sees a lost thread
    bgr = cv2.cvtColor(u8, cv2.COLOR_GRAY2BGR)
    for c in P._FAST_COLOUR_SPACES:
        assert len(np.unique(P._grouping(bgr, "fast", c), axis=0)) < len(one_call)


def test_quality_mode_proposes_more_than_fast_mode():
    img, _, _ = ring_frame(np.random.default_rng(2))
    assert len(P.region_proposals(img, mode="quality")) > len(P.region_proposals(img, mode="fast", size=64))


def test_proposals_reject_bad_frames():
    with pytest.raises(ValueError, match="2-D"):
        P.region_proposals(np.zeros(100))
    with pytest.raises(ValueError, match="mode"):
        P.region_proposals(np.zeros((32, 32)), mode="slow")
    with pytest.raises(ValueError, match="NaN"):
        P.normalize_intensity(np.full((8, 8), np.nan))


def test_box_regression_encode_decode_are_inverse():
    rng = np.random.default_rng(3)

    def boxes():
        y0, x0, h, w = rng.uniform(0, 100, 50), rng.uniform(0, 100, 50), rng.uniform(2, 80, 50), rng.uniform(2, 80, 50)
        return np.column_stack([y0, x0, y0 + h, x0 + w])

    p, g = boxes(), boxes()
    d = P.encode_boxes(p, g)
    np.testing.assert_allclose(P.decode_boxes(p, d), g, atol=1e-9)
    np.testing.assert_allclose(P.encode_boxes(g, g), 0, atol=1e-12)
    with pytest.raises(ValueError):
        P.encode_boxes([[0, 0, 0, 5]], [[0, 0, 5, 5]])


def test_iou_and_nms_known_answers():
    a = np.array([[0, 0, 10, 10], [0, 5, 10, 15], [20, 20, 30, 30]], float)
    np.testing.assert_allclose(P.box_iou(a, a[0])[:, 0], [1.0, 50 / 150, 0.0])
    keep = P.nms(a, [0.9, 0.95, 0.1], iou_threshold=0.3)
    np.testing.assert_array_equal(keep, [1, 2])
    np.testing.assert_array_equal(P.nms(a, [0.9, 0.95, 0.1], iou_threshold=0.5), [1, 0, 2])


def test_sequence_box_ignores_an_outlier_frame_and_covers_the_cycle():
    from ofrnn.localization import sequence_box

    boxes = np.array([[40, 40, 80, 80], [42, 42, 78, 78], [44, 44, 76, 76], [0, 0, 20, 20]], float)
    box = sequence_box(boxes, [0.9, 0.9, 0.9, 0.95])
    np.testing.assert_allclose(box, [40, 40, 80, 80])


def test_box_means_match_numpy():
    from ofrnn.localization import box_means

    rng = np.random.default_rng(3)
    img = rng.uniform(size=(40, 50))
    boxes = np.array([[0, 0, 40, 50], [5, 7, 6, 8], [10, 12, 30, 41], [3, 40, 39, 50]], float)
    want = [img[int(y0):int(y1), int(x0):int(x1)].mean() for y0, x0, y1, x1 in boxes]
    np.testing.assert_allclose(box_means(img, boxes), want, rtol=1e-10)


def test_augmented_box_stays_centred_on_the_moved_disc(monkeypatch):
    """Rotation, zoom, shift and flips move the ground-truth box with the image: its centre is
    the warped disc's centroid, with no half-pixel bias (OpenCV's warp works on pixel centres,
    boxes on pixel edges; mixing them biased every training box up and to the left)."""
    import ofrnn.localization as L

    monkeypatch.setattr(L, "_clutter", lambda img, *args: img)  # geometry only: no distractors
    S = 128
    yy, xx = np.mgrid[0:S, 0:S]
    cfg = dict(rotate=True, flip=True, zoom=[0.7, 2.2], shift=0.12, gamma=1.0, bias=0.0, blur=0.0, noise=0.0,
               lut=0.0, fov_mask=0.0, clutter=0, percentiles=[1.0, 99.0])
    rng = np.random.default_rng(0)
    err = []
    for _ in range(60):
        cy, cx, r = *rng.uniform(40, 88, 2), rng.uniform(12, 20)
        disc = np.hypot(yy + 0.5 - cy, xx + 0.5 - cx) < r  # centred on (cy, cx) in pixel-edge coordinates
        ys, xs = np.nonzero(disc)
        box = np.array([[ys.min(), xs.min(), ys.max() + 1, xs.max() + 1]], float)
        out, moved = L.augment(disc + np.float32(0.1), box, rng, cfg)
        inside = out > 0.5
        centroid = np.array([yy[inside].mean(), xx[inside].mean()]) + 0.5
        err.append((moved[0, :2] + moved[0, 2:]) / 2 - centroid)
    err = np.array(err)
    # the old mapping, on these 60 draws: mean (-0.35, -0.45) px, sd (0.79, 0.68) px
    assert np.all(np.abs(err.mean(0)) < 0.15) and np.all(err.std(0) < 0.4)


def test_motion_map_finds_the_contracting_disc_not_the_static_one():
    from ofrnn.localization import box_means, motion_map

    yy, xx = np.mgrid[0:96, 0:96]
    cine = []
    for t in range(10):
        r = 14 - 5 * np.sin(np.pi * t / 9)  # a cavity that contracts and relaxes
        f = 0.2 + ((yy - 30) ** 2 + (xx - 30) ** 2 < r ** 2) + ((yy - 70) ** 2 + (xx - 66) ** 2 < 14 ** 2)
        cine.append(f.astype(np.float32))
    m = motion_map(np.stack(cine), input_size=48, percentiles=(1, 99))
    assert m.shape == (48, 48) and m.max() == pytest.approx(1.0)
    moving, static = box_means(m, np.array([[8, 8, 22, 22], [28, 26, 42, 40]], float))
    assert moving > 5 * static


def test_motion_proposals_box_the_contracting_disc_and_not_the_static_one():
    """The motion blobs' boxes hold the moving cavity's box (IoU >= 0.8, in image pixels after the
    square padding is undone) and none lies on the static disc; one frame or no thresholds: none."""
    from ofrnn.localization import Detector, motion_proposals

    yy, xx = np.mgrid[0:80, 0:96]  # not square: the padding must be undone
    cine = []
    for t in range(10):
        r = 14 - 5 * np.sin(np.pi * t / 9)
        f = 0.2 + ((yy - 30) ** 2 + (xx - 30) ** 2 < r ** 2) + ((yy - 55) ** 2 + (xx - 70) ** 2 < 14 ** 2)
        cine.append(f.astype(np.float32))
    cine = np.stack(cine)
    boxes = motion_proposals(cine, input_size=48, percentiles=(1, 99), thresholds=(0.2, 0.4, 0.6))
    assert len(boxes) and np.all(boxes[:, 2:] <= [80, 96]) and np.all(boxes[:, :2] >= 0)
    iou = P.box_iou(boxes, np.array([16.0, 16.0, 44.0, 44.0]))[:, 0]
    assert iou.max() >= 0.8
    assert P.box_iou(boxes, np.array([41.0, 56.0, 69.0, 84.0]))[:, 0].max() < 0.1
    assert len(motion_proposals(cine[:1], input_size=48, percentiles=(1, 99), thresholds=(0.2,))) == 0
    assert len(motion_proposals(cine, input_size=48, percentiles=(1, 99), thresholds=())) == 0
    det = Detector(None, dict(input_size=48, percentiles=[1, 99]))
    assert len(det.motion_proposals(cine)) == 0  # a bundle without the setting proposes none
    det.settings["motion_proposals"] = [0.2, 0.4, 0.6]
    np.testing.assert_array_equal(det.motion_proposals(cine), boxes)


def test_extra_boxes_join_every_frames_proposals_and_are_scored():
    from ofrnn.localization import Detector, build_fast_rcnn

    net = build_fast_rcnn(input_size=32, filters=(4, 4, 4, 4, 4), stride=4, pooled_size=(2, 2), fc_units=8)
    det = Detector(net, dict(input_size=32, percentiles=[1, 99], bbox_std=[0.1, 0.1, 0.2, 0.2], fast_size=64,
                             grow=[1.0], max_proposals=2000, nms_iou=0.3, vote_iou=0.5))
    img, _, _ = ring_frame(np.random.default_rng(8), size=64)
    extra = np.array([[3.25, 5.0, 40.5, 37.0]])
    plain, joined = (det.detect_frames([img, img], shared_proposals=True, extra=e) for e in (None, extra))
    for d0, d1 in zip(plain, joined):
        assert len(d1["proposals"]) == len(d0["proposals"]) + 1 and len(d1["proposal_scores"]) == len(d1["proposals"])
        assert any(np.allclose(b, extra[0]) for b in d1["proposals"])


def test_sets_of_extra_boxes_scored_in_one_pass_equal_each_set_scored_alone():
    from ofrnn.localization import Detector, build_fast_rcnn

    net = build_fast_rcnn(input_size=32, filters=(4, 4, 4, 4, 4), stride=4, pooled_size=(2, 2), fc_units=8)
    det = Detector(net, dict(input_size=32, percentiles=[1, 99], bbox_std=[0.1, 0.1, 0.2, 0.2], fast_size=64,
                             grow=[1.0], max_proposals=2000, nms_iou=0.3, vote_iou=0.5))
    rng = np.random.default_rng(8)
    # frames of other content and other shapes, so each has its own proposals and RoI count (padding)
    frames = [ring_frame(rng, size=64)[0], ring_frame(rng, size=64)[0], ring_frame(rng, size=56)[0]]
    extras = [None, np.array([[3.25, 5.0, 40.5, 37.0]]), np.array([[3.25, 5.0, 40.5, 37.0], [10.0, 8.0, 50.0, 44.0]])]
    for shared in (True, False):
        together = det._score_frame_sets(frames, mode="fast", shared_proposals=shared, extras=extras)
        assert len(together) == len(extras)
        for e, per_frame in zip(extras, together):
            alone = det._score_frames(frames, mode="fast", shared_proposals=shared, extra=e)
            assert len(per_frame) == len(frames)
            for a, b in zip(alone, per_frame):
                assert a[0] == b[0]  # the frame's own shape
                np.testing.assert_array_equal(a[3], b[3])  # the same proposals, in the same order
                np.testing.assert_allclose(a[4], b[4], rtol=1e-5, atol=1e-6)  # their LV probabilities
                np.testing.assert_allclose(a[5], b[5], rtol=1e-5, atol=1e-4)  # and regressed boxes
    assert len(together[0][0][3]) != len(together[0][2][3])  # unequal counts: the batch was padded


def test_roi_crop_uncrop_maps_back_to_the_image():
    img, gt, myo = ring_frame(np.random.default_rng(4), size=160)
    t = sequence_transform(gt.astype(int))
    roi = crop(myo.astype(np.uint8), t, order=0)
    assert roi.shape == (64, 64)
    assert roi.sum() > 0 and roi[0].sum() == roi[-1].sum() == roi[:, 0].sum() == roi[:, -1].sum() == 0
    back = uncrop(roi, t, myo.shape, order=0)
    # whole myocardium lies in the crop, and un-cropping returns it up to resampling at its rim
    assert np.all(back[~ndi.binary_dilation(myo, iterations=2)] == 0)
    assert (back & myo).sum() / myo.sum() > 0.9
    centre = (gt[:2] + gt[2:]) / 2 - 0.5
    np.testing.assert_allclose(t.image_to_roi(t.roi_to_image(centre)), centre)


# -- Keras parts ----------------------------------------------------------------------------------

def _roi_pool_reference(feat, rois, pooled, scale):
    """Direct loops over bins, as Fast R-CNN's Caffe RoI pooling (half-open boxes)."""
    B, h, w, C = feat.shape
    H, W = pooled
    out = np.zeros((B, rois.shape[1], H, W, C), np.float32)
    for b in range(B):
        for r, (y0, x0, y1, x1) in enumerate(rois[b]):
            sy, sx = np.floor(y0 * scale), np.floor(x0 * scale)
            ey, ex = max(np.ceil(y1 * scale), sy + 1), max(np.ceil(x1 * scale), sx + 1)
            bh, bw = (ey - sy) / H, (ex - sx) / W
            for i in range(H):
                for j in range(W):
                    ya, yb = int(max(sy + np.floor(i * bh), 0)), int(min(sy + np.ceil((i + 1) * bh), h))
                    xa, xb = int(max(sx + np.floor(j * bw), 0)), int(min(sx + np.ceil((j + 1) * bw), w))
                    if yb > ya and xb > xa:
                        out[b, r, i, j] = feat[b, ya:yb, xa:xb].max(axis=(0, 1))
    return out


def test_roi_max_pooling_matches_numpy_reference():
    from ofrnn.localization import RoiMaxPooling

    rng = np.random.default_rng(5)
    feat = rng.normal(size=(2, 9, 11, 3)).astype(np.float32)  # negative values too: max, not sum
    y0, x0 = rng.uniform(-10, 60, (2, 7)), rng.uniform(-10, 75, (2, 7))
    rois = np.stack([y0, x0, y0 + rng.uniform(1, 50, (2, 7)), x0 + rng.uniform(1, 50, (2, 7))], -1).astype(np.float32)
    rois[0, 0] = [100, 100, 120, 130]  # wholly outside the map: every bin empty -> 0
    layer = RoiMaxPooling((3, 4), 1 / 8)
    got = np.asarray(layer([feat, rois]))
    want = _roi_pool_reference(feat, rois, (3, 4), 1 / 8)
    assert got.shape == (2, 7, 3, 4, 3)
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert np.all(got[0, 0] == 0)
    clone = RoiMaxPooling.from_config(layer.get_config())
    assert clone.pooled_size == (3, 4) and clone.spatial_scale == 1 / 8


def test_score_proposals_scores_each_snapped_box_once_and_decodes_every_box():
    from ofrnn import proposals as P
    from ofrnn.localization import Detector, build_fast_rcnn

    net = build_fast_rcnn(input_size=32, filters=(4, 4, 4, 4, 4), stride=4, pooled_size=(2, 2), fc_units=8)
    det = Detector(net, dict(input_size=32, bbox_std=[0.1, 0.1, 0.2, 0.2]))
    rng = np.random.default_rng(3)
    images = rng.random((2, 32, 32), np.float32)
    base = np.array([[2.0, 3.0, 17.0, 19.0], [5.0, 5.0, 30.0, 12.0]], np.float32)
    # boxes 0-2 snap to the same 4-px cells on both images; box 3 snaps like them on image 0 only
    rois = np.stack([np.concatenate([base[:1], base[:1] + 0.5, base[:1] + [0.5, 0.25, -0.5, -0.25], base[:1]])] * 2)
    rois[1, 3] = base[1]
    assert len(np.unique(det._snapped(rois).transpose(1, 0, 2).reshape(4, -1), axis=0)) == 2
    forward, scored = det._forward, []
    det._forward = lambda x, r: scored.append(r.shape[1]) or forward(x, r)
    probs, boxes = det.score_proposals(images, rois)
    assert scored == [2]
    want_p, want_d = forward(images, rois)
    np.testing.assert_allclose(probs, want_p, atol=1e-6)
    np.testing.assert_allclose(boxes, P.decode_boxes(rois.reshape(-1, 4), want_d.reshape(-1, 4)).reshape(rois.shape),
                               atol=1e-4)
    assert probs[0, 0] == probs[0, 1] == probs[0, 2] and not np.allclose(boxes[0, 0], boxes[0, 1])
    assert probs[1, 3] != probs[1, 0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from ofrnn.localization import train_detector

    rng = np.random.default_rng(6)
    frames, boxes, _ = zip(*[ring_frame(rng) for _ in range(12)])
    det, record = train_detector(frames, np.array(boxes), tiny_cfg(), seed=0, progress=False)
    folder = tmp_path_factory.mktemp("bundle")
    det.save(folder)
    return det, record, folder


def test_training_lowers_the_multitask_loss(trained):
    _, record, _ = trained
    loss = record["history"]["loss"]
    assert np.isfinite(loss).all() and loss[-1] < loss[0]
    assert {"cls_loss", "bbox_loss"} <= set(record["history"])


def test_bundle_round_trip_gives_identical_detections(trained):
    from ofrnn.localization import load_detector

    det, _, folder = trained
    assert (folder / "detector.keras").is_file() and json.loads((folder / "detector.json").read_text())["input_size"] == 64
    again = load_detector(folder)  # default safe_mode: no Lambda layers, registered RoI pooling
    frame, _, _ = ring_frame(np.random.default_rng(7))
    a, b = det.detect(frame), again.detect(frame)
    np.testing.assert_allclose(a["proposal_scores"], b["proposal_scores"], atol=1e-6)
    np.testing.assert_allclose(a["box"], b["box"], atol=1e-4)
    assert a["box"][2] > a["box"][0] and a["box"][3] > a["box"][1]


def test_a_bundle_of_an_older_training_revision_loads_with_a_warning(trained, tmp_path):
    """Bundles record the training revision; one trained before it existed (revision 1, boxes biased
    by the old augmentation) still loads, with a warning naming the file, and a current one loads
    silently."""
    import shutil
    import warnings

    from ofrnn.localization import TRAINING_REVISION, load_detector

    _, _, folder = trained
    settings = json.loads((folder / "detector.json").read_text())
    assert settings["training_revision"] == TRAINING_REVISION
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_detector(folder)
    old = tmp_path / "old"
    shutil.copytree(folder, old)
    del settings["training_revision"]
    (old / "detector.json").write_text(json.dumps(settings))
    with pytest.warns(UserWarning, match=r"detector\.json: detector of training revision 1, older than"):
        load_detector(old)


def test_fine_tuning_starts_from_the_given_detector_and_leaves_it_unchanged(trained):
    from ofrnn.localization import train_detector

    det, _, _ = trained
    before = [w.copy() for w in det.model.get_weights()]
    rng = np.random.default_rng(9)
    frames, boxes, _ = zip(*[ring_frame(rng) for _ in range(4)])
    cfg = tiny_cfg()
    cfg["train"].update(epochs=1, steps_per_epoch=1, learning_rate=1e-12)  # a step that cannot move the weights
    tuned, _ = train_detector(frames, np.array(boxes), cfg, seed=1, progress=False, initial=det)
    for a, b, c in zip(before, det.model.get_weights(), tuned.model.get_weights()):
        np.testing.assert_array_equal(a, b)  # the initial detector is copied, not trained in place
        np.testing.assert_allclose(a, c, atol=1e-6)  # the tuned one starts from its weights


def test_localize_gives_one_transform_per_sequence(trained):
    det, _, _ = trained
    frame, _, _ = ring_frame(np.random.default_rng(8))
    cine = np.stack([frame] * 5)
    out = det.localize(cine, mode="fast")
    assert len(out["frames"]) == min(len(cine), det.settings["fast_frames"]) and out["transform"].size == 64
    assert out["transform"].side >= 64
    with pytest.raises(ValueError, match="T, H, W"):
        det.localize(frame)


def test_evaluation_scores_the_sequence_box_the_crop_is_cut_around(trained):
    from ofrnn.experiments.localization import evaluate_set, set_metrics

    det, _, _ = trained
    frame, box, myo = ring_frame(np.random.default_rng(8))
    moved = np.roll(myo, 3, axis=1)  # a second annotated frame whose truth lies 3 px to the right
    seq = dict(id="s", cine=np.stack([frame] * 5), spacing=(2.0, 2.0), masks={0: {"o": myo}, 2: {"o": moved}})
    rows, scores, labels = evaluate_set(det, [seq], quality_frames=0, rng=np.random.default_rng(0), desc="t")
    found = det.localize(seq["cine"], mode="fast")["box"]
    for row, truth in zip(rows, (box, box + [0, 3, 0, 3])):
        c = (found[:2] + found[2:]) / 2 - (truth[:2] + truth[2:]) / 2
        assert row["centre_px_sequence"] == pytest.approx(np.hypot(*c), abs=1e-6)
        assert row["centre_mm_sequence"] == pytest.approx(2 * np.hypot(*c), abs=1e-6)
    m = set_metrics(rows, scores, labels)
    assert m["detection_sequence"]["centre_px"]["n"] == 2


def test_load_detector_names_the_missing_file(tmp_path):
    from ofrnn.localization import load_detector

    with pytest.raises(OfrnnError, match="detector.keras"):
        load_detector(tmp_path)
    (tmp_path / "detector.keras").write_text("not a zip")
    (tmp_path / "detector.json").write_text("{}")
    with pytest.raises(OfrnnError, match="detector.json: input_size"):
        load_detector(tmp_path)


def test_cli_localize_bad_input_is_one_clear_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "ofrnn", "localize", "--model", str(tmp_path), "--cohort",
                        str(tmp_path / "missing.h5"), "--out", str(tmp_path / "out.h5")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ofrnn: error: ") and "Traceback" not in r.stderr
    assert not (tmp_path / "out.h5").exists()


def test_cli_localize_writes_a_cohort_of_roi_sequences(trained, tmp_path):
    from ofrnn.cli import main
    from ofrnn.roi import RoiTransform
    from ofrnn.store import Subject, open_cohort, write_cohort

    rng = np.random.default_rng(9)
    subjects = []
    for k in range(2):
        frame, box, myo = ring_frame(rng)
        T = 4
        subjects.append(Subject(id=f"s{k}", cine=np.stack([frame] * T), spacing_mm=(1.5, 1.5), level="unknown",
                                frame_times_ms=np.arange(T) * 30.0, myocardium=myo.astype(np.uint8),
                                lv_box=np.tile(box.astype(np.int32), (T, 1))))
    write_cohort(tmp_path / "in.h5", subjects, source="dicom")
    _, _, bundle = trained
    assert main(["localize", "--model", str(bundle), "--cohort", str(tmp_path / "in.h5"),
                 "--out", str(tmp_path / "roi.h5")]) == 0
    with open_cohort(tmp_path / "roi.h5") as c:
        assert c.ids == ["s0", "s1"]
        s = c.read("s0")
        assert s.cine.shape == (4, 64, 64) and s.myocardium.shape == (64, 64)
        t = RoiTransform(**json.loads(s.attrs["roi_transform"]))
        np.testing.assert_allclose(s.spacing_mm, (1.5 * t.scale, 1.5 * t.scale))
        np.testing.assert_array_equal(s.myocardium, crop(subjects[0].myocardium, t, order=0))
        assert json.loads(s.attrs["roi_image_shape"]) == [96, 96] and s.attrs["localize_mode"] == "fast"


def test_box_vote_averages_overlapping_boxes_by_score():
    b = np.array([[0, 0, 10, 10], [2, 2, 12, 12], [50, 50, 60, 60]], float)
    np.testing.assert_allclose(P.box_vote(b, [0.6, 0.2, 0.9], 0, iou_threshold=0.3), [0.5, 0.5, 10.5, 10.5])
    np.testing.assert_allclose(P.box_vote(b, [0.6, 0.2, 0.9], 2), b[2])


def _seed_metrics(seed, containment, cohort="abc", slices=19, lr=0.0005):
    def one(pct):
        return dict(slices=slices, frames=2 * slices, proposals=dict(sensitivity=90.0, specificity=97.0),
                    detection_fast=dict(centre_mm=dict(median=5.0 + seed), centre_px=dict(median=3.0),
                                        iou=dict(median=0.8)),
                    containment_myocardium=dict(percent=pct + 5, frames=slices),
                    containment_myocardium_per_frame=dict(percent=pct, frames=slices),
                    containment_myocardium_motion_prior=dict(percent=pct + 5, frames=slices))
    return dict(seed=seed, cohort_sha256=cohort, sets=dict(sunnybrook=one(containment)),
                settings=dict(seed=seed, train=dict(learning_rate=lr), finetune=dict(enabled=seed == 0),
                              detect=dict(fast_frames=9, motion_prior=0.5), evaluate=dict(model=f"m{seed}")),
                finetuned=dict(train_patients=[61, 80], sets=dict(sunnybrook=one(99.0))) if seed == 0 else None)


def test_seed_summary_is_the_mean_and_sample_sd_of_the_runs(tmp_path):
    from ofrnn.experiments import localization_seeds as LS

    runs = []
    for seed, pct in ((0, 80.0), (1, 90.0), (2, 70.0)):
        (tmp_path / f"s{seed}").mkdir()
        (tmp_path / f"s{seed}" / "metrics.json").write_text(json.dumps(_seed_metrics(seed, pct)))
        runs.append(str(tmp_path / f"s{seed}"))
    r = LS.collect(runs)
    c = r["sets"]["sunnybrook"]["containment_per_frame"]
    assert c["mean"] == pytest.approx(80.0) and c["sd"] == pytest.approx(10.0) and c["values"] == [80.0, 90.0, 70.0]
    assert r["sets"]["sunnybrook"]["containment_motion_prior"]["mean"] == pytest.approx(85.0)
    assert r["sets"]["sunnybrook"]["containment"]["mean"] == pytest.approx(85.0)  # the configured rule's
    assert r["rule"] == dict(fast_frames=9, motion_prior=0.5, motion_proposals=[])  # runs that rescored other bundles still compare
    assert r["sets"]["sunnybrook"]["centre_mm"]["mean"] == pytest.approx(6.0)
    assert r["seeds"] == [0, 1, 2] and r["finetuned"]["seed"] == 0
    text = LS.report(r)
    assert "80.0 ± 10.0" in text and "Fine-tuned variant" in text and "061-080" in text and "m^0.5" in text


def test_seed_summary_refuses_runs_on_other_cohorts_or_sets(tmp_path):
    from ofrnn.experiments import localization_seeds as LS

    for name, m in (("a", _seed_metrics(0, 80.0)), ("b", _seed_metrics(1, 80.0, cohort="xyz")),
                    ("c", _seed_metrics(1, 80.0, slices=7)), ("d", _seed_metrics(0, 70.0)),
                    ("e", _seed_metrics(2, 80.0, lr=0.001))):
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.json").write_text(json.dumps(m))
    with pytest.raises(OfrnnError, match="different cohorts"):
        LS.collect([str(tmp_path / "a"), str(tmp_path / "b")])
    with pytest.raises(OfrnnError, match="other real sets"):
        LS.collect([str(tmp_path / "a"), str(tmp_path / "c")])
    with pytest.raises(OfrnnError, match="repeat a seed"):
        LS.collect([str(tmp_path / "a"), str(tmp_path / "d")])
    with pytest.raises(OfrnnError, match="other settings"):
        LS.collect([str(tmp_path / "a"), str(tmp_path / "e")])
    with pytest.raises(OfrnnError, match="missing"):
        LS.collect([str(tmp_path / "a"), str(tmp_path / "nothing")])


def test_motion_prior_power_reads_exponents_and_old_flags():
    from ofrnn.errors import OfrnnError
    from ofrnn.localization import motion_prior_power

    assert motion_prior_power({}) == 0.0
    assert motion_prior_power(dict(motion_prior=False)) == 0.0  # bundles written before the exponent
    assert motion_prior_power(dict(motion_prior=True)) == 1.0
    assert motion_prior_power(dict(motion_prior=0.25)) == 0.25
    for bad in (-0.5, "strong", float("nan"), [1]):
        with pytest.raises(OfrnnError, match="motion_prior"):
            motion_prior_power(dict(motion_prior=bad))


def test_motion_prior_exponent_turns_the_ranking_from_a_static_distractor_to_the_moving_lv():
    """Two disjoint boxes: a static one the network likes more (p 0.9) and a moving one (p 0.7). The
    paper's ranking (no prior) keeps the static box; with m^gamma, m 1 in the moving box and 0.2 in the
    static one, the moving box wins once 0.7 > 0.9 * 0.2^gamma, i.e. gamma > 0.156."""
    from ofrnn.localization import Detector

    det = Detector(None, dict(nms_iou=0.3, vote_iou=0.5))
    props = np.array([[10, 10, 30, 30], [60, 60, 80, 80]], float)
    scored = [((100, 100), 1.0, np.zeros(2), props, np.array([0.9, 0.7]), props.copy())]
    m = np.full((100, 100), 0.2)
    m[55:85, 55:85] = 1.0
    picks = {g: det._rank(scored, None if g == 0 else m ** g)[0]["box"] for g in (0, 0.1, 0.25, 1)}
    np.testing.assert_allclose(picks[0], props[0])
    np.testing.assert_allclose(picks[0.1], props[0])  # 0.9 * 0.2^0.1 = 0.77 > 0.7
    np.testing.assert_allclose(picks[0.25], props[1])  # 0.9 * 0.2^0.25 = 0.60 < 0.7
    np.testing.assert_allclose(picks[1], props[1])


def test_sequence_rule_choice_takes_the_best_mean_and_breaks_ties_to_the_paper():
    from ofrnn.experiments.localization_rule import choose

    off, on = (), (0.2, 0.4)
    table = {(3, 0.0, on): dict(a=90.0, b=100.0), (3, 0.5, off): dict(a=96.0, b=94.0),
             (9, 0.25, off): dict(a=97.0, b=93.0), (9, 1.0, off): dict(a=99.0, b=80.0)}
    assert choose(table) == (9, 0.25, off)  # 95.0 three times: no motion proposals first, then the smaller gamma
    table[3, 0.0, off] = dict(a=90.0, b=100.0)
    assert choose(table) == (3, 0.0, off)  # 95.0: the smallest gamma among those without proposals
    table[3, 0.0, off] = dict(a=90.0, b=99.0)
    table[3, 0.25, off] = dict(a=97.0, b=93.0)
    assert choose(table) == (3, 0.25, off)  # same gamma as (9, 0.25), fewer frames
    table[3, 1.0, on] = dict(a=99.0, b=92.0)
    assert choose(table) == (3, 1.0, on)  # the best mean, whatever it needs


def test_rule_grid_scores_each_set_of_motion_proposals_in_one_pass(monkeypatch, tmp_path):
    """The rule's grid: every set of motion-proposal levels comes from one detection pass per slice
    (here a stub that finds the LV only with proposals), the detector's own setting untouched and
    used when no sets are given."""
    from ofrnn.experiments import localization_rule as LR

    class Stub:
        settings = dict(motion_proposals=[0.3], fast_frames=3)
        calls = 0

        def localize_grid(self, cine, *, frame_counts, motion_priors, proposal_sets):
            self.calls += 1
            return {(n, g, p): dict(transform=bool(p)) for n in frame_counts for g in motion_priors
                    for p in proposal_sets}

    monkeypatch.setattr(LR, "_contained", lambda mask, transform: transform)
    stub = Stub()
    seqs = [dict(cine=None, masks={0: {"o": 1}, 5: {"i": 1}})]  # one frame with an epicardium to score
    out = LR.containment(stub, seqs, fast_frames=[3, 9], gammas=[0.0, 1.0], proposal_sets=[(), (0.2, 0.4)], desc="t")
    assert out == {(k, g, p): 100.0 * bool(p) for k in (3, 9) for g in (0.0, 1.0) for p in ((), (0.2, 0.4))}
    assert stub.calls == 1
    assert stub.settings == dict(motion_proposals=[0.3], fast_frames=3)
    assert LR.rule_key(3, 0.25, ()) == "3/0.25/off" and LR.rule_key(9, 1.0, [0.4, 0.2]) == "9/1/0.2, 0.4"
    assert LR.containment(stub, seqs, fast_frames=[3], gammas=[0.0], desc="t") == {(3, 0.0, (0.3,)): 100.0}

    # the report marks the chosen row and says whether the settings file holds it
    rows = {(k, g, p): dict(**{s: dict(mean=90.0 + k, values=[90.0 + k]) for s in LR.SETS}, score=90.0 + k)
            for k in (3, 9) for g in (0.0,) for p in ((), (0.2, 0.4))}
    r = dict(runs=["a"], seeds=[0], simulated="t.h5", grid=dict(fast_frames=[3, 9], motion_prior=[0.0],
                                                                 motion_proposals=[[], [0.2, 0.4]]),
             sizes={s: dict(slices=1, frames=1) for s in LR.SETS},
             table={LR.rule_key(*key): v for key, v in rows.items()},
             chosen=[9, 0.0, [0.2, 0.4]], configured=[9, 0.0, [0.2, 0.4]], versions={}, seconds=1.0,
             timing=dict(sequence_shape=[25, 8, 8], threads=2, gamma=0.0, motion_proposals=[0.2, 0.4],
                         seconds={"3": 0.1, "9": 0.2}))
    text = LR.report(r)
    assert "| 0.2, 0.4 | 9 | 0 **(chosen)** |" in text and text.count("(chosen)") == 1
    assert "(the chosen rule)" in text
    assert "not the chosen rule" in LR.report(dict(r, configured=[9, 0.0, []]))
    # a grid of motion proposals that is not a list of lists of levels is one clear error
    config = dict(runs=["a"], simulated="t.h5", fast_frames=[3], motion_prior=[0], threads=2,
                  motion_proposals=[0.2, 0.4])
    with pytest.raises(OfrnnError, match="motion_proposals"):
        LR.run(config, "full", tmp_path)


def test_apply_sequence_rule_sets_only_the_rule():
    from ofrnn.localization import Detector, apply_sequence_rule

    det = Detector(None, dict(fast_frames=3, motion_prior=False, nms_iou=0.3))
    assert apply_sequence_rule(det, dict(fast_frames=9, motion_prior=0.5, nms_iou=0.7))
    assert det.settings == dict(fast_frames=9, motion_prior=0.5, nms_iou=0.3)
    assert not apply_sequence_rule(det, dict(fast_frames=9, motion_prior=0.5))


def test_localize_variants_detects_on_fast_frames_and_raises_the_map_to_gamma():
    """localize_variants with the network and the motion map stubbed: the frame count follows the
    override (else the setting), and each exponent ranks as m^gamma says (see the _rank test)."""
    from ofrnn.localization import Detector

    det = Detector(None, dict(fast_frames=3, nms_iou=0.3, vote_iou=0.5, sequence_min_iou=0.3, roi_margin=0.15))
    props = np.array([[10, 10, 30, 30], [60, 60, 80, 80]], float)
    seen = []

    def score(frames, *, mode, shared_proposals, extra=None):
        seen.append(len(frames))
        return [((100, 100), 1.0, np.zeros(2), props, np.array([0.9, 0.7]), props.copy()) for _ in frames]

    m = np.full((100, 100), 0.2)
    m[55:85, 55:85] = 1.0
    det._score_frame_sets = lambda frames, *, mode, shared_proposals, extras: [
        score(frames, mode=mode, shared_proposals=shared_proposals, extra=e) for e in extras]
    det.motion_map = lambda cine: m
    cine = np.zeros((25, 100, 100), np.float32)
    out = det.localize_variants(cine, mode="fast", motion_priors=(0.0, 0.1, 0.5), fast_frames=9)
    assert seen == [9] and len(out[0.5]["frames"]) == 9
    np.testing.assert_allclose(out[0.0]["box"], props[0])
    np.testing.assert_allclose(out[0.1]["box"], props[0])
    np.testing.assert_allclose(out[0.5]["box"], props[1])
    det.settings["motion_prior"] = 0.5
    assert len(det.localize(cine)["frames"]) == 3 and seen[-1] == 3  # the setting, when not overridden
    np.testing.assert_allclose(det.localize(cine)["box"], props[1])
    np.testing.assert_allclose(det.localize(cine, motion_prior=0)["box"], props[0])


def test_localize_grid_tries_each_set_of_motion_proposals_in_the_same_pass():
    """proposal_sets: the motion boxes of each set's levels (none for ()) go to one scoring call, the
    motion map is computed for them even with no motion prior, and the grid is keyed by the set."""
    from ofrnn.localization import Detector

    det = Detector(None, dict(fast_frames=3, nms_iou=0.3, vote_iou=0.5, sequence_min_iou=0.3, roi_margin=0.15,
                              input_size=48, percentiles=[1, 99], motion_proposals=[0.9]))
    props = np.array([[10, 10, 30, 30], [60, 60, 80, 80]], float)
    calls, maps = [], []

    def score_sets(frames, *, mode, shared_proposals, extras):
        calls.append([None if e is None else len(e) for e in extras])
        # the LV found only where a set brought motion boxes
        return [[((100, 100), 1.0, np.zeros(2), props, np.array([0.9, 0.7] if len(e) else [0.7, 0.9]),
                  props.copy()) for _ in frames] for e in extras]

    det._score_frame_sets = score_sets
    det.motion_map = lambda cine: maps.append(1) or np.ones((48, 48))
    det.motion_proposals = lambda cine, motion=None, levels=None: np.zeros((0, 4)) if not levels else props[:1]
    cine = np.zeros((25, 100, 100), np.float32)
    grid = det.localize_grid(cine, frame_counts=(3, 9), motion_priors=(0.0,), proposal_sets=[(), (0.2, 0.4)])
    assert calls == [[0, 1]] and maps == [1]
    assert set(grid) == {(n, 0.0, p) for n in (3, 9) for p in ((), (0.2, 0.4))}
    np.testing.assert_allclose(grid[3, 0.0, (0.2, 0.4)]["box"], props[0])
    np.testing.assert_allclose(grid[3, 0.0, ()]["box"], props[1])
    # without sets: the detector's own setting, keyed (n, gamma) as before
    assert set(det.localize_grid(cine, frame_counts=(3,), motion_priors=(0.0,))) == {(3, 0.0)}


def test_localize_grid_scores_every_frame_count_in_one_pass_as_localize_variants_would():
    from ofrnn.localization import Detector

    det = Detector(None, dict(fast_frames=3, nms_iou=0.3, vote_iou=0.5, sequence_min_iou=0.3, roi_margin=0.15))
    rng = np.random.default_rng(4)
    table = {}  # each frame its own boxes and scores, so merging the wrong frames moves the sequence box
    for t in range(25):
        props = np.array([[10 + t, 12 + t % 5, 40 + t, 42 + t % 5], [60, 60, 80, 80]], float)
        table[t] = ((100, 100), 1.0, np.zeros(2), props, rng.uniform(0.5, 1.0, 2), props.copy())
    seen = []

    def score(frames, *, mode, shared_proposals, extra=None):
        seen.append(len(frames))
        return [table[int(f[0, 0])] for f in frames]  # pixel (0, 0) holds the frame's index

    m = np.full((100, 100), 0.2)
    m[55:85, 55:85] = 1.0
    det._score_frame_sets = lambda frames, *, mode, shared_proposals, extras: [
        score(frames, mode=mode, shared_proposals=shared_proposals, extra=e) for e in extras]
    det.motion_map = lambda cine: m
    cine = np.zeros((25, 100, 100), np.float32)
    cine[:, 0, 0] = np.arange(25)
    grid = det.localize_grid(cine, frame_counts=(3, 9), motion_priors=(0.0, 0.5))
    assert seen == [9]  # one pass: the 3 frames (0, 12, 24) are among the 9
    for n in (3, 9):
        one = det.localize_variants(cine, mode="fast", motion_priors=(0.0, 0.5), fast_frames=n)
        assert len(grid[n, 0.5]["frames"]) == n
        for g in (0.0, 0.5):
            np.testing.assert_array_equal(grid[n, g]["frames"], one[g]["frames"])
            np.testing.assert_allclose(grid[n, g]["box"], one[g]["box"])
    assert not np.allclose(grid[3, 0.0]["box"], grid[9, 0.0]["box"])  # the counts do merge different frames
