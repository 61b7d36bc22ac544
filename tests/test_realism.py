"""Phantom realism measurement (issue 12): frame statistics on known images, the split of real
frames, and the cross-fitting that never scores a frame with a model that saw its subject."""
import re

import numpy as np
import pytest
from scipy import ndimage as ndi

from ofrnn.experiments import realism as R
from ofrnn.experiments import realism_measures as M


def _disk(shape, cy, cx, r):
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r ** 2


def test_radial_spectrum_is_flat_for_white_noise_and_falls_for_smooth_images():
    from scipy import ndimage as ndi

    noise = np.random.default_rng(0).normal(size=(128, 128))
    flat = M.radial_spectrum(noise, bins=16)
    assert flat.shape == (16,)
    assert np.ptp(flat[2:]) < 0.3  # white: equal power per frequency (the lowest bands feel the window)
    smooth = M.radial_spectrum(ndi.gaussian_filter(noise, 3.0), bins=16)
    assert smooth[-1] < smooth[1] - 4  # a 3-px blur removes the high frequencies (decades of power)
    assert np.all(np.diff(smooth[1:]) < 0)


def test_tissue_measures_known_answer():
    shape = (100, 100)
    img = np.zeros(shape, np.float32)
    body = _disk(shape, 50, 50, 40)
    img[body] = 0.4
    myo = _disk(shape, 50, 50, 12)
    blood = _disk(shape, 50, 50, 8)
    img[myo] = 0.3
    img[blood] = 1.0
    lung = _disk(shape, 50, 78, 8)
    img[lung] = 0.05
    img[~body] = 0.02  # the noise floor of the air
    img[~body & (np.arange(shape[0])[:, None] < 90)] = 0.0  # blanked by the reconstruction (most of the air): not air
    m = M.tissue_measures(img, blood, myo & ~blood)
    assert m["myocardium_blood"] == pytest.approx(0.3)
    assert m["body_fraction"] == pytest.approx(body.mean(), abs=0.01)
    assert m["blood_percentile"] == pytest.approx(100 * (1 - blood.sum() / body.sum()), abs=0.5)
    assert m["body_q50"] == pytest.approx(0.4)
    assert m["bright_share"] == pytest.approx(blood.sum() / body.sum(), abs=0.005)
    # the lung, plus the hull's rim of air pixels (under 1 % of the body)
    assert m["dark_share"] == pytest.approx(lung.sum() / body.sum(), abs=0.015)
    assert m["air_blood"] == pytest.approx(0.02)


def test_pixel_scale_measures_known_answer():
    """A flat plateau is all flat and tied; white noise of known sd gives that sd (despite specks,
    which a mean-based estimate would take for noise) and the Rayleigh median of its gradient."""
    rng = np.random.default_rng(0)
    img = np.zeros((200, 200))
    img[:, :100] = 0.2  # grey band
    sd = 0.03
    noise = 1.0 + rng.normal(0, sd, 200 * 100)  # bright band
    noise[rng.choice(noise.size, 100, replace=False)] += 0.6  # specks: 0.25 % of the frame, under its p99
    img[:, 100:] = noise.reshape(200, 100)
    body = np.ones(img.shape, bool)
    m = M.pixel_scale_measures(img, body)
    p99 = np.percentile(img, 99)
    assert m["px_grey_flat"] == 1.0
    assert m["px_grey_ties"] == pytest.approx(97 / 98)  # columns 2-99; 99's right neighbour is bright
    assert m["px_grey_noise"] == 0.0 and m["px_grey_gradient"] == 0.0
    # the mean of |response| reads 1.28 x the sd here, the median 1.05 x
    assert m["px_bright_noise"] == pytest.approx(sd / p99, rel=0.1)
    # central differences of white noise: each component sd / sqrt(2), so the magnitude is Rayleigh
    assert m["px_bright_gradient"] == pytest.approx(sd / p99 / np.sqrt(2) * np.sqrt(2 * np.log(2)), rel=0.05)
    # a pixel is the darkest of its 9 with probability 1/9, and the quantisation's ties (neighbours
    # a few levels apart) only add to that
    assert 1 / 9 - 0.02 < m["px_bright_flat"] < 0.25
    assert 0.0 < m["px_bright_ties"] < 0.2
    # bands without pixels (none in 0.3-0.7 here), with too few, or outside the body are NaN
    assert np.isnan(m["px_mid_noise"]) and np.isnan(m["px_dark_flat"])
    assert set(m) == set(M.PIXEL_SCALE_LABELS)
    assert np.isnan(M.pixel_scale_measures(img, np.zeros(img.shape, bool))["px_bright_noise"])
    few = np.zeros(img.shape, bool)
    few[50:56, 150:158] = True  # 48 pixels
    assert np.isnan(M.pixel_scale_measures(img, few)["px_bright_noise"])
    assert np.isfinite(M.pixel_scale_measures(img, few, min_pixels=40)["px_bright_noise"])


