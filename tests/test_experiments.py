"""Paper experiments (Tables 1-2, Fig. 3(e), figures, report) and the distribution strategy helper.

Settings files are parsed for every profile; each ablation runs end to end at its smoke profile on a
tiny simulated cohort (8 slices, 96x96, 8 frames, simulator flows); the report is generated from
stored metrics only; strategy selection is checked without GPUs.
"""
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ofrnn.errors import OfrnnError
from ofrnn.experiments import _cells

REPO = Path(__file__).resolve().parents[1]
ABLATIONS = ("ablation_features", "ablation_classifier", "ablation_patchsize")


def settings(name):
    return tomllib.loads((REPO / "experiments" / f"{name}.toml").read_text())


# -- settings ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ABLATIONS)
def test_ablation_settings_parse_for_every_profile(name):
    config = settings(name)
    assert {"quick", "paper", "smoke"} <= set(config["profile"])
    for profile in config["profile"]:
        cfg = _cells.resolve(config, profile)
        for cell in cfg["cells"]:
            tcfg = _cells.cell_settings(cfg, cell)
            # every cell is a complete training configuration on the folds of `make train`
            assert tcfg.profile == f"{cfg['train_profile']}+{profile}"
            folds = _cells.fold_list(cfg, tcfg.n_folds)
            assert folds and all(0 <= k < tcfg.n_folds for k in folds)
    assert _cells.resolve(config, "paper")["folds"] == "all"
    # the dispatcher's default profile name maps onto the experiment's default
    assert _cells.resolve(config, "full")["profile"] == config["default_profile"]
    with pytest.raises(OfrnnError, match="unknown profile"):
        _cells.resolve(config, "nope")


def test_profile_extends_another():
    quick = _cells.resolve(settings("ablation_features"), "quick")
    quick2 = _cells.resolve(settings("ablation_features"), "quick2")
    assert quick2["folds"] == [3, 4] and quick["folds"] == [3]
    assert quick2.get("overrides") == quick.get("overrides") and quick2["train_profile"] == quick["train_profile"]
    bad = settings("ablation_features")
    bad["profile"]["loop"] = {"extends": "quick2"}
    with pytest.raises(OfrnnError, match="not a plain profile"):
        _cells.resolve(bad, "loop")


def test_ablation_cells_are_the_papers():
    feats = _cells.resolve(settings("ablation_features"), "paper")["cells"]
    assert {c: v["features"] for c, v in feats.items()} == {"local": "local", "global": "global", "both": "both"}
    cls = _cells.resolve(settings("ablation_classifier"), "paper")["cells"]
    assert list(cls) == ["svm", "sae", "dbn", "cnn", "rnn", "lstm"]
    assert "block" not in cls["lstm"] and all(cls[c]["block"]["kind"] == c for c in ("svm", "sae", "dbn", "cnn", "rnn"))
    ps = _cells.resolve(settings("ablation_patchsize"), "paper")["cells"]
    assert [v["patch"] for v in ps.values()] == list(range(3, 18, 2))


def test_identical_cells_share_one_key():
    """The full model of Table 1, Table 2 (LSTM-RNN) and Fig. 3(e) (N = 11) is trained once."""
    keys = []
    for name, cell in (("ablation_features", "both"), ("ablation_classifier", "lstm"), ("ablation_patchsize", "n11")):
        cfg = _cells.resolve(settings(name), "quick")
        keys.append(_cells.cell_key(_cells.cell_settings(cfg, cell), cfg["cells"][cell].get("block"), "c.h5"))
    assert len(set(keys)) == 1
    cfg = _cells.resolve(settings("ablation_features"), "quick")
    assert _cells.cell_key(_cells.cell_settings(cfg, "local"), None, "c.h5") != keys[0]


def test_cell_and_fold_selection_from_environment(monkeypatch):
    monkeypatch.setenv("OFRNN_CELLS", "both")
    monkeypatch.setenv("OFRNN_FOLDS", "4,5")
    cfg = _cells.resolve(settings("ablation_features"), "paper")
    assert list(cfg["cells"]) == ["both"] and cfg["folds"] == [4, 5]
    monkeypatch.setenv("OFRNN_CELLS", "bogus")
    with pytest.raises(OfrnnError, match="unknown cells"):
        _cells.resolve(settings("ablation_features"), "paper")


