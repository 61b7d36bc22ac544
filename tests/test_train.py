"""OF-RNN end to end on a tiny analytic cohort: pipeline, training that beats chance, predict, CLI errors.

The toy cohort: a ring-shaped LV myocardium that thickens and moves inwards over the cycle, except in
an akinetic (infarcted) sector that keeps its end-diastolic position; bright blood pool, mid-grey
myocardium, textured background, Gaussian noise. Exact forward flows come with it (the store needs
them; the ground-truth flow path of the pipeline is checked on them); the tiny model itself trains on
flows estimated by :mod:`ofrnn.flow`, so it can also predict on DICOM folders, which carry none.
"""
import json
import re
from pathlib import Path

import numpy as np
import pytest

from ofrnn.store import Subject, open_cohort, write_cohort

flow_mod = pytest.importorskip("ofrnn.flow", reason="ofrnn.flow (global motion features, issue 3) not available")
if not hasattr(flow_mod, "global_features"):
    pytest.skip("ofrnn.flow.global_features (issue 3) not available yet", allow_module_level=True)

T, H, W = 25, 72, 72


def _radii(t, akinetic):
    """Endo- and epicardial radius at frame t (area-preserving wall); frozen at ED when akinetic."""
    s = 0.0 if akinetic else np.sin(np.pi * t / (T - 1))
    r_in = 11.0 - 4.0 * s
    r_out = np.sqrt(r_in ** 2 + 18.0 ** 2 - 11.0 ** 2)
    return r_in, r_out