def test_edge_coherence_is_one_along_straight_edges_and_low_for_a_mottle():
    """Known answers: moderate straight edges (blurred boundaries of a layered body wall) read 1,
    an isotropic mottle with moderate gradients reads far lower, white grain lower still, and a
    body with too few moderate-edge pixels, or none, gives NaN."""
    n = 160
    layers = np.full((n, n), 0.5)
    for i, row in enumerate(range(20, n, 30)):
        layers[row:] = 0.8 if i % 2 == 0 else 0.5  # fat and muscle layers, boundaries 30 rows apart
    layers = ndi.gaussian_filter(layers, 1.0)
    body = np.ones((n, n), bool)

    def moderate(img):
        g = np.hypot(*np.gradient(M.normalise(img)))
        return ((g >= M.MODERATE_GRADIENT[0]) & (g < M.MODERATE_GRADIENT[1])).sum()

    assert moderate(layers) > 1000  # the boundaries are moderate edges, not steep ones
    assert M.edge_coherence(layers, body) > 0.99
    # the same layers at 30 and 45 degrees: the tensor's off-diagonal term counts (with jxy in
    # place of 2 jxy these read 0.6 and 0.5)
    yy, xx = np.mgrid[0:n, 0:n]
    for deg in (30, 45):
        t = np.deg2rad(deg)
        across = yy * np.cos(t) + xx * np.sin(t)
        oblique = ndi.gaussian_filter(np.where((across // 30) % 2 == 0, 0.5, 0.8), 1.0)
        assert moderate(oblique) > 1000
        assert M.edge_coherence(oblique, body) > 0.95, deg
    x = np.random.default_rng(0).normal(size=(n, n))
    mottle = 1 + 0.1 * ndi.gaussian_filter(x, 1.0) / ndi.gaussian_filter(x, 1.0).std()
    grain = 1 + 0.1 * x
    assert moderate(mottle) > 1000 and moderate(grain) > 1000
    assert M.edge_coherence(mottle, body) < 0.6
    assert M.edge_coherence(grain, body) < 0.35
    assert np.isnan(M.edge_coherence(layers, np.zeros((n, n), bool)))
    few = np.zeros((n, n), bool)
    few[:, 10:14] = True  # 4 columns: 2 moderate rows at each of 5 boundaries, 40 pixels
    assert np.isnan(M.edge_coherence(layers, few))
    assert M.edge_coherence(layers, few, min_pixels=10) > 0.99


def test_level_shares_known_answer():
    """Air, myocardium-grey and blood in known shares, one pixel on each inner edge."""
    img = np.zeros(1000, np.float32)
    img[:300] = 400.0        # 0.4 x blood: the 0.2-0.5 level
    img[300:500] = 1000.0    # blood itself: >= 1
    img[500] = 100.0         # exactly 0.1 x blood: in 0.1-0.2, not in air
    m = M.level_shares(img.reshape(40, 25), 1000.0)
    assert [m[f"level{i}"] for i in range(5)] == pytest.approx([0.499, 0.001, 0.3, 0.0, 0.2])
    assert m["p99_blood"] == pytest.approx(1.0)
    assert set(m) == set(M.LEVEL_LABELS)


def test_classifier_leaning_terms_sum_to_the_log_odds_gap_and_rank_the_informative_statistic_first():
    rng = np.random.default_rng(1)
    is_real = np.r_[np.zeros(60, bool), np.ones(60, bool)]
    X = rng.normal(size=(120, 6))
    X[:, 4] += 2.0 * is_real  # the only statistic that differs between the classes
    names = [f"s{j}" for j in range(6)]
    out = R.classifier_leaning(X, names, is_real, C=0.1, top=6)
    assert out["terms"][0]["name"] == "s4" and out["terms"][0]["share"] > 0.5
    assert sum(t["share"] for t in out["terms"]) == pytest.approx(1.0)
    # the gap is the model's own: mean decision function of real frames minus simulated ones
    model = R._logistic_model(0.1)
    model.fit(X, is_real.astype(int))
    d = model.decision_function(X)
    assert out["gap"] == pytest.approx(d[is_real].mean() - d[~is_real].mean(), rel=1e-6)
    with pytest.raises(ValueError, match="names"):
        R.classifier_leaning(X, names[:5], is_real, C=0.1, top=3)


def test_separating_statistics_ranks_by_distance_from_chance_and_names_every_column():
    st = dict(intensity_bins=4, gradient_bins=3, spectrum_bins=2, lbp_radius=1)
    names = M.statistic_names(**st)
    assert len(names) == 4 + 3 + 10 + 2
    assert names[0] == "intensity 0.00-0.31 x p99" and names[-1] == "spectrum 0.250-0.500 cycles / px"
    assert names[3] == "intensity >= 0.94 x p99"  # the histogram clips: its last bin is open
    rng = np.random.default_rng(0)
    is_real = np.r_[np.zeros(50, bool), np.ones(50, bool)]
    X = rng.normal(size=(100, len(names)))
    X[:, 5] += 10 * ~is_real         # higher in simulated frames: AUC 0
    X[:, 9] += 1.0 * is_real         # higher in real frames, overlapping
    top = R.separating_statistics(X, names, is_real, top=3)
    assert [r["name"] for r in top[:2]] == [names[5], names[9]]
    assert top[0]["auc"] == 0.0 and 0.7 < top[1]["auc"] < 1.0
    assert top[0]["simulated"] > top[0]["real"] + 9


def test_statistic_names_name_the_column_that_measures_it():
    """Isolated bright dots (0.5 % of the pixels, 5 x the 99th percentile) on a flat frame: their
    share lands in the columns named for the open top intensity bin and for strict local maxima."""
    from ofrnn.files import read_toml

    st = read_toml(R.REPO / "experiments" / "realism.toml")["statistics"]
    img = np.ones((100, 100), np.float32)
    img[5:100:10, 5:100:20] = 5.0
    s = M.frame_statistics(img, **st)
    named = dict(zip(M.statistic_names(**st), np.concatenate([s[k] for k in M.STATISTICS])))
    assert len(named) == sum(len(s[k]) for k in M.STATISTICS)
    top = 1.25 * (st["intensity_bins"] - 1) / st["intensity_bins"]
    assert named[f"intensity >= {top:.2f} x p99"] == pytest.approx(0.005)
    assert named["LBP r=1: 0 of 8 neighbours >= centre"] == pytest.approx(0.005)
    assert named["LBP r=1: 8 of 8 neighbours >= centre"] > 0.9  # flat: every neighbour ties


def test_body_mask_fills_the_dark_lungs_inside_the_body():
    shape = (80, 80)
    img = np.zeros(shape, np.float32)
    body = _disk(shape, 40, 40, 30)
    img[body] = 1.0
    img[_disk(shape, 40, 25, 10)] = 0.0  # a lung: dark but inside the body
    assert M.body_mask(img, 1.0).sum() == pytest.approx(body.sum(), rel=0.02)


def test_direction_and_size_of_the_lv():
    shape = (64, 64)
    lv = _disk(shape, 32, 32, 6)
    assert M.direction_deg(lv, _disk(shape, 32, 12, 5)) == pytest.approx(180)  # RV on the image left
    assert M.direction_deg(lv, _disk(shape, 12, 32, 5)) == pytest.approx(90)  # above
    assert M.lv_size(lv, shape) == pytest.approx(12 / 64, rel=0.05)


def test_heart_crop_is_centred_on_the_lv():
    shape = (120, 120)
    img = np.full(shape, 0.2, np.float32)
    lv = _disk(shape, 30, 80, 8)
    img[lv] = 1.0
    crop = M.heart_crop(img, lv, scale=2.5, size=40)
    assert crop.shape == (40, 40)
    assert crop[20, 20] > 0.9 and crop[1, 1] < 0.3
    assert M.heart_crop(img, _disk(shape, 3, 3, 3), scale=2.5, size=40).shape == (40, 40)  # at the edge: padded


def test_subject_folds_keep_subjects_whole_and_are_seeded():
    subjects = [f"s{i // 3}" for i in range(30)]
    a = R.subject_folds(subjects, 4, seed=1)
    assert np.array_equal(a, R.subject_folds(subjects, 4, seed=1))
    assert set(a) == {0, 1, 2, 3}
    for s in set(subjects):
        assert len({a[i] for i, t in enumerate(subjects) if t == s}) == 1


def test_calibration_folds_do_not_depend_on_whether_evaluation_patients_are_loaded():
    """The tuning CV of `make realism` (evaluation patients loaded) and of `make realism-calibrate`
    (not loaded) must put every calibration and simulated subject in the same fold."""
    sim = [f"S{i:03d}" for i in range(30) for _ in range(2)]
    cal = [f"patient{i:03d}" for i in range(61, 81) for _ in range(2)]
    ev = [f"patient{i:03d}" for i in range(41, 61) for _ in range(2)]
    is_real = np.r_[np.zeros(len(sim), bool), np.ones(len(cal) + len(ev), bool)]
    calibration = np.r_[np.zeros(len(sim), bool), np.ones(len(cal), bool), np.zeros(len(ev), bool)]
    with_eval = R.class_folds(sim + cal + ev, R.frame_strata(is_real, calibration), 5, seed=0)
    n = len(sim) + len(cal)
    without = R.class_folds(sim + cal, R.frame_strata(is_real[:n], calibration[:n]), 5, seed=0)
    assert np.array_equal(with_eval[:n], without)
    for stratum in (~is_real, calibration, is_real & ~calibration):  # every fold holds each stratum
        assert set(with_eval[stratum]) == set(range(5))
    # with real / simulated as the only strata the calibration patients' folds moved
    assert not np.array_equal(R.class_folds(sim + cal + ev, is_real, 5, seed=0)[:n], without)


def test_cross_fit_scores_each_frame_once_by_a_model_that_never_saw_it():
    rng = np.random.default_rng(0)
    n_sim, n_cal, n_eval = 40, 10, 12
    is_real = np.r_[np.zeros(n_sim, bool), np.ones(n_cal + n_eval, bool)]
    calibration = np.r_[np.zeros(n_sim, bool), np.ones(n_cal, bool), np.zeros(n_eval, bool)]
    evaluation = is_real & ~calibration
    subjects = [f"s{i // 2}" for i in range(n_sim)] + [f"c{i}" for i in range(n_cal)] + [f"e{i // 3}" for i in range(n_eval)]
    folds = R.class_folds(subjects, is_real, 4, seed=0)
    for cls in (False, True):  # both classes spread over every fold
        assert set(folds[is_real == cls]) == {0, 1, 2, 3}
    times_scored = np.zeros(len(is_real), int)

    def fit_score(train, score):
        assert not (train & score).any() and not (train & evaluation).any() and train[calibration].all()
        assert (train & ~is_real).any()
        times_scored[score] += 1
        return rng.random(score.sum())
    s = R.cross_fit(is_real, calibration, evaluation, folds, fit_score)
    assert np.isnan(s[calibration]).all() and np.isfinite(s[~calibration]).all()
    assert np.all(times_scored[~calibration] == 1) and np.all(times_scored[calibration] == 0)


def test_separability_is_one_for_distinct_and_chance_for_equal_statistics():
    rng = np.random.default_rng(0)
    n = 60
    is_real = np.r_[np.zeros(n, bool), np.ones(n, bool)]
    calibration = is_real & (np.arange(2 * n) < 1.5 * n)
    evaluation = is_real & ~calibration
    subjects = np.array([f"s{i // 2}" for i in range(2 * n)])
    fold = R.class_folds(subjects, is_real, 3, seed=0)
    y = is_real.astype(int)
    for shift, lo, hi in ((3.0, 0.99, 1.0), (0.0, 0.2, 0.8)):
        X = rng.normal(size=(2 * n, 5)) + shift * is_real[:, None]
        fit = R.logistic_scores(X, 1.0)
        s = R.cross_fit(is_real, calibration, evaluation, fold, lambda tr, sc: fit(tr, sc, y=y))
        m = evaluation | ~is_real
        r = R.auc_with_interval(s[m], is_real[m], subjects[m], n_boot=50, seed=0)
        assert lo <= r["auc"] <= hi
        assert r["ci95"][0] <= r["auc"] <= r["ci95"][1] + 1e-9


def test_real_frames_split_by_patient(shared_data):
    frames, skipped = R.real_frames(shared_data, dict(calibration_acdc=[61, 80], calibration_sunnybrook=["SC-HF-I-1"]))
    assert not skipped
    groups = {}
    for f in frames:
        groups.setdefault(f["group"], set()).add(f["subject"])
    on_disk = {f.name[:10] for f in (shared_data / "acdc-edes").glob("patient*.h5")}
    assert groups["acdc calibration"] | groups["acdc evaluation"] <= on_disk
    assert groups["acdc calibration"] == {p for p in groups["acdc calibration"] | groups["acdc evaluation"]
                                          if 61 <= int(p[7:]) <= 80}
    assert len(groups["acdc calibration"]) >= 15 and len(groups["acdc evaluation"]) >= 15
    assert all(41 <= int(p[7:]) <= 60 for p in groups["acdc evaluation"])
    assert groups["sunnybrook calibration"] == {"SC-HF-I-1"}
    assert groups["sunnybrook evaluation"] == {"SC-HF-I-2", "SC-HF-I-4"}
    for f in frames:
        assert f["lv"].any() and not (f["blood"] & ~f["lv"]).any()


def test_realism_experiment_end_to_end(shared_data, tmp_path):
    """The smoke profile on a tiny cohort: every output, AUCs in [0, 1], both real sets measured."""
    import json

    from ofrnn.files import read_toml
    from ofrnn.simulate import simulate_cohort

    cohort = tmp_path / "tiny.h5"
    simulate_cohort(cohort, n_subjects=6, seed=3, matrix=96, frames=6, progress=False)
    config = read_toml(R.REPO / "experiments" / "realism.toml")
    config["cohort"] = str(cohort)
    config["profile"]["smoke"]["cnn"] = dict(epochs=1, frame_size=32, crop_size=24)
    R.run(config, "smoke", tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    for name in ("statistics", *M.STATISTICS, "cnn, whole frames", "cnn, heart-centred crops"):
        for real_set in ("all", "acdc", "sunnybrook"):
            assert 0 <= m["separability"][name][real_set]["auc"] <= 1
    for name in ("statistics", "intensity", "gradient", "lbp", "spectrum", "cnn, whole frames", "cnn, heart-centred crops"):
        assert 0 <= m["separability_calibration"][name]["auc"] <= 1, name
    # the statistics' calibration CV on two draws of the folds, the first the one reported
    draws = m["separability_calibration"]["statistics"]["fold_draws"]
    assert len(draws) == 2 and draws[0] == pytest.approx(m["separability_calibration"]["statistics"]["auc"])
    assert "fold_draws" not in m["separability_calibration"]["cnn, whole frames"]
    assert m["groups"]["simulated"]["frames"] == 12
    # the smoke profile measures the first 3 patients of each real group (max_real_patients)
    assert m["groups"]["acdc evaluation"]["subjects"] == 3 and m["groups"]["sunnybrook evaluation"]["subjects"] == 2
    assert m["groups"]["acdc evaluation"]["myocardium_blood"]["median"] > 0
    for png in ("gallery", "crops", "edges", "texture", "geometry", "profiles", "roc"):
        assert (tmp_path / f"{png}.png").stat().st_size > 1000
    assert len(m["separating_statistics"]) == 12
    assert len(m["classifier_leaning"]["terms"]) == 12
    for group in m["groups"].values():
        assert sum(group[f"level{i}"]["mean"] for i in range(len(M.LEVEL_EDGES) + 1)) == pytest.approx(1.0)
        assert 0 < group["p99_blood"]["median"] < np.inf
    # the blood pool's profile is over its own median: about 1 at some depth
    acdc = m["groups"]["acdc evaluation"]
    profile = [acdc[k]["median"] for k in M.PROFILE_KEYS["blood"] if acdc.get(k)]
    assert min(profile) < 1.05 and max(profile) > 0.95
    for scored in ("calibration", "evaluation"):
        assert 0 <= m["edge_coherence_auc"][scored] <= 1
    assert 0 < m["groups"]["simulated"]["edge_coherence"]["median"] <= 1
    report = (tmp_path / "report.md").read_text()
    assert "Separability" in report and "What gives the phantom away" in report
    assert "moderate-edge coherence" in report
    assert not re.search(r"\bnan\b", report)


def test_myocardium_blood_ratio_reads_away_from_the_labels_edges():
    # a thin wall between bright blood and bright epicardial fat, the pool's outer 1.5 px darkened
    # by trabeculae, all blurred by the point-spread function: the pixels at the labels' edges mix
    # tissues, so the ratio read on the labels as drawn is too high; a few pixels in from both
    # edges the wall's own contrast is left (either mask eroded alone leaves 0.318 or 0.320)
    from scipy import ndimage as ndi

    shape = (80, 80)
    blood, heart = _disk(shape, 40, 40, 9), _disk(shape, 40, 40, 16)
    myo = heart & ~blood
    truth = np.full(shape, 0.6, np.float32)  # fat
    truth[myo], truth[blood] = 0.3, 1.0
    truth[blood & ~_disk(shape, 40, 40, 7.5)] = 0.6  # trabeculae in the pool's rim
    img = ndi.gaussian_filter(truth, 1.0)
    as_drawn = M.myocardium_blood_ratio(img, blood, myo, margin_px=0)
    one_in = M.myocardium_blood_ratio(img, blood, myo, margin_px=1)
    assert as_drawn > one_in + 0.01 > 0.3 + 0.01  # 0.331 and 0.313 here
    assert M.myocardium_blood_ratio(img, blood, myo, margin_px=3) == pytest.approx(0.3, abs=0.002)
    # masks as 0/1 integers read as masks, not as indices
    assert M.myocardium_blood_ratio(img, blood.astype(np.uint8), myo.astype(np.uint8), margin_px=0) == as_drawn
    # a wall or a pool too small to keep CONTRAST_MIN_PIXELS after erosion, and no wall at all: NaN
    thin = _disk(shape, 40, 40, 10) & ~blood
    assert np.isnan(M.myocardium_blood_ratio(img, blood, thin, margin_px=1))
    assert np.isnan(M.myocardium_blood_ratio(img, _disk(shape, 40, 40, 2), myo, margin_px=1))
    assert np.isnan(M.myocardium_blood_ratio(img, blood, None))
    with pytest.raises(ValueError, match="margin_px"):
        M.myocardium_blood_ratio(img, blood, myo, margin_px=-1)


def test_fat_under_the_skin_and_lung_read_where_they_lie():
    # a torso: 6 px of fat (1.2 x blood) under the skin over muscle (0.3), a lung (0.08) and a
    # heart; the fat is the band's brightest tissue and fills most of it, the lung the body's dark
    shape = (140, 140)
    img = np.full(shape, 0.02, np.float32)  # the air's noise floor
    body = _disk(shape, 70, 70, 55)
    img[body] = 1.2
    img[_disk(shape, 70, 70, 49)] = 0.3
    lung = _disk(shape, 70, 40, 12)
    img[lung] = 0.08
    blood, heart = _disk(shape, 70, 85, 8), _disk(shape, 70, 85, 13)
    img[heart], img[blood] = 0.3, 1.0
    m = M.tissue_measures(img, blood, heart & ~blood)
    assert m["fat_blood"] == pytest.approx(1.2)
    assert m["lung_blood"] == pytest.approx(0.08)
    # a circular FOV mask that cuts the body: its rim is not skin, so the reading stays the fat's
    yy, xx = np.mgrid[0:140, 0:140]
    masked = np.where(np.hypot(yy - 69.5, xx - 69.5) > 0.47 * 140, 0.0, np.roll(img, 20, axis=1)).astype(np.float32)
    body_m = M.body_mask(masked, 1.0)
    assert M.subcutaneous_fat_ratio(masked, body_m, 1.0) == pytest.approx(1.2)
    edge = M.skin_edge(body_m, masked, 1.0)
    r = np.hypot(yy - 69.5, xx - 69.5)
    assert edge.sum() > 50 and (r[edge] < 0.47 * 140 - 3).all()  # the skin, not the mask's rim
    # no skin at all (the body fills the frame to its border): NaN
    full = np.full(shape, 0.5, np.float32)
    assert np.isnan(M.subcutaneous_fat_ratio(full, np.ones(shape, bool), 1.0))


def test_tissue_measures_give_the_chest_wall_distance_in_lv_diameters():
    """A blood pool of radius 6 in a myocardial ring to radius 10 (LV diameter 20 px), centred 40 px
    below the top skin of a round body: the nearest skin is 2 LV diameters away, straight up."""
    from ofrnn.experiments.realism_measures import tissue_measures

    yy, xx = np.mgrid[0:200, 0:200]
    body = np.hypot(yy - 100, xx - 100) < 80  # top skin at row 20
    r = np.hypot(yy - 60, xx - 100)
    blood, myocardium = r < 6, (r >= 6) & (r < 10)
    image = np.where(body, 0.4, 0.01)
    image[myocardium], image[blood] = 0.2, 1.0
    out = tissue_measures(image, blood, myocardium)
    assert abs(out["skin_direction_deg"] - 90) < 3
    lv_diameter = 2 * np.sqrt((blood | myocardium).sum() / np.pi)
    assert out["skin_distance_lv"] == pytest.approx(40 / lv_diameter, abs=0.1)
    assert abs(out["skin_distance_lv"] - 2.0) < 0.1
    assert np.isnan(tissue_measures(image, blood, None)["skin_distance_lv"])


def test_skin_direction_points_at_the_nearest_real_skin():
    """From a blood pool above the centre of a round body the nearest skin is straight up (90 deg);
    an edge at the frame's border or darker than 5 % of blood (an FOV mask's rim) does not count."""
    from ofrnn.experiments.realism_measures import skin_direction_deg

    yy, xx = np.mgrid[0:200, 0:200]
    body = np.hypot(yy - 100, xx - 100) < 80
    image = np.where(body, 0.5, 0.01)  # air holds noise, above exact zero
    blood = np.hypot(yy - 60, xx - 100) < 8
    image[blood] = 1.0
    assert abs(skin_direction_deg(body, image, blood, 1.0) - 90) < 3
    left = np.hypot(yy - 100, xx - 45) < 8  # a pool right of the left skin
    assert abs(skin_direction_deg(body, image, left, 1.0) - 180) < 3
    # the body overflows the frame at the top: the border is not skin; the nearest real edge is
    # where the disk meets the half-plane, (100, 20) and (100, 180) px from (60, 100): about
    # 207 or 333 deg (ties go to the first found)
    cut = body | (yy < 100)
    d = skin_direction_deg(cut, np.where(cut, 0.5, 0.01), blood, 1.0)
    assert min(abs(d - 206.6), abs(d - 333.4)) < 3
    # a circular FOV mask cutting a larger body: its rim (bright inside, zero outside) is not skin
    big = np.hypot(yy - 170, xx - 100) < 150  # skin only at the top, 20 px below the frame's edge
    masked = np.where(np.hypot(yy - 99.5, xx - 99.5) <= 95, np.where(big, 0.5, 0.01), 0.0)
    pool = np.hypot(yy - 100, xx - 170) < 6  # near the mask's right rim, far from the top skin
    masked[pool] = 1.0
    from ofrnn.experiments.realism_measures import body_mask, fov_mask_radius

    assert abs(fov_mask_radius(masked) - 95) < 1.5 and fov_mask_radius(image) == np.inf
    d = skin_direction_deg(body_mask(masked, 1.0), masked, pool, 1.0)
    assert 90 < d < 150  # up and left, to the top skin, not right to the rim (0 deg)


def test_is_calibration_follows_the_split():
    """The calibration patients are those of the [split] table, by ACDC number range and Sunnybrook id."""
    from ofrnn.experiments.realdata import is_calibration

    split = dict(calibration_acdc=[61, 80], calibration_sunnybrook=["SC-HF-I-1"])
    assert is_calibration("acdc", "patient061/slice01", split) and is_calibration("acdc", "patient080/slice09", split)
    assert not is_calibration("acdc", "patient060/slice01", split)
    assert not is_calibration("acdc", "patient081/slice01", split)
    assert is_calibration("sunnybrook", "SC-HF-I-1/slice03", split)
    assert not is_calibration("sunnybrook", "SC-HF-I-10/slice03", split)
    assert not is_calibration("sunnybrook", "SC-HF-I-2/slice03", split)


def test_blood_depth_measures_known_answer():
    shape = (80, 80)
    pool = _disk(shape, 40, 40, 15)
    depth = ndi.distance_transform_edt(pool)
    img = np.where(pool, 1.0, 0.3)
    m = M.blood_depth_measures(img, pool)
    assert m["blood_core_rim"] == pytest.approx(1.0)
    assert m["blood_spread"] == pytest.approx(0.0)
    img[(depth >= 2) & (depth < 4)] = 0.8  # a dark rim, a bright core
    img[depth >= 6] = 1.2
    assert M.blood_depth_measures(img, pool)["blood_core_rim"] == pytest.approx(1.5)
    # the profile by depth over the pool's median, bin by bin
    m = M.blood_depth_measures(img, pool)
    level = np.median(img[pool])
    edges = (*M.BLOOD_DEPTH_EDGES, np.inf)
    for i, key in enumerate(M.PROFILE_KEYS["blood"]):
        assert m[key] == pytest.approx(np.median(img[(depth >= edges[i]) & (depth < edges[i + 1])]) / level)
    assert m[M.PROFILE_KEYS["blood"][1]] == pytest.approx(0.8 / level)  # 2-3 px: the dark rim
    assert m[M.PROFILE_KEYS["blood"][-1]] == pytest.approx(1.2 / level)  # 11+ px: the bright core
    small = _disk(shape, 40, 40, 4)  # no core six pixels deep
    assert np.isnan(M.blood_depth_measures(img, small)["blood_core_rim"])
    assert np.isnan(M.blood_depth_measures(img, np.zeros(shape, bool))["blood_spread"])


def test_air_distance_profile_known_answer():
    """Air that fades away from the body reads so bin by bin; blanked zeros and sparse bins do not count."""
    shape = (200, 200)
    body = _disk(shape, 100, 100, 40)
    distance = ndi.distance_transform_edt(~body)
    img = np.where(body, 1.0, 0.05 * np.exp(-distance / 30))
    img[:, 190:] = 0  # blanked by the reconstruction
    out = M.air_distance_profile(img, body, 0.5)
    edges = (*M.AIR_DISTANCE_EDGES, np.inf)
    values = [out[k] for k in M.PROFILE_KEYS["air"]]
    for i, v in enumerate(values[:-1]):
        ring = (distance >= edges[i]) & (distance < edges[i + 1]) & (img > 0)
        assert v == pytest.approx(np.median(img[ring]) / 0.5)
    assert all(a > b for a, b in zip(values[:-2], values[1:-1]))  # fading
    assert np.isnan(M.air_distance_profile(np.ones(shape), np.ones(shape, bool), 1.0)[M.PROFILE_KEYS["air"][0]])