def test_bad_setting_names_the_file_or_the_variable(tmp_path, monkeypatch, capsys):
    """A bad value is one error line that names where it came from: the settings file's key, or the
    environment variable that overrode it. (Checks that run before the cohort is opened: CI has none.)"""
    from ofrnn import cli

    bad = tmp_path / "bad.toml"
    bad.write_text((REPO / "experiments" / "ablation_features.toml").read_text()
                   + '\n[profile.loop]\nextends = "nope"\n')
    monkeypatch.chdir(REPO)
    argv = ["experiment", "ablation_features", "--config", str(bad), "--profile", "loop", "--out", str(tmp_path / "o")]
    assert cli.main(argv) == 2
    assert f"{bad}: profile.loop.extends: extends 'nope'" in capsys.readouterr().err
    monkeypatch.setenv("OFRNN_CELLS", "bogus")
    assert cli.main(["experiment", "ablation_features", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "OFRNN_CELLS: unknown cells ['bogus']" in err and ".toml" not in err
    monkeypatch.delenv("OFRNN_CELLS")
    monkeypatch.setenv("OFRNN_FOLDS", "11")
    cfg = _cells.resolve(settings("ablation_features"), "quick")
    with pytest.raises(OfrnnError) as e:
        _cells.fold_list(cfg, 10)
    assert e.value.field == "OFRNN_FOLDS" and e.value.path is None


@pytest.mark.parametrize("name", ("figures", "report"))
def test_plain_settings_parse(name):
    config = settings(name)
    for profile in config["profile"]:
        cfg = _cells.resolve_plain(config, profile)
        assert cfg["results"] == "results"


# -- strategy ---------------------------------------------------------------------------------------------
def test_strategy_selection():
    from ofrnn.distribute import strategy_kind

    assert strategy_kind(environ={}, gpus=0) == "default"
    assert strategy_kind(environ={}, gpus=1) == "default"
    assert strategy_kind(environ={}, gpus=4) == "mirrored"
    two = json.dumps({"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}})
    one = json.dumps({"cluster": {"worker": ["a:1"]}, "task": {"type": "worker", "index": 0}})
    assert strategy_kind(environ={"TF_CONFIG": two}, gpus=0) == "multiworker"
    assert strategy_kind(environ={"TF_CONFIG": one}, gpus=0) == "default"
    assert strategy_kind(environ={"OFRNN_STRATEGY": "mirrored"}, gpus=0) == "mirrored"
    with pytest.raises(ValueError, match="OFRNN_STRATEGY"):
        strategy_kind(environ={"OFRNN_STRATEGY": "tpu"}, gpus=0)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        strategy_kind(environ={"TF_CONFIG": "{not json"}, gpus=0)


def test_training_strategy_on_this_cpu(monkeypatch):
    pytest.importorskip("tensorflow")
    import tensorflow as tf

    from ofrnn.distribute import describe, training_strategy

    if tf.config.list_physical_devices("GPU"):
        pytest.skip("this check is for CPU-only machines")
    monkeypatch.delenv("TF_CONFIG", raising=False)
    monkeypatch.delenv("OFRNN_STRATEGY", raising=False)
    s = training_strategy()
    assert describe(s)["replicas"] == 1
    assert s is tf.distribute.get_strategy()


# -- local blocks of Table 2 ------------------------------------------------------------------------------
def test_local_blocks_shapes_and_rbm_pretraining():
    from ofrnn.experiments.ablation_classifier import _cnn, _dbn, _rnn, _sae

    from ofrnn.settings import load_profile

    cfg = load_profile("quick").replace(frames=4, patch=5, lstm_units=6, lstm_layers=2, input_dropout=0.0, seed=0,
                                        batch_size=32, learning_rate=1e-3)
    x = np.random.default_rng(0).uniform(-0.2, 1.2, (64, 4 * 25)).astype(np.float32)
    patches = x.reshape(64, 4, 25)
    dbn = _dbn(cfg, dict(sizes=[8, 6, 3], pretrain_epochs=1, rbm_learning_rate=0.05, rbm_batch=16), x)
    assert dbn.predict_on_batch(patches).shape == (64, 3)
    # the first layer holds the RBM's weights: sigmoid(W v + b) of the clipped input
    w, b = dbn.get_layer("dbn_1").get_weights()
    first = 1 / (1 + np.exp(-(np.clip(x, 0, 1) @ w + b)))
    sub = type(dbn)(dbn.inputs, dbn.get_layer("dbn_1").output)
    np.testing.assert_allclose(sub.predict_on_batch(patches), first, atol=1e-5)
    assert _sae(cfg, dict(sizes=[8, 6, 3], pretrain_epochs=1), x).predict_on_batch(patches).shape == (64, 3)
    assert _rnn(cfg, {}).predict_on_batch(patches).shape == (64, 6)
    assert _cnn(cfg, dict(filters=[2, 3])).predict_on_batch(patches).shape == (64, 6)


# -- tiny end-to-end runs ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A tiny cohort and a results root with every ablation run at the smoke profile."""
    pytest.importorskip("tensorflow")
    from ofrnn.simulate import simulate_cohort

    root = tmp_path_factory.mktemp("exp")
    cohort = root / "tiny.h5"
    simulate_cohort(cohort, n_subjects=8, seed=1, matrix=96, frames=8, progress=False)
    results = root / "results"

    def run(name, **extra):
        from importlib import import_module

        config = settings(name)
        config.update(cohort=str(cohort), cells_dir=str(results / "cells"), cache=str(root / "cache"), threads=0)
        config["profile"]["smoke"].update(extra)
        import_module(f"ofrnn.experiments.{name}").run(config, "smoke", results / name)
        return json.loads((results / name / "metrics.json").read_text())

    out = dict(root=root, results=results, run=run)
    out["features"] = run("ablation_features")
    # Table 2 at smoke scale: the SVM and the RBM-pre-trained DBN end to end (the other blocks'
    # builders are checked above); the LSTM-RNN cell is Table 1's full model, read back
    out["classifier"] = run("ablation_classifier", only=["svm", "dbn", "lstm"])
    out["patchsize"] = run("ablation_patchsize")
    return out


def test_features_ablation_smoke(tiny):
    m = tiny["features"]
    assert set(m["cells"]) == {"local", "global", "both"}
    for s in m["cells"].values():
        assert s["folds"] == [0]
        for k in ("accuracy", "sensitivity", "specificity"):
            v = s["myocardium"][k]["mean"]
            assert v is None or 0.0 <= v <= 1.0
        npz = np.load(Path(s["folder"]) / "fold0.npz")
        assert npz["prob"].shape == npz["infarct"].shape == npz["image"].shape
        assert npz["prob"].shape[1:] == (64, 64)
    assert m["paper"]["both"]["accuracy"] == 94.3
    text = (tiny["results"] / "ablation_features" / "report.md").read_text()
    assert "92.6 / 86.5 / 97.9" in text and "roc_pr.png" in text
    assert (tiny["results"] / "ablation_features" / "roc_pr.png").stat().st_size > 0


def test_classifier_and_patchsize_smoke_share_the_full_model(tiny):
    c, f, p = tiny["classifier"], tiny["features"], tiny["patchsize"]
    assert set(c["cells"]) == {"svm", "dbn", "lstm"}
    assert c["cells"]["lstm"]["folder"] == f["cells"]["both"]["folder"] == p["cells"]["n11"]["folder"]
    assert c["cells"]["svm"]["predict_s_per_subject"]["mean"] > 0
    assert p["patch"] == {"n03": 3, "n11": 11}
    assert (tiny["results"] / "ablation_patchsize" / "patchsize.png").is_file()
    assert "| 3 |" in (tiny["results"] / "ablation_patchsize" / "report.md").read_text()


def test_rerun_skips_finished_cells(tiny):
    folder = Path(tiny["features"]["cells"]["local"]["folder"])
    stamp = (folder / "fold0.json").stat().st_mtime_ns
    again = tiny["run"]("ablation_features")
    assert (folder / "fold0.json").stat().st_mtime_ns == stamp
    assert again["cells"]["local"] == tiny["features"]["cells"]["local"]


def test_a_cell_trained_on_other_subjects_is_not_reused(tiny):
    from ofrnn.errors import OfrnnError

    folder = Path(tiny["features"]["cells"]["local"]["folder"])
    stored = json.loads((folder / "fold0.json").read_text())
    from ofrnn.settings import TrainingSettings

    tcfg, cohort = TrainingSettings.from_mapping(stored["settings"]), tiny["root"] / "tiny.h5"
    assert stored["split"] == _cells.split_for(cohort, 0, tcfg)
    # a block without its learner fails only when the cell must be trained: reading back it passes
    block = {"kind": "svm"}
    assert _cells.run_cell(cohort, 0, tcfg, folder, block=block) == stored
    old = {**stored, "split": {**stored["split"], "val": stored["split"]["train"][:1]}}
    (folder / "fold0.json").write_text(json.dumps(old))
    try:
        with pytest.raises(OfrnnError, match="learner"):
            _cells.run_cell(cohort, 0, tcfg, folder, block=block)
    finally:
        (folder / "fold0.json").write_text(json.dumps(stored))


def test_figures_and_report_from_the_smoke_results(tiny):
    from ofrnn.experiments import figures, report

    results = tiny["results"]
    cfg = settings("figures")
    cfg["results"] = str(results)
    figures.run(cfg, "smoke", results / "figures")
    made = json.loads((results / "figures" / "metrics.json").read_text())
    assert {"fig2_overlays.png", "fig3ab_roc_pr.png", "fig3cd_local_global.png", "fig3e_patchsize.png"} <= set(
        made["made"])
    assert made["missing"] == {"fig4_flow.png": "not run yet: make flow-bench"}
    cfg = settings("report")
    cfg.update(results=str(results), output=str(results / "REPORT.md"))
    report.run(cfg, "smoke", results / "report")
    text = (results / "REPORT.md").read_text()
    assert "not run yet: make localize" in text and "not run yet: make flow-bench" in text
    assert "80.9" in text and "87.3 / 79.4 / 96.2" in text and "figures/fig2_overlays.png" in text


# -- report from stored metrics only ----------------------------------------------------------------------
def _cell(acc):
    s = {k: dict(mean=acc, sd=0.0) for k in _cells.METRICS}
    return dict(folds=[3], folder="x", n_test=11, seed=0, n_folds=10, myocardium=s, roi=s,
                dice_myocardium_mean=dict(mean=0.5, sd=0.0), train_s=dict(mean=60.0, sd=0.0),
                predict_s_per_subject=dict(mean=1.0, sd=0.0))


def test_report_from_fixture_metrics(tmp_path):
    from ofrnn.experiments import report

    r = tmp_path / "results"
    for name, cells in (("ablation_features", dict(local=0.9, both=0.95, **{"global": 0.8})),
                        ("ablation_classifier", dict(svm=0.7, rnn=0.85, lstm=0.8)),
                        ("ablation_patchsize", dict(n03=0.8, n11=0.9, n17=0.905))):
        (r / name).mkdir(parents=True)
        m = dict(cells={c: _cell(a) for c, a in cells.items()}, seconds=12.0)
        if name == "ablation_patchsize":
            m["patch"] = {c: int(c[1:]) for c in cells}
        (r / name / "metrics.json").write_text(json.dumps(m))
        (r / name / "report.md").write_text(f"# {name}\n\n![plot](plot.png)\n")
    (r / "flow").mkdir()
    (r / "flow" / "metrics.json").write_text(json.dumps(dict(seconds=5.0, simulated=dict(table={
        "deep": dict(aae_mean=4.0, aae_sd=1.0, density=1.0, ms_per_pair_median=20.0),
        "hs": dict(aae_mean=6.0, aae_sd=2.0, density=1.0, ms_per_pair_median=5.0)}))))
    (r / "train" / "fold3").mkdir(parents=True)
    pm = {k: 0.9 for k in ("accuracy", "sensitivity", "specificity", "precision", "dice", "roc_auc")}
    (r / "train" / "fold3" / "metrics.json").write_text(json.dumps(dict(
        split=dict(scheme="10-fold CV; test fold 3"), config=dict(profile="quick"), timings=dict(total=100.0),
        metrics=dict(roi=pm, myocardium=pm, segments=dict(accuracy=dict(apical=0.97, mid=0.96, all=0.965))))))
    (r / "train" / "holdout").mkdir()
    (r / "train" / "holdout" / "metrics.json").write_text(json.dumps(dict(
        split=dict(scheme="holdout 2/3 train - 1/3 test"), config=dict(profile="quick"), timings=dict(total=50.0),
        metrics=dict(roi=pm, myocardium=pm, segments=dict(accuracy=dict(apical=0.5, mid=0.96, all=0.7))))))
    (r / "train" / "fold3-variant").mkdir()  # development folders are not the paper's evaluation
    (r / "train" / "fold3-variant" / "metrics.json").write_text(json.dumps(dict(threshold=0.5)))
    cfg = settings("report")
    cfg.update(results=str(r), output=str(r / "REPORT.md"))
    report.run(cfg, "quick", tmp_path / "out")
    text = (r / "REPORT.md").read_text()
    # paper numbers beside ours, sub-report links rebased onto their folders, missing parts named
    # one stored fold: no "± 0.00" over one fold, but the fold's own values (intervals when it has them)
    assert "94.35" in text and "99.2" in text and "| apical | 99.2 | 97.0 |" in text
    assert "| accuracy | 94.35 | 90.00 | 90.00 |" in text and "**One fold only** (fold3" in text
    assert "What is comparable with the paper" in text and "another split" in text
    assert "Segment level, paper's split" in text and "| apical | 99.2 | 50.0 |" in text
    assert "](ablation_features/plot.png)" in text
    assert "not run yet: make localize" in text and "not run yet: make phantom-stats" in text
    assert "| Table 1: both > local > global (accuracy) | both 95.0 %, local 90.0 %, global 80.0 % | yes |" in text
    assert "| Table 2: LSTM-RNN best (ROC AUC) | svm 70.0 %, rnn 85.0 %, lstm 80.0 % | **no** |" in text
    assert "Table 3: deep OF lowest dense AAE | lowest of deep/HS/pyramid HS: deep | yes |" in text
    # N = 11 within one point of the best (N = 17)
    assert "N=17: 90.5 %; smallest N within 1 point of the best: 11 | yes |" in text
    summary = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert summary["present"]["ablation-features"] and not summary["present"]["localize"]


def test_experiment_help_lists_the_profiles_each_settings_file_has():
    """`ofrnn experiment --help` names every experiment's profiles and its default, as the TOML files do."""
    import re
    import tomllib
    from pathlib import Path

    from ofrnn.commands import experiment

    root = Path(__file__).resolve().parents[1] / "experiments"
    listed = {}
    table = experiment.__doc__.split("Profiles per experiment")[1]
    # rows: "  names   profiles", the profiles possibly on the next, deeper-indented line
    for names, profiles in re.findall(r"^  ([a-z_][a-z_, ]*?)\s{2,}(\S.*)$", re.sub(r"\n {4,}", "   ", table), re.M):
        for name in names.replace(",", " ").split():
            listed[name] = re.sub(r" \(.*?\)", "", profiles).strip().split(", ")
    assert set(listed) == {p.stem for p in root.glob("*.toml")} - {"train"}
    for name, profiles in listed.items():
        cfg = tomllib.loads((root / f"{name}.toml").read_text())
        have = set(cfg.get("profile", {})) | ({"full"} if "default_profile" not in cfg or
                                              cfg["default_profile"] == "full" else set())
        assert {p.rstrip("*") for p in profiles} == have, name
        (default,) = [p.rstrip("*") for p in profiles if p.endswith("*")]
        assert default == cfg.get("default_profile", "full"), name


def test_experiments_that_use_tensorflow_get_it_imported_quietly():
    """An experiment module whose import pulls in TensorFlow is in TENSORFLOW_EXPERIMENTS (so `ofrnn
    experiment` imports it quietly first); the set names real modules. (The ablations import it only
    when they train, and are in the set for that.)"""
    import subprocess
    import sys
    from pathlib import Path

    from ofrnn.commands.experiment import TENSORFLOW_EXPERIMENTS

    folder = Path(__file__).resolve().parents[1] / "ofrnn" / "experiments"
    names = {f.stem for f in folder.glob("[a-z]*.py")}
    assert TENSORFLOW_EXPERIMENTS <= names
    for name in sorted(names - TENSORFLOW_EXPERIMENTS):
        code = f"import sys, ofrnn.experiments.{name}; print('tensorflow' in sys.modules)"
        pulled = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        assert pulled.stdout.strip() == "False", name


def test_large_motion_pairs_ground_truth_maps_first_image_onto_second():
    from ofrnn.experiments.flow import large_motion_pairs
    from ofrnn.flow import _pyramid

    rng = np.random.default_rng(0)
    a = _pyramid.gaussian(rng.random((1, 96, 128)).astype(np.float32), 3.0)[0] * 255
    out = large_motion_pairs([("x", a, a, None)], per_pair=3, seed=1, shift_px=20.0)
    assert len(out) == 3
    for name, a0, b, gt, valid in out:
        assert gt.shape == (2, 96, 128) and valid.shape == (96, 128) and 0.3 < valid.mean() < 1
        assert 1.0 < np.abs(gt).max() <= 20.0 * 1.1 + 0.05 * 128  # shift + rotation/scale about the centre
        # b(x + gt(x)) = a(x) where the point stays in the frame
        warped = _pyramid.sample(b[None], (np.arange(96)[:, None] + gt[0])[None], (np.arange(128)[None] + gt[1])[None])[0]
        inner = valid & np.pad(np.ones((86, 118), bool), 5)
        assert np.abs(warped - a0)[inner].mean() < 0.02 * a0.std()


def test_edes_pairs_take_the_frame_furthest_from_end_diastole_with_traced_ground_truth():
    from ofrnn.experiments.flow import edes_pairs

    T, H, W = 7, 24, 24
    cine = np.arange(T, dtype=np.float32)[:, None, None] * np.ones((T, H, W), np.float32)
    # uniform motion: +0.5 px down per frame for 4 frames, then back up by 0.5 px per frame
    gt = np.zeros((T - 1, 2, H, W), np.float32)
    gt[:4, 0], gt[4:, 0] = 0.5, -0.5
    myo = np.zeros((T - 1, H, W), bool)
    myo[:, 8:16, 8:16] = True
    [(name, ed, es, disp, mask)] = edes_pairs([("S1", cine, gt, myo, myo)])
    assert name == "S1 ED->4"
    assert ed[0, 0] == 0 and es[0, 0] == 4  # frame 4 has moved 2 px, the most
    np.testing.assert_allclose(disp[0][mask], 2.0, atol=1e-5)
    np.testing.assert_allclose(disp[1][mask], 0.0, atol=1e-6)
    assert mask is myo[0] or np.array_equal(mask, myo[0])


def test_sunnybrook_cases_keep_the_real_data_split(shared_data):
    from ofrnn.experiments.flow import sunnybrook_cases
    from ofrnn.experiments.realdata import real_split, sunnybrook_patient

    folder = shared_data / "sunnybrook"
    cal = sunnybrook_cases(folder, calibration=True)
    ev = sunnybrook_cases(folder, calibration=False)
    patients = lambda cases: {sunnybrook_patient(c[0]) for c in cases}  # noqa: E731
    assert patients(cal) == set(real_split()["calibration_sunnybrook"])
    assert cal and ev and not patients(cal) & patients(ev)
    for _, frames, ed, es, spacing in cal + ev:
        h, w = frames.shape[1:]
        # the crop holds both contours, and the ED contour is resampled densely (every 0.5 px)
        for c in (ed, es):
            assert c.min() >= 0 and c[:, 0].max() <= h - 1 and c[:, 1].max() <= w - 1
        assert np.hypot(*np.diff(ed, axis=0).T).max() <= 0.5 + 1e-9
        assert frames.shape[0] >= 2 and 0.5 < spacing < 3