def toy_subject(i, *, infarct, level="mid", seed=0):
    rng = np.random.default_rng(seed * 1000 + i)
    cy, cx = 36 + rng.uniform(-3, 3), 36 + rng.uniform(-3, 3)
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    rho = np.hypot(yy - cy, xx - cx)
    theta = np.arctan2(yy - cy, xx - cx)
    a0 = rng.uniform(-np.pi, np.pi)
    sector = (np.angle(np.exp(1j * (theta - a0))) % (2 * np.pi)) < (np.pi / 2 if infarct else 0)
    texture = 0.5 + 0.1 * np.sin(yy / 3.0) * np.cos(xx / 4.0)
    cine = np.empty((T, H, W), np.float32)
    myo_t = np.empty((T, H, W), np.uint8)
    cav_t = np.empty((T, H, W), np.uint8)
    boxes = np.empty((T, 4), np.int32)
    flow = np.zeros((T - 1, 2, H, W), np.float32)
    for t in range(T):
        r_in = np.where(sector, _radii(t, True)[0], _radii(t, False)[0])
        r_out = np.sqrt(r_in ** 2 + 18.0 ** 2 - 11.0 ** 2)
        cav = rho < r_in
        myo = (rho >= r_in) & (rho < r_out)
        img = np.where(cav, 1.0, np.where(myo, 0.25, texture))
        cine[t] = img + rng.normal(0, 0.03, (H, W))
        myo_t[t], cav_t[t] = myo, cav
        ys, xs = np.nonzero(myo | cav)
        boxes[t] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        if t < T - 1:
            r_in1 = np.where(sector, _radii(t + 1, True)[0], _radii(t + 1, False)[0])
            r2 = np.sqrt(np.maximum(rho ** 2 + r_in1 ** 2 - r_in ** 2, 0))  # wall volume conserved
            d = np.where(rho < r_out + 2, r2 - rho, 0.0)
            flow[t, 0] = d * np.sin(theta)
            flow[t, 1] = d * np.cos(theta)
    myo0 = myo_t[0]
    aha = np.where(myo0, 7 + ((theta + np.pi) // (np.pi / 3)).astype(int) % 6, 0).astype(np.uint8)
    return Subject(id=f"toy{i:02d}", cine=cine, spacing_mm=(1.5, 1.5), level=level,
                   frame_times_ms=np.arange(T) * 40.0, infarct=(myo0 & sector).astype(np.uint8), myocardium=myo0,
                   aha_segments=aha, lv_box=boxes, myocardium_t=myo_t, lv_cavity_t=cav_t, flow=flow,
                   flow_valid=myo_t[:-1].copy())


@pytest.fixture(scope="module")
def toy_cohort(tmp_path_factory):
    path = tmp_path_factory.mktemp("toy") / "toy.h5"
    levels = ["apical", "mid", "basal"]
    write_cohort(path, [toy_subject(i, infarct=i % 4 != 3, level=levels[i % 3]) for i in range(8)],
                 source="simulated")
    return path


# local_frame "image": the toy wall is one flat grey band, so a patch that follows the tissue sees
# only the band's edges and the flows are ill-posed inside it (aperture); the fixed patch sees the
# wall move through it. The tissue patches have their own tests below.
TINY = dict(flow="estimated", pixels_per_subject=300, lstm_units=8, lstm_layers=4, input_dropout=0.0,
            encoder_sizes=[16, 8, 8], batch_size=128, lstm_epochs=3, ae_epochs=2, ae_samples=1000,
            finetune_epochs=3, learning_rate=3e-3, val_fraction=0.2, eval_batch=4096, local_frame="image")

TINY_LOCALIZER = """
[profile.tiny.data]
frames_per_subject = 2
[profile.tiny.model]
input_size = 64
filters = [8, 8, 8, 8, 8]
fc_units = 16
stride = 8
[profile.tiny.detect]
fast_size = 64
[profile.tiny.train]
epochs = 2
steps_per_epoch = 8
images_per_batch = 2
rois_per_image = 32
learning_rate = 0.002
"""


def test_prepare_crops_normalises_and_keeps_labels(toy_cohort, tmp_path):
    from ofrnn.pipeline import prepare_cohort, sample_pixels

    subs = prepare_cohort(toy_cohort, frames=25, flow="gt", cache_dir=tmp_path, progress=False)
    again = prepare_cohort(toy_cohort, frames=25, flow="gt", cache_dir=tmp_path, progress=False)  # from cache
    assert len(list(tmp_path.glob("*.h5"))) == 1
    r = subs[0]
    assert r.roi.shape == (25, 64, 64) and r.flows.shape == (24, 2, 64, 64)
    np.testing.assert_allclose(np.percentile(r.roi, [1, 99]), [0, 1], atol=1e-5)
    np.testing.assert_array_equal(again[0].roi, r.roi)
    assert r.infarct.sum() > 0 and set(np.unique(r.infarct)) <= {0, 1}
    s = sample_pixels(subs, per_subject=200, fractions=[0.3, 0.3, 0.2, 0.2], seed=0)
    assert np.all(s["weight"] == 1)
    n_inf = [min(int(r.infarct.sum()), 60) for r in subs]  # the infarct quota is 0.3 * 200
    assert np.count_nonzero(s["label"] == 1) == sum(n_inf)
    s = sample_pixels(subs, per_subject=200, fractions=[0.3, 0.3, 0.2, 0.2], seed=0, weights="represent",
                      infarct_share=0.5)
    w = s["weight"]
    assert w.mean() == pytest.approx(1.0, rel=1e-5)
    assert w[s["label"] == 1].sum() == pytest.approx(w[s["label"] == 0].sum(), rel=1e-4)  # class-balanced
    assert np.all(subs[0].infarct[s["y"][s["subject"] == 0], s["x"][s["subject"] == 0]] ==
                  s["label"][s["subject"] == 0])


def test_resample_frames_keeps_endpoints():
    from ofrnn.pipeline import resample_frames

    seq = np.arange(20, dtype=np.float32)[:, None, None] * np.ones((1, 2, 2), np.float32)
    out = resample_frames(seq, 25)
    assert out.shape == (25, 2, 2) and out[0, 0, 0] == 0 and out[-1, 0, 0] == 19
    assert np.all(np.diff(out[:, 0, 0]) > 0)


@pytest.fixture(scope="module")
def tiny_run(toy_cohort, tmp_path_factory):
    from ofrnn.settings import load_profile
    from ofrnn.train import run_fold

    # a tiny heart localization profile appended to the real settings: the bundle gets its own localizer
    folder = tmp_path_factory.mktemp("fold")
    settings = folder / "localization.toml"
    settings.write_text((Path(__file__).parents[1] / "experiments" / "localization.toml").read_text() + TINY_LOCALIZER)
    cfg = load_profile("quick", **TINY, localizer_settings=str(settings), localizer_profile="tiny")
    out = folder / "holdout"
    return out, cfg, run_fold(toy_cohort, "holdout", cfg, out, cache_dir=folder / "cache", progress=False)


def test_fold_localizer_is_reused_under_a_new_sequence_rule(toy_cohort, tiny_run):
    """The sequence rule (frames detected on, motion-prior exponent) does not touch training: a new
    rule reuses the fold's trained localizer and the reused one carries the new rule."""
    from ofrnn.localization import load_detector
    from ofrnn.train import fold_localizer

    out, cfg, res = tiny_run
    folder = out.parent
    text = (folder / "localization.toml").read_text()
    other = folder / "localization-rule.toml"
    for key, value in (("fast_frames", "4"), ("motion_prior", "1.5")):
        text, n = re.subn(rf"(?m)^{key} = \S+", f"{key} = {value}", text)
        assert n == 1, key
    other.write_text(text)
    ids = res["split"]["train"] + res["split"]["val"]
    det, where, record = fold_localizer(toy_cohort, ids, cfg.replace(localizer_settings=str(other)),
                                        cache_dir=folder / "cache", progress=False)
    assert record["reused"] and (det.settings["fast_frames"], det.settings["motion_prior"]) == (4, 1.5)
    assert load_detector(where).settings["motion_prior"] == 1.5  # the bundle copied into a fold gets it too


def test_fold_localizer_trained_by_an_older_training_revision_is_not_reused(toy_cohort, tiny_run, monkeypatch):
    """A change to how detectors are trained (TRAINING_REVISION) retrains the fold's localizer
    rather than reusing one the old code trained under the same settings."""
    import ofrnn.localization as L
    from ofrnn.train import fold_localizer

    out, cfg, res = tiny_run
    ids = res["split"]["train"] + res["split"]["val"]
    cache = out.parent / "cache"
    assert fold_localizer(toy_cohort, ids, cfg, cache_dir=cache, progress=False)[2]["reused"]

    class Retrained(Exception):
        pass

    def refuse(*args, **kwargs):
        raise Retrained

    monkeypatch.setattr(L, "TRAINING_REVISION", L.TRAINING_REVISION + 1)
    monkeypatch.setattr(L, "train_detector", refuse)
    with pytest.raises(Retrained):
        fold_localizer(toy_cohort, ids, cfg, cache_dir=cache, progress=False)


def test_tiny_train_beats_chance_and_predicts(toy_cohort, tiny_run, tmp_path):
    from ofrnn.errors import OfrnnError
    from ofrnn.predict import load_bundle, predict_subjects
    from ofrnn.store import open_cohort
    from ofrnn.train import run_fold

    out, cfg, res = tiny_run
    m = res["metrics"]
    assert len(res["split"]["train"]) == 4  # 8 subjects: 1/3 test, then 1 for validation
    assert m["myocardium"]["roc_auc"] > 0.75, m["myocardium"]  # better than chance (0.5)
    # all ROI pixels, with 4 training subjects and 3 epochs: 0.75-0.80 depending on which subject
    # validates; chance is 0.5
    assert m["roi"]["roc_auc"] > 0.7, m["roi"]
    for f in ("model.keras", "ofrnn_model.json", "metrics.json", "report.md", "roc_pr.png", "train_log.csv",
              "split.json"):
        assert (out / f).is_file(), f
    report = (out / "report.md").read_text()
    for part in ("## What this is", "holdout", "simulated", "What is comparable with the paper", "95 %",
                 "| subject |", "epoch kept", "training.png", "| package | version |"):
        assert part in report, part
    assert res["report_version"] >= 2 and set(res["training"]) == {"local", "finetune"}
    # the bundle carries the fold's own heart localization layers, trained on its training subjects only
    e2e = res["metrics_detected_roi"]
    assert e2e["localizer"]["subjects"] == len(res["split"]["train"]) + len(res["split"]["val"])
    assert (out / "localizer" / "detector.keras").is_file() and "End to end" in report
    assert 0 <= e2e["coverage"]["lv_held"] <= 1 and e2e["n_subjects"] == len(res["split"]["test"])
    assert {o["reason"] for o in res["overlays"]} >= {"best Dice", "worst Dice"}
    # a finished fold is not redone; other settings in the same folder are refused
    assert run_fold(toy_cohort, "holdout", cfg, out, progress=False)["timings"] == res["timings"]
    with pytest.raises(OfrnnError, match="other settings"):
        run_fold(toy_cohort, "holdout", cfg.replace(lstm_units=9), out, progress=False)
    # nor is a fold trained on a cohort that was rebuilt since (same path, new content)
    import os

    st = os.stat(toy_cohort)
    os.utime(toy_cohort, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    try:
        with pytest.raises(OfrnnError, match="content"):
            run_fold(toy_cohort, "holdout", cfg, out, progress=False)
    finally:
        os.utime(toy_cohort, ns=(st.st_atime_ns, st.st_mtime_ns))

    net, config = load_bundle(out)
    assert config["local_frame"] == cfg.local_frame  # prediction builds P_l as training did
    with open_cohort(toy_cohort) as c:
        subs = [c.read(s) for s in c.ids[:2]]
    pred_dir = tmp_path / "pred"
    r = predict_subjects(net, config, subs, pred_dir, progress=False)
    import h5py

    with h5py.File(pred_dir / "predictions.h5") as f:
        assert json.loads(f.attrs["model"])["model_sha256"] == config["model_sha256"]
        assert f.attrs["threshold"] == pytest.approx(config["threshold"])
        g = f["subjects/toy00"]
        assert g["infarct_prob"].shape == (H, W) and g["infarct_prob"].dtype == np.float32
        assert tuple(g["infarct_prob"].attrs["spacing_mm"]) == (1.5, 1.5)
        pred = g["infarct_pred"][()]
        assert pred.dtype == np.uint8
        box = g["roi_box"][()]
        assert box.shape == (4,) and box[2] > box[0] and box[3] > box[1]
        prob, roi = g["infarct_prob"][()], g["roi_mask"][()].astype(bool)
        # outside the ROI: not scored (NaN), never "probability 0"; inside: a probability
        assert np.isnan(prob[~roi]).all() and np.isfinite(prob[roi]).all() and not pred[~roi].any()
    summary = json.loads((pred_dir / "toy00.json").read_text())
    # the infarct area counts predicted pixels inside the myocardium only
    assert summary["infarct_pixels"] == np.count_nonzero(pred.astype(bool) & subs[0].myocardium.astype(bool))
    assert summary["infarct_area_mm2"] == pytest.approx(summary["infarct_pixels"] * 2.25)
    assert summary["region"].startswith("myocardium") and isinstance(summary["infarct_present"], bool)
    assert summary["model"]["model_sha256"] == config["model_sha256"] and summary["frame"].startswith("frame 0")
    _assert_private_and_readable([out, pred_dir], [str(toy_cohort), str(toy_cohort.parent), toy_cohort.name])
    assert (pred_dir / "toy00.png").is_file()
    assert set(r["timings"][0]) >= {"roi", "flow", "features", "network", "total"}
    scored = json.loads((pred_dir / "metrics.json").read_text())  # labelled cohort: scored as in training
    assert scored["n_subjects"] == 2 and 0 <= scored["roi"]["accuracy"] <= 1
    assert scored["provenance"]["roi_source"] == "gt"


def _output_texts(f):
    """Every text a reader of ``f`` can get at: the raw bytes, and inside containers the decompressed
    contents (HDF5 attributes, group names and string data; zip members; gzip streams)."""
    import gzip
    import zipfile

    from conftest import strings_in_cohort

    data = f.read_bytes()
    yield data
    if f.suffix == ".gz":
        yield gzip.decompress(data)
    if zipfile.is_zipfile(f):
        with zipfile.ZipFile(f) as z:
            for name in z.namelist():
                yield name.encode() + z.read(name)
    if f.suffix == ".h5":
        yield "\n".join(strings_in_cohort(f)).encode()


def _assert_private_and_readable(folders, secrets):
    """No output file holds any of ``secrets`` (input paths, file and folder names), also inside
    compressed containers, and every output file has the normal mode of a new file (0666 less the
    umask), not mkstemp's 0600."""
    import os

    umask = os.umask(0)
    os.umask(umask)
    for folder in folders:
        for f in folder.rglob("*"):
            if not f.is_file() or "checkpoints" in f.parts:
                continue
            assert f.stat().st_mode & 0o777 == 0o666 & ~umask, (f, oct(f.stat().st_mode))
            for text in _output_texts(f):
                for secret in secrets:
                    assert secret.encode() not in text, (f, secret)


def test_cli_bad_inputs_give_one_line_errors(toy_cohort, tmp_path, capsys):
    from ofrnn.cli import main

    assert main(["predict", "--model", str(tmp_path / "nope"), "--cohort", str(toy_cohort),
                 "--out", str(tmp_path / "o")]) == 2
    assert "no such model folder" in capsys.readouterr().err
    (tmp_path / "m").mkdir()
    assert main(["predict", "--model", str(tmp_path / "m"), "--cohort", str(toy_cohort),
                 "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ofrnn: error:") and "model.keras" in err and "Traceback" not in err
    assert main(["train", "--cohort", str(tmp_path / "missing.h5"), "--out", str(tmp_path / "t")]) == 2
    assert "no such cohort file" in capsys.readouterr().err
    assert main(["train", "--cohort", str(toy_cohort), "--fold", "12", "--out", str(tmp_path / "t")]) == 2
    assert "fold 12" in capsys.readouterr().err
    assert main(["train", "--cohort", str(toy_cohort), "--profile", "huge", "--out", str(tmp_path / "t")]) == 2
    assert "no profile 'huge'" in capsys.readouterr().err


def _write_toy_dicom(folder, subject, *, contours):
    from pydicom.uid import generate_uid
    from test_ingest import write_dicom

    series = generate_uid()
    folder.mkdir()
    for f, frame in enumerate(subject.cine):
        write_dicom(folder / f"im{f:03d}.dcm", np.clip(frame * 1000 + 100, 0, 60000).astype(np.uint16),
                    series=series, trigger=10.0 + 40 * f, instance=1 + f, spacing=(1.5, 1.5))
    if contours:
        y0, x0, y1, x1 = subject.lv_box[0]
        square = [(x0, y0), (x1 - 1, y0), (x1 - 1, y1 - 1), (x0, y1 - 1)]  # (column, row) vertices
        (folder / "IM-0001-0001-ocontour-manual.txt").write_text("".join(f"{x} {y}\n" for x, y in square))


def test_compiled_inference_gives_keras_probabilities_for_any_chunk_size(tiny_run):
    from ofrnn.pipeline import RoiSubject
    from ofrnn.predict import load_bundle, predict_roi, roi_features

    network, config = load_bundle(tiny_run[0])
    rng = np.random.default_rng(1)
    T = config["frames"]
    rs = RoiSubject(id="r", level="mid", spacing_mm=(1.0, 1.0), shape=(64, 64), transform=None,
                    roi=rng.random((T, 64, 64)).astype(np.float32), frame0=None,
                    flows=rng.normal(0, 0.5, (T - 1, 2, 64, 64)).astype(np.float32))
    loc, glo = roi_features(rs, config)
    keras_prob = np.asarray(network.predict_on_batch([loc, glo]))[:, 1].reshape(64, 64)
    whole = predict_roi(network, rs, config)
    # 1000-pixel chunks: the last one (96 pixels) is padded to the compiled shape and cut back
    chunked = predict_roi(network, rs, dict(config, eval_batch=1000))
    assert whole.shape == (64, 64) and whole.dtype == np.float32
    np.testing.assert_allclose(whole, keras_prob, atol=1e-5)
    np.testing.assert_allclose(chunked, keras_prob, atol=1e-5)
    assert keras_prob.std() > 0  # the check compares real maps, not a constant


def test_predict_cli_on_a_dicom_folder(tiny_run, tmp_path, capsys):
    import h5py

    from ofrnn.cli import main

    out, _, _ = tiny_run
    subject = toy_subject(20, infarct=True)
    bare = tmp_path / "bare"
    _write_toy_dicom(bare, subject, contours=False)
    # a raw cine without boxes: the bundle's own heart localization layers find the ROI, nothing else needed
    assert main(["predict", "--model", str(out), "--dicom", str(bare), "--out", str(tmp_path / "p0")]) == 0
    summary = json.loads(next((tmp_path / "p0").glob("*.json")).read_text())
    assert summary["percent_of_myocardium"] is None and summary["region"].startswith("myocardium unknown")
    _assert_private_and_readable([tmp_path / "p0"], [str(bare), "im000.dcm"])
    boxed = tmp_path / "boxed"
    _write_toy_dicom(boxed, subject, contours=True)
    assert main(["predict", "--model", str(out), "--dicom", str(boxed), "--contours", str(boxed),
                 "--out", str(tmp_path / "p1")]) == 0
    with h5py.File(tmp_path / "p1" / "predictions.h5") as f:
        (sid,) = list(f["subjects"])
        g = f["subjects"][sid]
        assert g["infarct_prob"].shape == (H, W) and g["infarct_pred"].shape == (H, W)
        y0, x0, y1, x1 = g["roi_box"][()]
        cy, cx = (subject.lv_box[0, 0] + subject.lv_box[0, 2]) / 2, (subject.lv_box[0, 1] + subject.lv_box[0, 3]) / 2
        assert abs((y0 + y1) / 2 - cy) <= 1 and abs((x0 + x1) / 2 - cx) <= 1  # ROI centred on the contour box
    _assert_private_and_readable([tmp_path / "p1"], [str(boxed), "im000.dcm"])
    assert (tmp_path / "p1" / f"{sid}.json").is_file()


def test_killed_run_resumes_from_completed_stages_and_cv_aggregates(toy_cohort, tiny_run, tmp_path):
    import shutil

    from ofrnn.fold_report import aggregate
    from ofrnn.train import run_fold

    src, cfg, res = tiny_run
    out = tmp_path / "resumed"
    shutil.copytree(src, out)
    # as if killed during fine-tuning: the first two stages had finished, nothing after
    for f in ("metrics.json", "model.keras", "checkpoints/finetune.weights.h5", "checkpoints/timings.json"):
        (out / f).unlink()
    again = run_fold(toy_cohort, "holdout", cfg, out, progress=False)
    assert "local" not in again["timings"] and "autoencoders" not in again["timings"]  # not redone
    assert "finetune" in again["timings"] and (out / "model.keras").is_file()
    assert again["metrics"]["roi"]["roc_auc"] > 0.7  # chance is 0.5

    summary = aggregate([res, again], tmp_path / "cv")
    acc = summary["metrics"]["roi.accuracy"]
    vals = [res["metrics"]["roi"]["accuracy"], again["metrics"]["roi"]["accuracy"]]
    assert acc["mean"] == pytest.approx(np.mean(vals)) and acc["sd"] == pytest.approx(np.std(vals, ddof=1))
    assert "mean +- sd" in (tmp_path / "cv" / "report.md").read_text()
    # the threshold rules' comparison on validation subjects: shown when every fold has it
    a, b = (dict(r, validation={**r["validation"], "threshold_transfer": t})
            for r, t in ((res, {"0.5": 0.8, "dice": 0.7}), (again, {"0.5": 0.6, "dice": 0.5})))
    aggregate([a, b], tmp_path / "cv2")
    assert "`0.5` 0.700, `dice` 0.600" in (tmp_path / "cv2" / "report.md").read_text()
    # the validation subjects' threshold-free metrics are kept per fold and averaged; a fold stored before
    # they were kept counts as missing, not as zero
    assert 0 <= res["validation"]["myocardium"]["roc_auc"] <= 1
    assert 0 <= res["validation"]["myocardium"]["sensitivity_at_spec95"] <= 1
    a, b = (dict(r, validation={**r["validation"], "myocardium": m}) for r, m in
            ((res, {"dice": 0.8, "roc_auc": 0.96, "sensitivity_at_spec95": 0.85}), (again, {"dice": 0.7})))
    cv3 = aggregate([a, b], tmp_path / "cv3")
    assert cv3["validation"]["dice"]["mean"] == pytest.approx(0.75)
    assert cv3["validation"]["roc_auc"] == dict(mean=pytest.approx(0.96), sd=0.0, n=1)
    assert "ROC AUC 0.960 +- 0.000 (1 of 2 folds)" in (tmp_path / "cv3" / "report.md").read_text()


def test_a_fold_of_an_older_report_version_is_evaluated_again_without_training(toy_cohort, tiny_run, tmp_path):
    import shutil

    from ofrnn.train import REPORT_VERSION, run_fold

    src, cfg, res = tiny_run
    out = tmp_path / "old"
    shutil.copytree(src, out)
    old = json.loads((out / "metrics.json").read_text())
    old["report_version"] = REPORT_VERSION - 1
    (out / "metrics.json").write_text(json.dumps(old))
    (out / "report.md").unlink()
    again = run_fold(toy_cohort, "holdout", cfg, out, progress=False)
    assert again["report_version"] == REPORT_VERSION and (out / "report.md").is_file()
    assert again["metrics"]["threshold"] == pytest.approx(res["metrics"]["threshold"])
    assert again["metrics"]["myocardium"]["dice"] == pytest.approx(res["metrics"]["myocardium"]["dice"], abs=1e-6)
    for k in ("local", "autoencoders", "finetune", "total"):  # the training's timings, not the re-evaluation's
        assert again["timings"][k] == pytest.approx(res["timings"][k])
    # another decision threshold and another sequence rule of the fold's localizer (each alone a reason:
    # test_a_finished_fold_is_evaluated_again_...): the same network and localizer, evaluated again at the
    # threshold, the test fold's ROIs found again under the rule, which the record and the bundle carry
    from ofrnn.localization import load_detector

    rule = out.parent / "localization-rule2.toml"
    rule.write_text(re.sub(r"(?m)^fast_frames = \S+", "fast_frames = 2", Path(cfg.localizer_settings).read_text()))
    other = run_fold(toy_cohort, "holdout", cfg.replace(threshold=0.25, localizer_settings=str(rule)), out,
                     progress=False)
    assert other["metrics"]["threshold"] == 0.25 and other["config"]["threshold"] == 0.25
    record = other["metrics_detected_roi"]["localizer"]
    assert record["reused"] and record["rule"]["fast_frames"] == 2
    assert load_detector(out / "localizer").settings["fast_frames"] == 2
    assert "detections on 2 frames of each cine" in (out / "report.md").read_text()
    # and it then stands: asked again with the same settings, the fold is returned as it is
    stamp = (out / "metrics.json").stat().st_mtime_ns
    run_fold(toy_cohort, "holdout", cfg.replace(threshold=0.25, localizer_settings=str(rule)), out, progress=False)
    assert (out / "metrics.json").stat().st_mtime_ns == stamp
    assert other["metrics"]["myocardium"]["roc_auc"] == pytest.approx(res["metrics"]["myocardium"]["roc_auc"])
    assert other["timings"]["finetune"] == pytest.approx(res["timings"]["finetune"])


def test_a_finished_fold_is_evaluated_again_under_another_threshold_localizer_or_sequence_rule(tmp_path):
    from ofrnn.localization import sequence_rule
    from ofrnn.settings import load_profile
    from ofrnn.train import REPORT_VERSION, evaluated_again, localizer_config, localizer_key

    settings = tmp_path / "localization.toml"
    settings.write_text((Path(__file__).parents[1] / "experiments" / "localization.toml").read_text() + TINY_LOCALIZER)
    cfg = load_profile("quick", localizer_settings=str(settings), localizer_profile="tiny")
    cohort = tmp_path / "cohort.h5"
    cohort.write_bytes(b"cohort")
    split = dict(train=["b", "a"], val=["c"], test=["d"])
    lcfg = localizer_config(cfg)
    rule = json.loads(json.dumps(sequence_rule(lcfg["detect"])))  # as metrics.json gives it back
    assert set(rule) == {"fast_frames", "motion_prior", "motion_proposals"}
    key = localizer_key(cohort, ["c", "a", "b"], lcfg)  # what fold_localizer records, whatever the order
    done = dict(report_version=REPORT_VERSION, config=dict(threshold=cfg.threshold), split=split,
                metrics_detected_roi=dict(localizer=dict(reused=False, rule=rule, key=key)))
    assert evaluated_again(done, cfg, cohort) is None
    assert evaluated_again(dict(done, report_version=REPORT_VERSION - 1), cfg, cohort) == "an older report version"
    assert evaluated_again(dict(done, config=dict(threshold=0.25)), cfg, cohort) == "another decision threshold"
    moved = dict(done, metrics_detected_roi=dict(localizer=dict(rule={**rule, "motion_prior": 3.0}, key=key)))
    assert "sequence rule" in evaluated_again(moved, cfg, cohort)
    assert evaluated_again(moved, cfg.replace(localizer="none"), cohort) is None  # no localizer, no rule to follow
    for unrecorded in (dict(rule=rule), dict(key=key), {}):  # stored before the key or the rule was recorded
        assert evaluated_again(dict(done, metrics_detected_roi=dict(localizer=unrecorded)), cfg, cohort)
    # the localizer's training settings changed, its rule did not: another localizer (the rule alone would not be)
    settings.write_text(settings.read_text().replace("epochs = 2\n", "epochs = 3\n"))
    assert localizer_key(cohort, ["a", "b", "c"], localizer_config(cfg)) != key
    assert "another heart localizer" in evaluated_again(done, cfg, cohort)
    # a table without the newer settings has their defaults: the paper's ranking, selective search alone
    assert sequence_rule(dict(fast_frames=3)) == dict(fast_frames=3, motion_prior=0.0, motion_proposals=[])


def _transformed(seq, flows, code):
    """The sequence and its (dy, dx) flow field under symmetry ``code`` of :func:`ofrnn.pipeline.dihedral`, and
    the map of a pixel (y, x) to its image."""
    n = seq.shape[-1] - 1
    tseq, tflow, where = seq, flows, lambda y, x: (y, x)
    if code & 1:
        tseq, tflow = tseq.swapaxes(1, 2), tflow.swapaxes(2, 3)[:, ::-1]
        where = (lambda w: lambda y, x: w(x, y))(where)
    if code & 2:
        tseq, tflow = tseq[:, ::-1], tflow[:, :, ::-1] * np.array([-1, 1], np.float32)[None, :, None, None]
        where = (lambda w: lambda y, x: (n - w(y, x)[0], w(y, x)[1]))(where)
    if code & 4:
        tseq, tflow = tseq[:, :, ::-1], tflow[:, :, :, ::-1] * np.array([1, -1], np.float32)[None, :, None, None]
        where = (lambda w: lambda y, x: (w(y, x)[0], n - w(y, x)[1]))(where)
    return np.ascontiguousarray(tseq), np.ascontiguousarray(tflow), where


@pytest.mark.parametrize("frame", ["heart", "image"])
@pytest.mark.parametrize("code", range(8))
def test_dihedral_augmentation_matches_features_of_the_transformed_sequence(code, frame):
    from ofrnn.flow import global_features
    from ofrnn.motion import local_patches
    from ofrnn.pipeline import dihedral

    rng = np.random.default_rng(code)
    seq = rng.random((4, 9, 9)).astype(np.float32)
    flows = rng.normal(0, 0.7, (3, 2, 9, 9)).astype(np.float32)
    tseq, tflow, _ = _transformed(seq, flows, code)
    y, x = 4, 4  # the centre pixel is its own image under every symmetry
    loc = local_patches(seq, patch=5, pixels=([y], [x]))
    glo = global_features(flows, patch=3, frame=frame)[y, x][None]
    aug_l, aug_g = dihedral(loc, glo, np.array([code]), patch=5, frame=frame)
    np.testing.assert_allclose(aug_l, local_patches(tseq, patch=5, pixels=([y], [x])))
    np.testing.assert_allclose(aug_g, global_features(tflow, patch=3, frame=frame)[y, x][None],
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("code", range(8))
def test_dihedral_augmentation_of_heart_frame_patches(code):
    """Heart-frame P_l turns with the radial direction: the image of a pixel off the centre has the same patch,
    its circumferential columns reversed under a reflection."""
    from ofrnn.flow import global_features
    from ofrnn.motion import heart_patches
    from ofrnn.pipeline import dihedral

    rng = np.random.default_rng(10 + code)
    seq = rng.random((4, 9, 9)).astype(np.float32)
    flows = rng.normal(0, 0.3, (3, 2, 9, 9)).astype(np.float32)
    tseq, tflow, where = _transformed(seq, flows, code)
    y, x = 2, 5
    ty, tx = where(y, x)
    loc = heart_patches(seq, flows, patch=5, pixels=(np.array([y]), np.array([x])))
    glo = global_features(flows, patch=3, frame="heart")[y, x][None]
    aug_l, aug_g = dihedral(loc, glo, np.array([code]), patch=5, frame="heart", local_frame="heart")
    np.testing.assert_allclose(aug_l, heart_patches(tseq, tflow, patch=5, pixels=(np.array([ty]), np.array([tx]))),
                               atol=1e-4)
    np.testing.assert_allclose(aug_g, global_features(tflow, patch=3, frame="heart")[ty, tx][None],
                               rtol=1e-5, atol=1e-5)
    if bin(code).count("1") % 2:  # a reflection is not the identity on these patches
        assert not np.allclose(aug_l, loc)


def test_in_graph_augmentation_applies_the_dihedral_symmetries():
    """The graph feed's augmented batches hold, per sample, one of the grid's rotations (:func:`dihedral`) of the
    plain inputs, more than one of them, and the same ones on every run."""
    from ofrnn.pipeline import ROTATIONS, PixelBatches, dihedral

    subs, s = _toy_pixels(64)
    plain = PixelBatches(subs, s, patch=5, local_frame="heart")
    aug = PixelBatches(subs, s, patch=5, local_frame="heart", augment=True, batch_size=64)
    loc, glo = plain.inputs(np.arange(64))
    (aloc, aglo), label, _ = next(iter(aug.dataset(shuffle=False)))
    (again, _), _, _ = next(iter(aug.dataset(shuffle=False)))
    np.testing.assert_array_equal(aloc.numpy(), again.numpy())
    np.testing.assert_array_equal(label.numpy(), s["label"][:64])
    codes = []
    for i in range(64):
        match = [c for c in ROTATIONS
                 if all(np.allclose(a, b) for a, b in zip(dihedral(loc[i:i + 1], glo[i:i + 1], np.array([c]), patch=5,
                                                                   frame="heart", local_frame="heart"),
                                                          (aloc.numpy()[i:i + 1], aglo.numpy()[i:i + 1])))]
        assert match, i
        codes.append(match[0])
    assert len(set(codes)) > 1


def test_predict_with_the_heart_localization_layers(toy_cohort, tiny_run, tmp_path):
    """--roi detector: the crop comes from a trained localizer, not from the stored boxes."""
    import tomllib
    from pathlib import Path

    import h5py

    from ofrnn.localization import load_detector, train_detector
    from ofrnn.predict import load_bundle, predict_subjects
    from ofrnn.store import open_cohort

    cfg = tomllib.loads((Path(__file__).parents[1] / "experiments" / "localization.toml").read_text())
    cfg["model"].update(input_size=64, filters=[8, 8, 8, 8, 8], fc_units=16, stride=8)
    cfg["detect"].update(fast_size=64)
    cfg["train"].update(epochs=2, steps_per_epoch=8, images_per_batch=2, rois_per_image=32, learning_rate=2e-3)
    with open_cohort(toy_cohort) as c:
        subs = [c.read(s) for s in c.ids]
    det, _ = train_detector([s.cine[0] for s in subs], np.array([s.lv_box[0] for s in subs], float), cfg,
                            seed=0, progress=False)
    det.save(tmp_path / "localizer")
    net, config = load_bundle(tiny_run[0])
    out = tmp_path / "pred"
    predict_subjects(net, config, subs[:2], out, roi="detector", localizer=load_detector(tmp_path / "localizer"),
                     progress=False)
    with h5py.File(out / "predictions.h5") as f:
        for sid in (s.id for s in subs[:2]):
            box = f[f"subjects/{sid}/roi_box"][()]
            assert box[2] - box[0] >= 64 and box[3] - box[1] >= 64  # the detector's square crop, >= 64 px
            assert f[f"subjects/{sid}/infarct_prob"].shape == (H, W)
    assert json.loads((out / "metrics.json").read_text())["provenance"]["roi_source"] == "detector"


def _toy_pixels(n=50):
    """Three random 16x16, 5-frame ROI subjects with flows, and n sampled pixels of them."""
    from ofrnn.pipeline import RoiSubject

    rng = np.random.default_rng(0)
    subs = [RoiSubject(id=str(i), level="mid", spacing_mm=(1.0, 1.0), shape=(16, 16), transform=None,
                       roi=rng.random((5, 16, 16)).astype(np.float32), frame0=None,
                       flows=rng.normal(0, 0.5, (4, 2, 16, 16)).astype(np.float32)) for i in range(3)]
    samples = dict(subject=rng.integers(0, 3, n).astype(np.int32), y=rng.integers(0, 16, n).astype(np.int32),
                   x=rng.integers(0, 16, n).astype(np.int32), label=rng.integers(0, 2, n).astype(np.int32),
                   weight=rng.random(n).astype(np.float32))
    return subs, samples


def _pixel_batches(seed=0, n=50, batch=16, **kw):
    from ofrnn.pipeline import PixelBatches

    return PixelBatches(*_toy_pixels(n), patch=5, batch_size=batch, seed=seed, **kw)


def test_tissue_patches_follow_a_translation_and_match_between_training_and_prediction():
    """local_frame="tissue": on a pure translation the traced patch shows the same tissue in every
    frame (the fixed patch does not), and training batches hold the patches prediction computes."""
    from ofrnn.motion import local_patches, tissue_centres
    from ofrnn.pipeline import PixelBatches

    img = np.random.default_rng(0).random((40, 40)).astype(np.float32)
    seq = np.stack([np.roll(img, (t, 2 * t), axis=(0, 1)) for t in range(5)])[:, 5:35, 5:35]
    flows = np.zeros((4, 2, 30, 30), np.float32)
    flows[:, 0], flows[:, 1] = 1.0, 2.0  # content moves 1 px down and 2 px right per frame
    inner = np.arange(900).reshape(30, 30)[8:14, 8:14].ravel()
    tissue = local_patches(seq, patch=5, centres=tissue_centres(flows))[inner]
    fixed = local_patches(seq, patch=5)[inner]
    np.testing.assert_array_equal(tissue, np.repeat(tissue[:, :1], 5, axis=1))
    assert np.abs(fixed - fixed[:, :1]).max() > 0.5

    subs, s = _toy_pixels()
    loc, _ = PixelBatches(subs, s, patch=5, local_frame="tissue").inputs(np.arange(50))
    for k in range(50):
        rs = subs[s["subject"][k]]
        ref = local_patches(rs.roi, patch=5, centres=tissue_centres(rs.flows))[s["y"][k] * 16 + s["x"][k]]
        np.testing.assert_array_equal(loc[k], ref)


def test_heart_patches_turn_with_the_wall_and_follow_sub_pixel_motion():
    """local_frame="heart": (a) turning the image by 90 degrees about the LV centre leaves every
    pixel's patch unchanged (the patch turns with the radial direction); (b) on a smooth pattern
    translated by a sub-pixel step per frame, each frame's patch samples the pattern at p traced,
    on the radial / circumferential grid (known answer, up to bilinear interpolation)."""
    from ofrnn.motion import heart_patches

    img = np.random.default_rng(1).random((32, 32)).astype(np.float32)
    still = np.zeros((0, 2, 32, 32), np.float32)
    ys, xs = np.array([5, 9, 20, 28]), np.array([20, 3, 14, 27])
    a = heart_patches(img[None], still, patch=7, pixels=(ys, xs))
    # np.rot90 moves pixel (y, x) to (31 - x, y): a turn about the centre (15.5, 15.5)
    b = heart_patches(np.rot90(img)[None].copy(), still, patch=7, pixels=(31 - xs, ys))
    np.testing.assert_allclose(a, b, atol=1e-5)
    assert np.abs(a - heart_patches(img[None], still, patch=7, pixels=(31 - xs, ys))).max() > 0.3

    def pattern(y, x):
        return np.sin(0.3 * y + 0.1) * np.cos(0.2 * x - 0.4)

    step = np.array([0.4, -0.3], np.float32)
    yy, xx = np.mgrid[0:40, 0:40].astype(np.float32)
    seq = np.stack([pattern(yy - t * step[0], xx - t * step[1]) for t in range(4)]).astype(np.float32)
    flows = np.broadcast_to(step[None, :, None, None], (3, 2, 40, 40)).astype(np.float32)
    got = heart_patches(seq, flows, patch=5, pixels=([12, 25], [10, 30])).reshape(2, 4, 5, 5)
    c, off = 19.5, np.arange(5) - 2.0
    for k, q in enumerate(np.array([[12, 10], [25, 30]], np.float32)):
        for t in range(4):
            p = q + t * step  # the tissue's position in frame t
            u = (p - c) / np.hypot(*(p - c))
            gy = p[0] + off[:, None] * u[0] + off[None, :] * u[1]
            gx = p[1] + off[:, None] * u[1] - off[None, :] * u[0]
            # in the tissue's own coordinates the pattern does not move
            np.testing.assert_allclose(got[k, t], pattern(gy - t * step[0], gx - t * step[1]), atol=0.03)


def test_heart_patch_rows_point_outward_and_columns_along_the_circumferential_direction():
    """Sampling the coordinate images y and x (bilinear is exact on them) reads the grid itself: a
    row step is the outward radial unit vector, and a column step is a displacement that
    heart_components calls purely circumferential and positive. At the image border the patch is
    the edge-padded image's window, turned."""
    from ofrnn.flow.trajectory import heart_components
    from ofrnn.motion import heart_patches

    n = 33  # centre (16, 16)
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    still = np.zeros((0, 2, n, n), np.float32)
    ys, xs = np.array([4, 16, 27, 9]), np.array([20, 29, 12, 5])
    gy = heart_patches(yy[None], still, patch=5, pixels=(ys, xs))[:, 0].reshape(-1, 5, 5)
    gx = heart_patches(xx[None], still, patch=5, pixels=(ys, xs))[:, 0].reshape(-1, 5, 5)
    for k in range(len(ys)):
        q = np.array([ys[k], xs[k]], float)
        row = np.array([gy[k, 3, 2] - gy[k, 2, 2], gx[k, 3, 2] - gx[k, 2, 2]])
        col = np.array([gy[k, 2, 3] - gy[k, 2, 2], gx[k, 2, 3] - gx[k, 2, 2]])
        np.testing.assert_allclose(row, (q - 16) / np.hypot(*(q - 16)), atol=1e-5)
        disp = np.zeros((2, n, n), np.float32)
        disp[:, ys[k], xs[k]] = 0.01 * col
        ur, uc = heart_components(disp, centre=(16, 16))[:, ys[k], xs[k]]
        assert uc == pytest.approx(0.01, abs=1e-4) and abs(ur) < 1e-4

    img = np.random.default_rng(2).random((n, n)).astype(np.float32)
    edge = heart_patches(img[None], still, patch=5, pixels=([16], [32]))[0, 0].reshape(5, 5)
    window = np.pad(img, 2, mode="edge")[16:21, 32:37]  # the 5x5 window of (16, 32), padded by edges
    np.testing.assert_allclose(edge, window.T, atol=1e-6)  # at 3 o'clock rows run along +x


def test_heart_patches_match_between_training_and_prediction():
    from ofrnn.pipeline import PixelBatches
    from ofrnn.predict import roi_features

    subs, s = _toy_pixels()
    loc, glo = PixelBatches(subs, s, patch=5, local_frame="heart").inputs(np.arange(50))
    cfg = dict(patch=5, local_frame="heart", global_patch=3, global_frame="heart", motion_reference="none")
    for i, rs in enumerate(subs):
        sel = s["subject"] == i
        ref_loc, ref_glo = roi_features(rs, cfg)
        np.testing.assert_allclose(loc[sel], ref_loc[s["y"][sel] * 16 + s["x"][sel]], atol=1e-6)
        np.testing.assert_allclose(glo[sel], ref_glo[s["y"][sel] * 16 + s["x"][sel]], atol=1e-6)


def test_the_graph_feed_reads_the_heart_frame_rows_in_place():
    """The in-graph tables are the sampled rows themselves, not copies (12 kB a heart-frame pixel):
    a value written into the NumPy rows is what the table then holds."""
    from ofrnn.pipeline import PixelBatches

    subs, s = _toy_pixels()
    pb = PixelBatches(subs, s, patch=5, local_frame="heart")
    table, glob = pb._graph_tables(local_only=False)
    np.testing.assert_array_equal(table.numpy(), pb.local_rows)
    np.testing.assert_array_equal(glob.numpy(), pb.global_rows)
    pb.local_rows[3, 2, 1] = pb.global_rows[4, 1, 0] = 123.0
    assert float(table[3, 2, 1]) == 123.0 and float(glob[4, 1, 0]) == 123.0


def test_wall_frame_trajectories_match_between_training_and_prediction_and_refuse_augmentation():
    from ofrnn.errors import OfrnnError
    from ofrnn.pipeline import PixelBatches
    from ofrnn.predict import roi_features

    subs, s = _toy_pixels()
    _, glo = PixelBatches(subs, s, patch=5, local_frame="tissue", global_frame="wall").inputs(np.arange(50))
    cfg = dict(patch=5, local_frame="tissue", global_patch=3, global_frame="wall", motion_reference="none")
    for i, rs in enumerate(subs):
        sel = s["subject"] == i
        _, ref_glo = roi_features(rs, cfg)
        np.testing.assert_allclose(glo[sel], ref_glo[s["y"][sel] * 16 + s["x"][sel]], atol=1e-6)
    with pytest.raises(OfrnnError, match="wall-frame"):
        PixelBatches(subs, s, patch=5, local_frame="image", global_frame="wall", augment=True)


def test_an_unknown_local_frame_is_refused():
    from ofrnn.errors import OfrnnError

    with pytest.raises(OfrnnError, match="local_frame 'tisue'"):
        _pixel_batches(local_frame="tisue")


@pytest.mark.parametrize("local_frame", ["image", "tissue", "heart"])
def test_graph_feed_gathers_the_same_inputs_as_the_numpy_path(local_frame):
    pb = _pixel_batches(local_frame=local_frame)
    (loc, glo), y, w = next(iter(pb.dataset(shuffle=False)))
    ref_loc, ref_glo = pb.inputs(np.arange(16))
    np.testing.assert_array_equal(loc.numpy(), ref_loc)
    np.testing.assert_array_equal(glo.numpy(), ref_glo)
    np.testing.assert_array_equal(y.numpy(), pb.samples["label"][:16])
    np.testing.assert_array_equal(w.numpy(), pb.samples["weight"][:16])


def test_wall_maps_join_every_frame_of_the_local_input_in_both_feeds_and_at_prediction():
    import dataclasses

    from ofrnn.pipeline import PixelBatches
    from ofrnn.predict import roi_features

    subs, s = _toy_pixels()
    rng = np.random.default_rng(3)
    walled = [dataclasses.replace(rs, wall=rng.random((16, 16, 2)).astype(np.float32)) for rs in subs]
    plain = PixelBatches(subs, s, patch=5, local_frame="heart", batch_size=16)
    pb = PixelBatches(walled, s, patch=5, local_frame="heart", batch_size=16)
    assert pb.local_width == 27 and plain.local_width == 25
    loc, glo = pb.inputs(np.arange(16))
    ref_loc, ref_glo = plain.inputs(np.arange(16))
    np.testing.assert_array_equal(loc[..., :25], ref_loc)
    np.testing.assert_array_equal(glo, ref_glo)
    want = np.stack([walled[k].wall[y, x] for k, y, x in zip(s["subject"][:16], s["y"][:16], s["x"][:16])])
    np.testing.assert_array_equal(loc[..., 25:], np.repeat(want[:, None], loc.shape[1], 1))
    (gloc, _), _, _ = next(iter(pb.dataset(shuffle=False)))
    np.testing.assert_array_equal(gloc.numpy(), loc)
    # with augmentation the patch turns and the wall values, the same under a turn, follow unturned
    aug = PixelBatches(walled, s, patch=5, local_frame="image", batch_size=16, augment=True)
    (aloc, _), _, _ = next(iter(aug.dataset(shuffle=False)))
    assert aloc.shape == (16, 5, 27)
    np.testing.assert_array_equal(aloc.numpy()[..., 25:], loc[..., 25:])
    (bloc, _), _, _ = next(aug.batches())  # a shuffled batch: each row carries its own pixel's values
    every = np.stack([walled[k].wall[y, x] for k, y, x in zip(s["subject"], s["y"], s["x"])])
    assert bloc.shape == (16, 5, 27) and np.all(bloc[:, :1, 25:] == bloc[..., 25:])
    assert all(np.any(np.all(every == row, axis=1)) for row in bloc[:, 0, 25:])
    # prediction builds the same rows for every ROI pixel, and refuses a subject without maps
    cfg = dict(patch=5, local_frame="heart", global_patch=3, global_frame="heart", motion_reference="none",
               wall_geometry="learned")
    i = int(s["subject"][0])
    full, _ = roi_features(walled[i], cfg)
    sel = np.flatnonzero(s["subject"][:16] == i)
    np.testing.assert_allclose(full[s["y"][sel] * 16 + s["x"][sel]], loc[sel], atol=1e-6)
    from ofrnn.errors import OfrnnError

    with pytest.raises(OfrnnError, match="wall"):
        roi_features(subs[i], cfg)
    with pytest.raises(OfrnnError, match="wall"):
        PixelBatches([walled[0], subs[1], subs[2]], s, patch=5, local_frame="heart")


def test_the_cnn_reads_the_patches_as_images_and_the_wall_values_beside_them(tmp_path):
    """With extra values the CNN's convolutions see only each step's N*N patch, exactly as without
    them, and the values (constant over the steps) still reach its output."""
    import keras

    from ofrnn.motion import patch_cnn

    keras.utils.set_random_seed(0)
    frames, n = 6, 5
    plain, walled = patch_cnn(frames, n, units=8), patch_cnn(frames, n, units=8, extra=2)
    for name in ("cnn_conv_1", "cnn_conv_2"):
        walled.get_layer(name).set_weights(plain.get_layer(name).get_weights())
    rng = np.random.default_rng(0)
    patches = rng.normal(size=(4, frames, n * n)).astype("float32")
    wall = np.broadcast_to(rng.normal(size=(4, 1, 2)), (4, frames, 2)).astype("float32")
    flat = [keras.Model(m.input, m.get_layer("cnn_flatten").output) for m in (plain, walled)]
    np.testing.assert_allclose(flat[1](np.concatenate([patches, wall], axis=2)), flat[0](patches), atol=1e-6)
    a = walled(np.concatenate([patches, wall], axis=2)).numpy()
    b = walled(np.concatenate([patches, wall + 1.0], axis=2)).numpy()
    assert walled.inputs[0].shape[-1] == n * n + 2 and np.abs(a - b).max() > 1e-3
    # built from stock layers only, so a bundle with it loads in Keras' safe mode
    walled.save(tmp_path / "cnn.keras")
    again = keras.saving.load_model(tmp_path / "cnn.keras")
    np.testing.assert_allclose(again(np.concatenate([patches, wall], axis=2)).numpy(), a, atol=1e-6)


def test_a_wall_geometry_run_bundles_its_segmenter_and_predicts_from_the_cine_alone(toy_cohort, tmp_path):
    from ofrnn.predict import load_bundle, predict_subjects
    from ofrnn.settings import load_profile
    from ofrnn.store import open_cohort
    from ofrnn.train import run_fold

    # the simulator's flow: flows estimated again in this test's fresh cache would add time, not coverage
    cfg = load_profile("wall", **dict(TINY, flow="gt"), localizer="none")
    assert cfg.wall_geometry == "learned"
    out = tmp_path / "fold"
    res = run_fold(toy_cohort, "holdout", cfg, out, cache_dir=tmp_path / "cache", progress=False)
    assert res["timings"]["wall_segmenter"] > 0 and (out / "wall.keras").is_file()
    assert res["metrics"]["myocardium"]["roc_auc"] > 0.6, res["metrics"]["myocardium"]
    network, config = load_bundle(out)
    assert config["wall_geometry"] == "learned" and network.inputs[0].shape[-1] == cfg.patch ** 2 + 2
    with open_cohort(toy_cohort) as c:
        subject = c.read(res["split"]["test"][0])
    predict_subjects(network, config, [subject], tmp_path / "pred", progress=False)
    assert (tmp_path / "pred" / "predictions.h5").is_file()
    # the probabilities are the fold's own: predict estimated the same wall maps as the evaluation did
    import h5py

    from ofrnn.evaluate import predict_all
    from ofrnn.pipeline import prepare_cohort
    from ofrnn.wall import with_wall

    rs = prepare_cohort(toy_cohort, frames=cfg.frames, roi="gt", flow=cfg.flow, margin=cfg.roi_margin,
                        cache_dir=tmp_path / "cache", ids=[subject.id], progress=False)
    want = predict_all(network, with_wall(rs, config["wall_segmenter"]), cfg, progress=False)[0][0]
    with h5py.File(tmp_path / "pred" / "predictions.h5") as f:
        got = f[f"subjects/{subject.id}/infarct_prob"][()]
    assert np.nanmax(got) > 0 and abs(np.nanmean(got) - want.mean()) < 1e-3
    # a bundle without its segmenter is refused with the file named
    (out / "wall.keras").unlink()
    from ofrnn.errors import OfrnnError

    with pytest.raises(OfrnnError, match="wall.keras"):
        load_bundle(out)


def test_graph_feed_is_seeded_and_visits_every_pixel_once_per_epoch():
    def epoch(pb):
        it = iter(pb.dataset())
        return [next(it) for _ in range(pb.steps)]

    a, b, c = epoch(_pixel_batches(seed=1)), epoch(_pixel_batches(seed=1)), epoch(_pixel_batches(seed=2))
    for (xa, ya, wa), (xb, yb, wb) in zip(a, b):
        np.testing.assert_array_equal(xa[0].numpy(), xb[0].numpy())
        np.testing.assert_array_equal(wa.numpy(), wb.numpy())
    assert not all(np.array_equal(wa.numpy(), wc.numpy()) for (_, _, wa), (_, _, wc) in zip(a, c))
    pb = _pixel_batches(seed=1)
    seen = np.sort(np.concatenate([w.numpy() for _, _, w in a]))
    np.testing.assert_array_equal(seen, np.sort(pb.samples["weight"]))  # a permutation of all 50 samples


def test_bench_times_inference_stages_and_both_training_feeds(toy_cohort, tiny_run, tmp_path):
    from ofrnn.cli import main

    out, _, _ = tiny_run
    assert main(["bench", "--model", str(out), "--cohort", str(toy_cohort), "--subjects", "1", "--batch", "64",
                 "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "bench")]) == 0
    m = json.loads((tmp_path / "bench" / "metrics.json").read_text())
    assert set(m["inference_seconds"]) == {"roi", "flow", "features", "network", "total"}
    assert set(m["training_pixels_per_second"]) == {"random_batches", "generator", "graph"}
    assert all(v > 0 for v in m["training_pixels_per_second"].values())
    assert "vs generator" in (tmp_path / "bench" / "report.md").read_text()


def test_predict_cli_on_a_nifti_cine_writes_masks_on_its_voxel_grid(tiny_run, tmp_path):
    """A 4-D NIfTI cine (x, y, slice, time) in, infarct masks out on the same grid and affine."""
    nib = pytest.importorskip("nibabel")

    from ofrnn.cli import main

    out, _, _ = tiny_run
    subject = toy_subject(21, infarct=True)
    data = np.stack([subject.cine.transpose(2, 1, 0)] * 2, axis=2)  # (x, y, 2 slices, t): cine[t, row, col]
    affine = np.diag([1.5, 1.5, 8.0, 1.0])
    affine[:3, 3] = [-50.0, 20.0, 5.0]
    img = nib.Nifti1Image((data * 1000).astype(np.int16), affine)
    img.header.set_xyzt_units("mm", "msec")
    img.header["pixdim"][4] = 40.0
    nib.save(img, tmp_path / "patient_name_cine.nii.gz")
    assert main(["predict", "--model", str(out), "--nifti", str(tmp_path / "patient_name_cine.nii.gz"),
                 "--out", str(tmp_path / "p")]) == 0
    (pred,) = (tmp_path / "p").glob("infarct_pred_*.nii.gz")
    m = nib.load(pred)
    assert m.shape == data.shape[:3] and np.allclose(m.affine, affine)
    assert set(np.unique(np.asarray(m.dataobj))) <= {0, 1}
    prob = nib.load(next((tmp_path / "p").glob("infarct_prob_*.nii.gz")))
    p = np.asarray(prob.dataobj)
    assert prob.shape == data.shape[:3] and np.nanmax(p) <= 1.0
    import h5py

    with h5py.File(tmp_path / "p" / "predictions.h5") as f:  # outside the ROI: not scored (NaN), not probability 0
        outside = sum(int((g["roi_mask"][()] == 0).sum()) for g in f["subjects"].values())
    assert np.isnan(p).sum() == outside and np.isfinite(p).any()
    assert b"threshold" in prob.header["descrip"].tobytes()
    _assert_private_and_readable([tmp_path / "p"], [str(tmp_path), "patient_name"])


def test_new_flow_settings_are_another_run():
    from ofrnn.flow import DEFAULTS
    from ofrnn.settings import load_profile
    from ofrnn.train import _same_run, flow_settings

    assert flow_settings(load_profile("quick", flow="gt")) is None
    assert flow_settings(load_profile("quick", flow="estimated")) == DEFAULTS
    cfg = load_profile("quick").as_dict()
    split = dict(train=["S1", "S2"], val=["S3"], test=["S4"])
    stamp = dict(cohort_bytes=1, cohort_mtime_ns=2, fold="3", config=cfg, flow_params=DEFAULTS, split=split)
    assert _same_run(stamp, json.loads(json.dumps(stamp)))  # survives the JSON round trip
    assert not _same_run(stamp, {**stamp, "flow_params": {**DEFAULTS, "beta": 0.0}})
    assert not _same_run(stamp, {**stamp, "split": {**split, "val": ["S2"], "train": ["S1", "S3"]}})
    assert not _same_run(stamp, {k: v for k, v in stamp.items() if k != "flow_params"})  # stamps from before


def test_validation_subjects_are_drawn_anew_for_every_fold():
    from ofrnn.settings import load_profile
    from ofrnn.train import make_split

    ids = [f"S{i:03d}" for i in range(114)]
    levels = ["apical", "mid", "basal"] * 38
    cfg = load_profile("quick")
    seen = [make_split(ids, levels, str(k), cfg) for k in range(10)]
    for sp in seen:
        assert not set(sp["val"]) & set(sp["test"]) and not set(sp["val"]) & set(sp["train"])
        assert len(sp["val"]) == 10 and {levels[ids.index(s)] for s in sp["val"]} == set(levels)
    # one random state for all folds gave nearly the same ten subjects every time (34 distinct over
    # ten folds); independent draws of 10 of 103 give about 60
    assert len({s for sp in seen for s in sp["val"]}) > 50
    assert make_split(ids, levels, "3", cfg)["val"] == seen[3]["val"]  # and stay reproducible


def _three_slices(*infarct_scores):
    """Three 4x4 all-myocardium slices, infarct in the top half (8 pixels each); the infarct pixels
    of slice i score ``infarct_scores[i]``, every other pixel 0.1. Returns (subjects, probs)."""
    from types import SimpleNamespace

    infarct = np.zeros((4, 4), np.uint8)
    infarct[:2] = 1
    subjects = [SimpleNamespace(infarct=infarct, myocardium=np.ones((4, 4), np.uint8)) for _ in infarct_scores]
    return subjects, [np.where(infarct, p, 0.1) for p in infarct_scores]


def test_threshold_transfer_thresholds_each_subject_by_the_others():
    from ofrnn.evaluate import threshold_transfer

    subjects, probs = _three_slices(0.4, 0.4, 0.9)
    got = threshold_transfer(subjects, probs, rules=(0.5, "dice"))
    assert got["0.5"] == pytest.approx(2 * 8 / (24 + 8))  # only the third subject's infarct reaches 0.5
    assert got["dice"] == pytest.approx(1.0)  # the others always place the cut at or below 0.4
    # one subject's infarct scores 0.3, the others' 0.6: chosen on all three, the cut falls at 0.3 and
    # every subject is right; left out, the 0.3 subject is cut at 0.6 by the others and lost entirely
    _, probs = _three_slices(0.3, 0.6, 0.6)
    assert threshold_transfer(subjects, probs, rules=("dice",))["dice"] == pytest.approx(2 * 16 / (24 + 16))
    assert threshold_transfer(subjects[:1], probs[:1]) == {}  # nothing to choose from


def test_auto_threshold_keeps_the_softmax_unless_the_dice_rule_transfers_better():
    from ofrnn.errors import OfrnnError
    from ofrnn.evaluate import choose_threshold

    # scores below 0.5 everywhere but well ranked: left out, the Dice rule finds every infarct, 0.5 one
    subjects, low = _three_slices(0.4, 0.4, 0.9)
    assert choose_threshold("auto", subjects, low) == pytest.approx(0.4)
    # one subject's infarct at 0.55: 0.5 finds it, the Dice rule chosen on the other two (0.9) does not
    _, high = _three_slices(0.55, 0.9, 0.9)
    assert choose_threshold("auto", subjects, high) == 0.5
    assert choose_threshold("auto", subjects[:1], high[:1]) == 0.5  # nothing to compare on
    with pytest.raises(OfrnnError, match="auto"):
        choose_threshold("best", subjects, high)


def _segment_slices(n, predicted):
    """n 8x8 all-myocardium slices, AHA segments 1-4 as 2-column bands of 16 pixels; segment 1 is 7/16
    infarcted (abnormal), and its first ``predicted`` pixels score 1, every other pixel 0."""
    from types import SimpleNamespace

    aha = np.repeat(np.arange(1, 5), 2)[None].repeat(8, 0)
    infarct = np.zeros((8, 8), np.uint8)
    infarct.T[:2].flat[:7] = 1  # 7 pixels of columns 0-1 (segment 1)
    prob = np.zeros((8, 8), np.float32)
    prob.T[:2].flat[:predicted] = 1
    subjects = [SimpleNamespace(id=str(i), level="mid", infarct=infarct, myocardium=np.ones((8, 8), np.uint8), aha=aha)
                for i in range(n)]
    return subjects, [prob] * n


def test_segment_cut_follows_a_network_that_under_segments_and_keeps_the_quarter_otherwise():
    from ofrnn.evaluate import choose_segment_cut
    from ofrnn.metrics import SEGMENT_RULE, evaluate_rois

    # 3 of 16 pixels predicted (0.1875): the quarter calls the infarcted segment normal in every slice,
    # and the cuts 0.05-0.15 call all four segments right; of those the one nearest the quarter
    subjects, probs = _segment_slices(4, predicted=3)
    cut, transfer = choose_segment_cut(evaluate_rois(subjects, probs, 0.5)[1])
    assert cut == 0.15 and transfer == dict(rule=12, best=16, n_segments=16)
    m, records = evaluate_rois(subjects, probs, 0.5, segment_cut=cut)
    assert m["segments"]["accuracy"]["all"] == 1.0 and m["segments"]["cut"] == 0.15
    assert evaluate_rois(subjects, probs, 0.5)[0]["segments"]["accuracy"]["all"] == 0.75
    assert records[0]["pred_share"] == pytest.approx(3 / 16) and records[0]["truth"] == 1
    # the infarct's own 7 pixels predicted: the quarter is right, so it stays
    subjects, probs = _segment_slices(4, predicted=7)
    records = evaluate_rois(subjects, probs, 0.5)[1]
    assert choose_segment_cut(records) == (SEGMENT_RULE, dict(rule=16, best=16, n_segments=16))
    assert choose_segment_cut(records[:4]) == (SEGMENT_RULE, {})  # one subject's segments: nothing to compare on


def test_another_threshold_is_the_same_training_run():
    from ofrnn.experiments import _cells
    from ofrnn.settings import load_profile, training_settings

    cfg = load_profile("quick")
    assert training_settings(cfg) == training_settings(cfg.replace(threshold=0.3))
    # ablation cells keep no weights: another threshold is another cell
    assert _cells.cell_key(cfg, None, "c.h5") != _cells.cell_key(cfg.replace(threshold=0.3), None, "c.h5")


def test_data_description_names_the_field_strength_or_its_mix():
    from ofrnn.fold_report import describe_data

    one = describe_data(dict(source="simulated", seed=0, n_subjects=114, acquisition=dict(field_t=3.0)))
    mixed = describe_data(dict(source="simulated", seed=0, n_subjects=114, acquisition=dict(field_t=None)))
    assert "3.0 T" in one and "1.5 or 3 T per subject" in mixed and "None" not in mixed


def test_a_profile_extends_another_and_the_cnn_profile_is_quick_with_the_cnn(tmp_path):
    from ofrnn.errors import OfrnnError
    from ofrnn.settings import load_profile

    quick_file = Path(__file__).parents[1] / "experiments" / "train.toml"
    f = tmp_path / "p.toml"
    common = quick_file.read_text().split("[quick]")[0]  # [common] of the project's file
    f.write_text(common + '[base]\n' + quick_file.read_text().split("[quick]")[1].split("[paper]")[0]
                 + '[child]\nextends = "base"\nlstm_units = 16\n[a]\nextends = "b"\n[b]\nextends = "a"\n')
    cfg = load_profile("child", f)
    assert (cfg.lstm_units, cfg.learning_rate, cfg.profile) == (16, 0.002, "child")
    with pytest.raises(OfrnnError, match="loop"):
        load_profile("a", f)
    quick, cnn = load_profile("quick"), load_profile("cnn")
    assert quick.local_learner == "lstm" and cnn.local_learner == "cnn"
    # the CNN keeps the learning rate its ten folds were measured at (experiments/train.toml)
    assert (quick.learning_rate, cnn.learning_rate) == (0.002, 0.001)
    assert cnn.replace(local_learner="lstm", learning_rate=0.002, profile="quick") == quick


def test_settings_refuse_unknown_missing_and_bad_values_naming_file_and_key(tmp_path):
    from ofrnn.errors import OfrnnError
    from ofrnn.settings import load_profile

    text = (Path(__file__).parents[1] / "experiments" / "train.toml").read_text()
    f = tmp_path / "t.toml"
    for edit, field, what in ((("lstm_units = 32", "lstm_unit = 32"), "lstm_unit", "unknown setting"),
                              (("patch = 11 ", "patch = 12 "), "patch", "must be odd"),
                              (('local_frame = "heart"', 'local_frame = "hart"'), "local_frame", "'hart' is not one"),
                              (("strata_fractions = [0.3, 0.3, 0.2, 0.2]", "strata_fractions = [0.3, 0.3, 0.2]"),
                               "strata_fractions", "must be 4 numbers"),
                              (("batch_size = 512", "batch_size = true"), "batch_size", "must be an integer"),
                              (('threshold = "auto"', 'threshold = "best"'), "threshold", "'best' is not")):
        assert edit[0] in text, edit
        f.write_text(text.replace(edit[0], edit[1], 1))
        with pytest.raises(OfrnnError) as e:
            load_profile("quick", f)
        assert (e.value.path, e.value.field) == (str(f), field) and what in e.value.message, str(e.value)
    f.write_text(text.replace("seed = 0\n", "", 1))
    with pytest.raises(OfrnnError, match="seed: missing setting"):
        load_profile("quick", f)
    with pytest.raises(OfrnnError, match="input_dropout: must be a number in"):
        load_profile("quick").replace(input_dropout=1.5)
    assert load_profile("wall", local_learner="cnn").wall_geometry == "learned"  # the CNN reads them too


def test_settings_records_are_the_plain_dicts_of_before():
    """Records and ablation cell keys of finished runs must not change: the plain form keeps lists,
    leaves out optional settings that are unset, and reads back into equal settings."""
    from ofrnn.settings import TrainingSettings, load_profile, training_settings

    cfg = load_profile("quick")
    plain = cfg.as_dict()
    assert plain["encoder_sizes"] == [64, 32, 16] and isinstance(plain["strata_fractions"], list)
    assert "infarct_share" not in plain and "augment" not in plain and "wall_geometry" not in plain
    assert TrainingSettings.from_mapping(json.loads(json.dumps(plain))) == cfg
    assert "infarct_share" in cfg.replace(infarct_share=0.5).as_dict()
    # a record written before local_frame existed ran with image-axis patches
    old = {k: v for k, v in plain.items() if k != "local_frame"}
    assert training_settings(old)["local_frame"] == "image" != cfg.local_frame
    assert "threshold" not in training_settings(cfg) and not any(k.startswith("localizer") for k in training_settings(cfg))


def test_weight_average_is_optional_recorded_only_when_set_and_replaces_the_weights_each_epoch():
    """``weight_average``: off by default and absent from records (cell keys stay); when set, the
    weights validated and kept at an epoch's end are the optimizer's moving average."""
    import keras

    from ofrnn.errors import OfrnnError
    from ofrnn.settings import load_profile
    from ofrnn.train import _optimizer

    quick = load_profile("quick")
    assert quick.weight_average is None and "weight_average" not in quick.as_dict()
    assert quick.replace(weight_average=0.99, profile="ema") == load_profile("ema")
    assert load_profile("ema").as_dict()["weight_average"] == 0.99
    with pytest.raises(OfrnnError, match="weight_average: must be a number in"):
        quick.replace(weight_average=1.0)

    x = np.random.default_rng(0).normal(size=(64, 3)).astype("float32")
    y = x @ np.array([[1.0], [-2.0], [0.5]], "float32")

    def fit(**kw):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        opt = _optimizer(0.05, **kw)
        model.compile(optimizer=opt, loss="mse")
        model.fit(x, y, batch_size=8, epochs=1, shuffle=False, verbose=0)  # 8 steps
        return model, opt

    plain, _ = fit()
    averaged, opt = fit(weight_average=0.9, steps=8)
    assert opt.use_ema and opt.ema_overwrite_frequency == 8
    for w, avg in zip(averaged.trainable_weights, opt._model_variables_moving_average):
        np.testing.assert_allclose(w.numpy(), avg.numpy())
    assert not np.allclose(plain.get_weights()[0], averaged.get_weights()[0])


def test_head_stage_trains_the_shared_discriminate_layers_on_frozen_motion_features(tmp_path):
    """``head_epochs``: the discriminate layers are fitted on P(p) computed once, leaving the LSTM-RNN as it
    is, and the whole network then answers with the trained layers (they are shared, not copied)."""
    import csv

    from ofrnn.pipeline import PixelBatches
    from ofrnn.settings import load_profile
    from ofrnn.train import _fit_head, _motion_features, build

    quick = load_profile("quick")
    assert quick.head_epochs == 0 and "head_epochs" not in quick.as_dict()
    assert load_profile("head").as_dict()["head_epochs"] > 0
    subs, s = _toy_pixels(64)
    cfg = load_profile("quick", frames=5, patch=5, lstm_units=4, encoder_sizes=[8, 4, 4], batch_size=16,
                       head_epochs=3, patience=3, eval_batch=20)
    train = PixelBatches(subs, s, patch=5, local_frame="heart", batch_size=16)
    val = PixelBatches(subs, {k: v[:20] for k, v in s.items()}, patch=5, local_frame="heart", batch_size=16)
    network, parts = build(cfg, train.global_shape)
    parts["normalization"].adapt(train.global_rows.reshape((len(train),) + tuple(parts["normalization"].input.shape[1:])))
    rnn_before = [w.copy() for w in parts["rnn"].get_weights()]
    head_before = [w.copy() for w in parts["head"].get_weights()]
    _fit_head(parts, train, val, cfg, tmp_path / "head.csv")
    for a, b in zip(rnn_before, parts["rnn"].get_weights()):
        np.testing.assert_array_equal(a, b)
    assert not all(np.allclose(a, b) for a, b in zip(head_before, parts["head"].get_weights()))
    loc, glo = train.inputs(np.arange(10))
    np.testing.assert_allclose(network.predict_on_batch([loc, glo]),
                               parts["head"].predict_on_batch(_motion_features(parts, train, np.arange(10), cfg)),
                               rtol=1e-5, atol=1e-6)
    with open(tmp_path / "head.csv") as f:
        rows = list(csv.DictReader(f))
    assert 1 <= len(rows) <= 3 and all(float(r["val_loss"]) > 0 for r in rows)


def test_an_extra_training_cohort_joins_the_training_subjects_only(toy_cohort, tiny_run, tmp_path):
    """Beyond the paper: every subject of ``extra_training_cohort`` is trained on, none is validated or
    tested on, the report says so, a rebuilt extra cohort is another run, and a missing file or the
    evaluated cohort itself is one error naming the setting."""
    import dataclasses

    from ofrnn.errors import OfrnnError
    from ofrnn.train import run_fold

    _, cfg, base = tiny_run
    extra = tmp_path / "extra.h5"
    subjects = [dataclasses.replace(toy_subject(i, infarct=i % 2 == 0, seed=1), id=f"extra{i}") for i in range(4)]
    write_cohort(extra, subjects, source="simulated", params=dict(seed=1))
    cfg = cfg.replace(extra_training_cohort=str(extra), localizer="none", lstm_epochs=1, ae_epochs=1,
                      finetune_epochs=1, lstm_layers=1)  # what is tested is who is trained on, not the fit
    out = tmp_path / "run"
    res = run_fold(toy_cohort, "holdout", cfg, out, cache_dir=tmp_path / "cache", progress=False)
    assert res["training_subjects"] == dict(cohort=len(base["split"]["train"]), extra=4)
    assert base["training_subjects"]["extra"] == 0
    assert res["training_pixels"] > base["training_pixels"]
    assert res["split"]["val"] == base["split"]["val"] and res["split"]["test"] == base["split"]["test"]
    scored = {row["id"] for row in res["metrics"]["per_subject"]}
    assert scored == set(base["split"]["test"]) and not scored & {s.id for s in subjects}
    assert res["data"]["extra_training"]["n_subjects"] == 4
    assert res["config"]["extra_training_cohort"] == str(extra) and "extra_training_cohort" not in base["config"]
    assert "Beyond the paper" in (out / "report.md").read_text()
    # a rebuilt extra cohort is not the finished run
    write_cohort(extra, subjects[:3], source="simulated", params=dict(seed=1))
    with pytest.raises(OfrnnError, match="extra training cohort"):
        run_fold(toy_cohort, "holdout", cfg, out, progress=False)
    for bad, why in ((tmp_path / "none.h5", "no such cohort file"), (toy_cohort, "evaluated cohort")):
        with pytest.raises(OfrnnError, match=why) as e:
            run_fold(toy_cohort, "holdout", cfg.replace(extra_training_cohort=str(bad)), tmp_path / "bad",
                     progress=False)
        assert e.value.field == "extra_training_cohort"


def test_an_extra_cohort_simulated_with_the_evaluated_seed_is_refused(tmp_path):
    """The simulator draws subject i from (seed, i): the same seed would train on the tested subjects."""
    from ofrnn.errors import OfrnnError
    from ofrnn.train import _distinct_cohorts

    cohorts = {}
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        cohorts[name] = tmp_path / f"{name}.h5"
        write_cohort(cohorts[name], [toy_subject(0, infarct=True, seed=seed)], source="simulated", params=dict(seed=seed))
    with pytest.raises(OfrnnError, match="simulated with its seed") as e:
        _distinct_cohorts(cohorts["a"], cohorts["b"])
    assert e.value.field == "extra_training_cohort"
    _distinct_cohorts(cohorts["a"], cohorts["c"])  # another seed is another set of subjects


def test_the_comparison_note_names_every_network_option_beyond_the_paper():
    from ofrnn.fold_report import comparison_note

    sizes = dict(lstm_layers=4, patch=11, frames=25, global_patch=3)
    assert "beyond the paper" not in comparison_note(sizes) and " follow the paper" in comparison_note(sizes)
    note = comparison_note(dict(sizes, local_learner="cnn", wall_geometry="learned"))
    assert note.count("beyond the paper") == 2 and "wall thickness" in note and "otherwise follow" in note
    assert "wall thickness" in comparison_note(dict(sizes, wall_geometry="learned"))


def test_fold_command_passes_every_option_to_the_fold_process(tmp_path):
    """--fold all trains each fold in a child process: its command line, parsed again, holds the same
    options with that fold and folder."""
    import argparse
    import sys

    from ofrnn.commands import train as cmd

    parser = argparse.ArgumentParser()
    cmd.add_arguments(parser)
    given = ["--cohort", "c.h5", "--fold", "all", "--profile", "cnn", "--settings", "s.toml", "--flow", "gt",
             "--roi", "detector", "--localizer", "loc", "--fold-localizer", "none", "--cache", "cache",
             "--threads", "2", "--force", "--out", "root"]
    args = parser.parse_args(given)
    line = cmd.fold_command(args, 4, tmp_path / "root" / "fold4")
    assert line[:4] == [sys.executable, "-m", "ofrnn", "train"]
    child = parser.parse_args(line[4:])
    assert child.fold == "4" and child.out == str(tmp_path / "root" / "fold4")
    assert {k: v for k, v in vars(child).items() if k not in ("fold", "out")} == \
           {k: v for k, v in vars(args).items() if k not in ("fold", "out")}
    # options left at their defaults stay so
    args = parser.parse_args(["--fold", "all"])
    child = parser.parse_args(cmd.fold_command(args, 0, tmp_path / "f0")[4:])
    assert child.settings is None and child.flow is None and child.localizer is None and not child.force


def test_cross_validation_trains_each_fold_in_its_own_process(toy_cohort, tmp_path, capsys, monkeypatch):
    """`ofrnn train --fold all` on a two-fold tiny profile: both folds are trained (by child
    processes) and aggregated; run again, it reuses them; a fold that fails stops it with one line."""
    import subprocess

    from ofrnn.cli import main

    started = []  # the fold processes the run starts, recorded on their way to subprocess.run
    real_run = subprocess.run
    monkeypatch.setattr(subprocess, "run", lambda cmd, *a, **k: started.append(cmd) or real_run(cmd, *a, **k))

    base = (Path(__file__).parents[1] / "experiments" / "train.toml").read_text()
    # what is tested is the run, not the fit: one epoch a stage, one LSTM layer, few pixels, and the
    # simulator's flow rather than flows estimated again in each fold's fresh cache
    one_epoch = dict(TINY, flow="gt", lstm_epochs=1, ae_epochs=1, finetune_epochs=1, lstm_layers=1,
                     pixels_per_subject=100, ae_samples=200)
    tiny = "\n[tiny]\nextends = \"quick\"\nn_folds = 2\nlocalizer = \"none\"\n" + "".join(
        f"{k} = {json.dumps(v)}\n" for k, v in one_epoch.items())
    settings = tmp_path / "train.toml"
    settings.write_text(base + tiny)
    line = ["train", "--cohort", str(toy_cohort), "--fold", "all", "--profile", "tiny", "--settings", str(settings),
            "--cache", str(tmp_path / "cache"), "--out", str(tmp_path / "cv")]
    assert main(line) == 0
    assert [c[c.index("--fold") + 1] for c in started] == ["0", "1"]
    assert all(c[c.index("--out") + 1] == str(tmp_path / "cv" / f"fold{k}") for k, c in enumerate(started))
    folds = [json.loads((tmp_path / "cv" / f"fold{k}" / "metrics.json").read_text()) for k in range(2)]
    assert [f["split"]["fold"] for f in folds] == ["0", "1"]
    tested = [s for f in folds for s in f["split"]["test"]]  # every toy subject tested exactly once
    with open_cohort(toy_cohort) as c:
        assert sorted(tested) == sorted(c.ids)
    summary = json.loads((tmp_path / "cv" / "cv" / "metrics.json").read_text())
    assert summary["n_folds"] == 2 and summary["profile"] == "tiny"
    stamp = (tmp_path / "cv" / "fold0" / "metrics.json").stat().st_mtime_ns
    assert main(line) == 0 and (tmp_path / "cv" / "fold0" / "metrics.json").stat().st_mtime_ns == stamp
    # a fold whose process fails (here: its folder holds another run) stops the run with one line
    (tmp_path / "cv2" / "fold0").mkdir(parents=True)
    (tmp_path / "cv2" / "fold0" / "settings.json").write_text("{}")
    capsys.readouterr()
    assert main(line[:-1] + [str(tmp_path / "cv2")]) == 2
    err = capsys.readouterr().err
    assert "fold 0 stopped with exit status 2" in err and "Traceback" not in err
    assert not (tmp_path / "cv2" / "fold1").exists()
