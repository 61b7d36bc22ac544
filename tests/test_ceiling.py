"""The yardstick (issue 10): heart-frame components and strain on analytic flows, feature shapes, a GBM
that beats chance on held-out toy subjects, determinism, and the experiment end to end on a toy cohort.

The toy cohort: a ring-shaped LV whose wall moves inwards and thickens over the cycle (area conserved),
except in an akinetic, thinned (infarcted) sector that keeps its end-diastolic position. Its exact
forward flows are stored with it and read back through the pipeline's ``flow="gt"`` path.
"""
import json
import tomllib
from pathlib import Path

import numpy as np
import pytest

from ofrnn.errors import OfrnnError
from ofrnn.experiments import _cells, ceiling
from ofrnn.flow import heart_components
from ofrnn.store import Subject, write_cohort

REPO = Path(__file__).resolve().parents[1]
T, H, W = 25, 72, 72
LEVELS = ("apical", "mid", "basal")


# -- analytic flows ---------------------------------------------------------------------------------------
def _grid(n=64, centre=None):
    c = (n - 1) / 2 if centre is None else centre
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32)
    return yy - c, xx - c


def test_heart_components_rotation_has_no_radial_part():
    dy, dx = _grid()
    phi = 0.3  # a rigid rotation about the centre, as a displacement p - q
    c, s = np.cos(phi), np.sin(phi)
    rotation = np.stack([c * dy - s * dx - dy, s * dy + c * dx - dx])[None]  # (1, 2, H, W)
    rc = heart_components(rotation)
    assert rc.shape == (1, 2, 64, 64)
    assert np.abs(rc[0, 0]).max() < 1e-4
    np.testing.assert_allclose(np.abs(rc[0, 1]), phi * np.hypot(dy, dx), atol=1e-3)


def test_heart_components_contraction_is_negative_radial():
    dy, dx = _grid()
    a = 0.1
    contraction = np.stack([-a * dy, -a * dx])[None]
    rc = heart_components(contraction)
    r = np.hypot(dy, dx)
    assert np.all(rc[0, 0][r > 0] < 0)
    np.testing.assert_allclose(rc[0, 0], -a * r, atol=1e-4)
    assert np.abs(rc[0, 1]).max() < 1e-4


def test_lagrangian_strain_of_contraction_and_rotation():
    dy, dx = _grid()
    a = 0.1
    e = ceiling.lagrangian_strain(np.stack([-a * dy, -a * dx]))
    np.testing.assert_allclose(e, 0.5 * ((1 - a) ** 2 - 1), atol=1e-5)  # uniform shortening both ways
    phi = 0.2  # a rigid rotation strains nothing (exact Green strain)
    c, s = np.cos(phi), np.sin(phi)
    u = np.stack([c * dy - s * dx - dy, s * dy + c * dx - dx])
    assert np.abs(ceiling.lagrangian_strain(u)).max() < 1e-5


def test_end_systole_is_the_most_contracted_frame():
    dy, dx = _grid()
    amp = np.sin(np.pi * np.arange(1, T) / (T - 1)) * np.linspace(1, 1.1, T - 1)
    radial = -amp[:, None, None] * np.ones((T - 1, 64, 64))
    assert ceiling.end_systole(radial) == int(np.argmax(amp))


# -- a toy cohort -----------------------------------------------------------------------------------------
def _r_in(t, akinetic):
    return 11.0 - (0.0 if akinetic else 4.0 * np.sin(np.pi * t / (T - 1)))


def toy_subject(i, *, infarct, level):
    rng = np.random.default_rng(100 + i)
    cy, cx = 36 + rng.uniform(-2, 2), 36 + rng.uniform(-2, 2)
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    rho, theta = np.hypot(yy - cy, xx - cx), np.arctan2(yy - cy, xx - cx)
    start = rng.uniform(-np.pi, np.pi)
    sector = (np.mod(theta - start, 2 * np.pi) < np.pi / 2) if infarct else np.zeros((H, W), bool)
    area = np.where(sector, 15.0 ** 2 - 11.0 ** 2, 18.0 ** 2 - 11.0 ** 2)  # thinned scar
    texture = 0.5 + 0.1 * np.sin(yy / 3.0) * np.cos(xx / 4.0)
    cine = np.empty((T, H, W), np.float32)
    myo_t, cav_t = np.empty((T, H, W), np.uint8), np.empty((T, H, W), np.uint8)
    boxes = np.empty((T, 4), np.int32)
    flow = np.zeros((T - 1, 2, H, W), np.float32)
    for t in range(T):
        r_in = np.where(sector, _r_in(t, True), _r_in(t, False))
        r_out = np.sqrt(r_in ** 2 + area)
        cav, myo = rho < r_in, (rho >= r_in) & (rho < r_out)
        cine[t] = np.where(cav, 1.0, np.where(myo, 0.25, texture)) + rng.normal(0, 0.03, (H, W))
        myo_t[t], cav_t[t] = myo, cav
        ys, xs = np.nonzero(myo | cav)
        boxes[t] = (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1)
        if t < T - 1:
            r_next = np.where(sector, _r_in(t + 1, True), _r_in(t + 1, False))
            d = np.sqrt(np.maximum(rho ** 2 + r_next ** 2 - r_in ** 2, 0)) - rho  # area between kept
            d = np.where(rho < r_out + 3, d, 0.0)
            flow[t] = d * np.sin(theta), d * np.cos(theta)
    myo0 = myo_t[0].astype(bool)
    aha = np.where(myo0, 7 + ((theta + np.pi) // (np.pi / 3)).astype(int) % 6, 0).astype(np.uint8)
    return Subject(id=f"toy{i:02d}", cine=cine, spacing_mm=(1.5, 1.5), level=level,
                   frame_times_ms=np.arange(T) * 40.0, infarct=(myo0 & sector).astype(np.uint8),
                   myocardium=myo0.astype(np.uint8), aha_segments=aha, lv_box=boxes, myocardium_t=myo_t,
                   lv_cavity_t=cav_t, flow=flow, flow_valid=myo_t[:-1].copy())


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    path = tmp_path_factory.mktemp("ceiling") / "toy.h5"
    write_cohort(path, [toy_subject(i, infarct=i % 4 != 3, level=LEVELS[i % 3]) for i in range(12)],
                 source="simulated")
    return path


@pytest.fixture(scope="module")
def prepared(cohort, tmp_path_factory):
    from ofrnn.pipeline import prepare_cohort

    return prepare_cohort(cohort, frames=T, roi="gt", flow="gt", margin=0.15, progress=False,
                          cache_dir=tmp_path_factory.mktemp("cache"))


def test_feature_maps_shapes_and_values(prepared):
    rs = next(r for r in prepared if r.infarct.any())
    myo = rs.myocardium.astype(bool)
    motion = ceiling.motion_features(rs)
    maps, names = motion
    assert maps.shape == (64, 64, 2 * (T - 1) + 13) and len(names) == maps.shape[-1] and maps.dtype == np.float32
    assert np.isfinite(maps).all()
    v = dict(zip(names, np.moveaxis(maps, -1, 0)))
    # the healthy wall moves inwards and thickens radially; the akinetic scar barely moves
    healthy, scar = myo & ~rs.infarct.astype(bool), rs.infarct.astype(bool)
    assert np.median(v["ur_peak"][healthy]) < -1.0 < np.median(v["ur_peak"][scar])
    assert np.median(v["err_es"][healthy]) > 0.1 > abs(np.median(v["err_es"][scar]))
    geo, gnames = ceiling.geometry_features(rs)
    assert geo.shape == (64, 64, 4) and gnames[0] == "depth"
    g = dict(zip(gnames, np.moveaxis(geo, -1, 0)))
    assert np.all((g["depth"][myo] > 0) & (g["depth"][myo] < 1)) and np.all(g["thickness_mm"][myo] > 0)
    assert np.median(g["thickness"][scar]) < np.median(g["thickness"][healthy])  # the scar is thinned
    ctx, cnames = ceiling.context_features(rs, motion, n_sectors=12)
    assert ctx.shape == (64, 64, 5 * len(ceiling.CONTEXT_CHANNELS)) and len(cnames) == ctx.shape[-1]
    assert np.isfinite(ctx[myo]).all()
    rank = ctx[..., cnames.index("ur_peak_rank")][myo]
    assert 0 < rank.min() and rank.max() < 1
    pos, _ = ceiling.position_features(rs)
    assert pos.shape == (64, 64, 2) and np.isfinite(pos).all()
    for frame in ("wall", "heart"):
        pg, pnames = ceiling.pg_features(rs, frame)
        assert pg.shape == (64, 64, (T - 1) * 27) and len(pnames) == len(set(pnames)) == pg.shape[-1]
    # OF-RNN's P_g in the heart frame: the centre sample's radial displacement since ED, most inward
    # over the cycle, is inward on the healthy wall and small on the scar
    centre = [i for i, n in enumerate(pnames) if n.startswith("heart_radial_4_f")]
    assert len(centre) == T - 1
    peak = ceiling.pg_features(rs, "heart")[0][..., centre].min(axis=-1)
    assert np.median(peak[healthy]) < -1.0 < np.median(peak[scar])
    table = ceiling.subject_features(rs, ceiling.GROUPS)
    assert table["label"].shape == (int(myo.sum()),) and table["label"].sum() == rs.infarct.sum()
    assert all(table[gr][0].shape[0] == myo.sum() for gr in ceiling.GROUPS)


def test_yardstick_beats_chance_on_held_out_subjects_and_is_deterministic(prepared):
    from ofrnn.metrics import pixel_metrics

    tables = {r.id: ceiling.subject_features(r, ["motion"]) for r in prepared}
    ids = [r.id for r in prepared]
    split = dict(train=ids[:6], val=ids[6:8], test=ids[8:])
    gbm = dict(max_iter=40, max_leaf_nodes=15, min_samples_leaf=20, early_stopping=True, n_iter_no_change=10)
    a = ceiling.fit_predict(tables, split, ["motion"], gbm, seed=0)
    y = np.concatenate([tables[s]["label"] for s in split["test"]])
    p = np.concatenate([a["test_probs"][s] for s in split["test"]])
    m = pixel_metrics(y, p >= a["threshold"], p)
    assert m["roc_auc"] > 0.8 and m["dice"] > 0.5
    b = ceiling.fit_predict(tables, split, ["motion"], gbm, seed=0)
    assert a["threshold"] == b["threshold"]
    for s in split["test"]:
        np.testing.assert_array_equal(a["test_probs"][s], b["test_probs"][s])
    by_id = {r.id: r for r in prepared}
    fm = ceiling.fold_metrics([by_id[s] for s in split["test"]], a["test_probs"], a["threshold"])
    assert fm["myocardium"]["roc_auc"] == pytest.approx(m["roc_auc"]) and "all" in fm["segments"]


def _config(cohort, tmp_path):
    config = tomllib.loads((REPO / "experiments" / "ceiling.toml").read_text())
    config.update(cohort=str(cohort), cache=str(tmp_path / "cache"), progress=False,
                  rows={k: config["rows"][k] for k in ("motion", "position")})
    config["profile"]["smoke"].update(subjects=None, folds=[0])
    return config


def test_experiment_end_to_end_and_rerun(cohort, tmp_path):
    config = _config(cohort, tmp_path)
    out = tmp_path / "results" / "ceiling"
    assert ceiling.run(config, "smoke", out) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert [(r["row"], r["flow"]) for r in m["rows"]] == [("motion", "gt"), ("position", None)]
    assert m["rows"][0]["beyond"].startswith("none") and m["rows"][1]["beyond"] == "slice level"
    assert m["folds"] == [0] and set(m["splits"]["0"]) == {"train", "val", "test"}
    assert m["rows"][0]["summary"]["roc_auc"]["mean"] > 0.7
    assert "sklearn" in m["versions"] and m["seed"] == 0 and m["timings"]["wall_s"] > 0
    text = (out / "report.md").read_text()
    assert "| own motion | exact (simulator) | none" in text and (out / "dice.png").stat().st_size > 1000
    cell = out / "cells" / "motion-gt" / "fold0.json"
    before = cell.stat().st_mtime_ns
    ceiling.run(config, "smoke", out)  # finished cells are read back
    assert cell.stat().st_mtime_ns == before
    # make report shows the rows when results/ceiling exists, and says nothing of it otherwise
    from ofrnn.experiments import report

    rcfg = tomllib.loads((REPO / "experiments" / "report.toml").read_text())
    rcfg.update(results=str(tmp_path / "results"), output=str(tmp_path / "REPORT.md"))
    report.run(rcfg, "quick", tmp_path / "report")
    text = (tmp_path / "REPORT.md").read_text()
    assert "## Yardstick" in text and "| own motion | gt | none (its flow and the ROI centre) | 1 |" in text
    assert "| make ceiling |" in text
    rcfg.update(results=str(tmp_path / "empty"))
    report.run(rcfg, "quick", tmp_path / "report")
    text = (tmp_path / "REPORT.md").read_text()
    assert "Yardstick" not in text and "make ceiling" not in text


def test_settings_parse_for_every_profile():
    config = tomllib.loads((REPO / "experiments" / "ceiling.toml").read_text())
    assert {"full", "quick", "smoke"} <= set(config["profile"])
    for profile in config["profile"]:
        cfg = ceiling._settings(config, profile)
        ceiling.make_classifier(cfg["gbm"], 0)
        assert _cells.fold_list(cfg, ceiling._train_settings(cfg).n_folds)
    full = ceiling._settings(config, "full")
    assert full["folds"] == "all" and full["train_profile"] == "quick"
    assert [r["groups"] for r in full["rows"].values()] == [
        ["motion"], ["motion", "geometry"], ["motion", "context"], ["motion", "geometry", "context"], ["pg_heart"],
        ["pg_wall"], ["position"]]


def test_bad_settings_are_one_clear_error(cohort, tmp_path):
    config = _config(cohort, tmp_path)
    config["rows"]["motion"]["groups"] = ["motion", "magic"]
    with pytest.raises(OfrnnError, match="rows.motion.groups"):
        ceiling.run(config, "smoke", tmp_path / "o")
    config = _config(tmp_path / "missing.h5", tmp_path)
    with pytest.raises(OfrnnError, match="no such cohort"):
        ceiling.run(config, "smoke", tmp_path / "o")
    with pytest.raises(OfrnnError, match="class_weight"):
        ceiling.make_classifier(dict(class_weight="auto"), 0)
    with pytest.raises(OfrnnError, match="flows"):
        ceiling.motion_features(type("R", (), dict(id="x", flows=None))())
