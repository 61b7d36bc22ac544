"""The phantom: determinism, cohort composition, schema, physiology and exact ground truth."""
import numpy as np
import pytest
from scipy import ndimage as ndi

from ofrnn.cli import main
from ofrnn.simulate import Acquisition, cohort_plan, level_counts, simulate_cohort, simulate_subject
from ofrnn.simulate.measure import area_ejection_fraction, remote_and_scar_thickening
from ofrnn.simulate.mri import Tissue, acquire, band_table, bssfp_profile, bssfp_signal, signal_table
from ofrnn.store import open_cohort


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    """A 12-subject cohort (two workers) read back through the store."""
    path = tmp_path_factory.mktemp("sim") / "c.h5"
    simulate_cohort(path, n_subjects=12, seed=11, jobs=2, progress=False)
    with open_cohort(path) as c:
        yield path, [c[sid] for sid in c.ids]


def test_default_composition_is_the_papers():
    assert level_counts(114) == {"apical": 43, "mid": 37, "basal": 34}
    plan = cohort_plan(114, 0)
    levels = [lv for _, lv, _ in plan]
    assert (levels.count("apical"), levels.count("mid"), levels.count("basal")) == (43, 37, 34)
    assert sum(level_counts(10).values()) == 10


def test_same_seed_same_subject_other_seed_other_subject():
    a = simulate_subject(5, "mid", Acquisition(matrix=128))
    b = simulate_subject(5, "mid", Acquisition(matrix=128))
    c = simulate_subject(6, "mid", Acquisition(matrix=128))
    np.testing.assert_array_equal(a.cine, b.cine)
    np.testing.assert_array_equal(a.flow, b.flow)
    assert a.attrs == b.attrs
    assert not np.array_equal(a.myocardium, c.myocardium)


def test_cohort_is_independent_of_worker_count(cohort, tmp_path):
    path, subjects = cohort
    one = tmp_path / "one.h5"
    simulate_cohort(one, n_subjects=2, seed=11, jobs=1, progress=False)
    with open_cohort(one) as c:
        first = c[c.ids[1]]
    np.testing.assert_array_equal(first.cine, subjects[1].cine)
    assert first.level == subjects[1].level


def test_cohort_schema_and_acquisition(cohort):
    path, subjects = cohort
    with open_cohort(path) as c:
        assert c.source == "simulated" and c.params["seed"] == 11
    for s in subjects:
        T, H, W = s.cine.shape
        assert (T, H, W) == (25, 256, 256)
        assert 1.3 <= s.spacing_mm[0] <= 1.6 and s.spacing_mm[0] == s.spacing_mm[1]
        assert 42 <= s.attrs["snr"] <= 120 and s.attrs["field_t"] in (1.5, 3.0)
        assert 0.42 * s.attrs["tr_ms"] <= s.attrs["te_ms"] <= 0.5 * s.attrs["tr_ms"]
        assert 0.2 <= s.attrs["residual_shading"] <= 0.8 and 0.55 <= s.attrs["readout_resolution"] <= 0.85
        assert 0.55 <= s.attrs["phase_resolution"] <= 0.85 and 0.5 <= s.attrs["mt"] <= 0.85
        # the flip angle is the nominal 45-60 deg times the transmit field (0.5-1 at 3 T, 0.75-1 at 1.5 T)
        lo = 0.5 if s.attrs["field_t"] == 3.0 else 0.75
        assert lo <= s.attrs["b1"] <= 1.0 and 45 * s.attrs["b1"] <= s.attrs["flip_deg"] <= 60 * s.attrs["b1"]
        assert np.all(np.diff(s.frame_times_ms) > 0)
        # the temporal resolution of the paper's cohort, 45.1 +- 8.8 ms, clipped to 30-65 ms
        assert 30 <= s.frame_times_ms[1] <= 65
        assert set(np.unique(s.aha_segments[s.myocardium > 0])) <= set(range(1, 17))
        assert np.all(s.aha_segments[s.myocardium == 0] == 0)
        assert np.all(s.infarct <= s.myocardium)


def test_no_two_subjects_alike(cohort):
    _, subjects = cohort
    centres = {tuple(s.lv_box[0]) for s in subjects}
    assert len(centres) == len(subjects)


def test_lv_box_is_tight_around_the_epicardium(cohort):
    _, s = cohort
    s = s[0]
    for t in range(s.cine.shape[0]):
        y0, x0, y1, x1 = s.lv_box[t]
        lv = s.myocardium_t[t] | s.lv_cavity_t[t]
        assert lv[y0:y1, x0:x1].sum() == lv.sum()
        assert lv[y0, x0:x1].any() and lv[y1 - 1, x0:x1].any() and lv[y0:y1, x0].any() and lv[y0:y1, x1 - 1].any()


def test_ejection_fraction_normal_and_post_mi(cohort):
    _, subjects = cohort
    normal = [area_ejection_fraction(s) for s in subjects if not s.infarct.any()]
    post_mi = [area_ejection_fraction(s) for s in subjects if s.infarct.any()]
    assert normal and post_mi
    # the model targets an area EF of 55-75 % in normal slices; pixel masks add a few points of slack
    assert all(0.5 <= ef <= 0.8 for ef in normal)
    assert np.mean(post_mi) < np.mean(normal)


def test_myocardial_area_is_conserved(cohort):
    _, subjects = cohort
    for s in subjects[:4]:
        area = s.myocardium_t.reshape(s.cine.shape[0], -1).sum(1)
        # in-plane incompressibility, up to the pixel quantisation of a thin ring
        assert np.all(np.abs(area / area[0] - 1) < 0.08)


def test_transmural_scar_thickens_less_than_a_third_of_remote(cohort):
    _, subjects = cohort
    scar, remote = [], []
    for s in subjects:
        sc, rem = remote_and_scar_thickening(s)
        if not np.isnan(sc):
            scar.append(sc)
        if not np.isnan(rem):
            remote.append(rem)
    assert scar and remote
    assert np.mean(remote) > 0.2
    assert np.mean(scar) < np.mean(remote) / 3


def test_infarct_is_invisible_in_intensity():
    # same PD/T1/T2: the bSSFP signal of scar and myocardium is identical by construction ...
    table = signal_table(field_t=3.0, flip_deg=50, tr_ms=3.2)
    assert table[Tissue.LV_INFARCT] == table[Tissue.LV_MYOCARDIUM]
    # ... and on a rendered slice, intensity alone does not tell scar from myocardium
    from sklearn.metrics import roc_auc_score

    for seed in (3, 5):
        s = simulate_subject(seed, "mid")
        core = ndi.binary_erosion(s.myocardium)
        inf, rem = core & (s.infarct > 0), core & (s.infarct == 0)
        assert inf.sum() > 10
        y = np.r_[np.ones(inf.sum()), np.zeros(rem.sum())]
        auc = roc_auc_score(y, np.r_[s.cine[0][inf], s.cine[0][rem]])
        assert 0.3 < auc < 0.7


def _warp_back(s, t):
    f = s.flow[t]
    H, W = f.shape[1:]
    yy, xx = np.mgrid[0:H, 0:W].astype(float)
    return ndi.map_coordinates(s.cine[t + 1], [yy + f[0], xx + f[1]], order=1), (yy + f[0], xx + f[1])


def test_ground_truth_flow_explains_the_images():
    s = simulate_subject(3, "mid", Acquisition(snr=1e5, phase_resolution=1.0, readout_resolution=1.0))
    speed = [np.abs(s.flow[t]).max() for t in range(24)]
    for t in np.argsort(speed)[-3:]:
        warped, (wy, wx) = _warp_back(s, t)
        m = s.myocardium_t[t] > 0
        assert np.all(s.flow_valid[t][m])
        residual = np.abs(warped - s.cine[t])[m].mean()
        unwarped = np.abs(s.cine[t + 1] - s.cine[t])[m].mean()
        assert residual < 0.6 * unwarped
        # the myocardium of frame t+1, pulled back along the flow, is the myocardium of frame t
        back = ndi.map_coordinates(s.myocardium_t[t + 1].astype(float), [wy, wx], order=0) > 0.5
        dice = 2 * (back & m).sum() / (back.sum() + m.sum())
        assert dice > 0.9


def test_ground_truth_flow_matches_within_noise():
    # raw coil images (no intensity correction, no FOV mask): the noise is the same everywhere
    s = simulate_subject(4, "basal", Acquisition(snr=20, phase_resolution=1.0, readout_resolution=1.0,
                                                 residual_shading=1.0, fov_mask=0.0))
    blood = s.cine[0][ndi.binary_erosion(s.lv_cavity_t[0], iterations=2)].mean()
    sigma = blood / 20
    # the air outside the body is pure noise combined over the receive channels: a chi magnitude with
    # 2 * channels degrees of freedom, mean sigma * sqrt(2) * Gamma(channels + 1/2) / Gamma(channels)
    from scipy.special import gammaln

    from ofrnn.simulate import RECEIVE_CHANNELS

    air = s.cine[0][:16, :16]
    n = RECEIVE_CHANNELS
    assert air.mean() == pytest.approx(sigma * np.sqrt(2) * np.exp(gammaln(n + 0.5) - gammaln(n)), rel=0.15)
    for t in (3, 6, 13):
        warped, _ = _warp_back(s, t)
        m = s.myocardium_t[t] > 0
        # |a - b| of two noisy samples averages 1.13 sigma; bilinear resampling of partial-volume
        # edges adds about 0.6 sigma in quadrature
        assert np.abs(warped - s.cine[t])[m].mean() < 1.45 * sigma


def test_bssfp_signal_known_values():
    # full relaxation between pulses (TR >> T1, T2) leaves no steady state to speak of
    assert bssfp_signal(1.0, 1.0, 1.0, flip_deg=60, tr_ms=1000.0) < 1e-6
    # T1 = T2 at 90 degrees gives M0/2 at the echo for short TR (Scheffler & Lehnhardt 2003)
    assert bssfp_signal(1.0, 1000.0, 1000.0, flip_deg=90, tr_ms=0.01) == pytest.approx(0.5, abs=1e-3)
    # blood is 2.5-4x brighter than myocardium in cine bSSFP
    t = signal_table(field_t=1.5, flip_deg=55, tr_ms=3.0)
    assert 2.5 < t[Tissue.LV_BLOOD] / t[Tissue.LV_MYOCARDIUM] < 4.5


def test_bssfp_off_resonance_profile():
    # on resonance the Bloch steady state is the closed form; a dark band at beta = pi; symmetric
    for pd, t1, t2 in ((0.85, 1441.0, 290.0), (0.78, 1030.0, 40.0), (0.9, 343.0, 58.0)):
        on = bssfp_signal(pd, t1, t2, flip_deg=50, tr_ms=3.0)
        assert bssfp_profile(pd, t1, t2, 0.0, flip_deg=50, tr_ms=3.0) == pytest.approx(on, rel=1e-9)
    beta = np.linspace(-np.pi, np.pi, 65)
    blood = bssfp_profile(0.85, 1441.0, 290.0, beta, flip_deg=50, tr_ms=3.0)
    np.testing.assert_allclose(blood, blood[::-1], rtol=1e-9)
    assert blood[0] < 0.1 * blood[32] and blood[32] == blood.max()
    table = band_table(field_t=3.0, flip_deg=50, tr_ms=3.2, n_bins=64)
    assert table.shape == (len(Tissue), 64)
    np.testing.assert_allclose(table[:, 32], 1.0, rtol=1e-6)  # bin 32 is beta = 0
    assert table[Tissue.LV_BLOOD, 0] < 0.1


def test_scene_adds_clutter_but_leaves_the_heart_and_ground_truth(monkeypatch):
    """The scene (bowel, vessels, texture, banding) draws from its own stream: without it the
    same seed gives the same heart, motion, masks and flow, and the same pixels near the LV."""
    import ofrnn.simulate as sim

    acq = Acquisition(matrix=128, frames=4, pixel_mm=2.8)
    full = simulate_subject(3, "apical", acq)
    real_sample = sim.sample_scene

    def empty(rng, anatomy):
        scene = real_sample(rng, anatomy)
        scene.update(organs=[], loops=[], vessels=[], great=[], fat=[])
        scene["texture"]["amplitude"] = 0.0
        scene["offresonance"].update(hz_100mm=0.0, roughness_hz=0.0)
        return scene

    monkeypatch.setattr(sim, "sample_scene", empty)
    bare = simulate_subject(3, "apical", acq)
    for name in ("myocardium_t", "lv_cavity_t", "infarct", "lv_box", "flow", "aha_segments"):
        np.testing.assert_array_equal(getattr(full, name), getattr(bare, name), err_msg=name)
    assert full.attrs == bare.attrs
    y0, x0, y1, x1 = full.lv_box[0]
    near = (slice(None), slice(y0, y1), slice(x0, x1))
    far = np.abs(full.cine - bare.cine) > 0.2 * bare.cine.std()
    assert far.mean() > 0.05  # clutter, texture and bands change the surround
    assert far[near].mean() < 0.02  # but not the LV


def test_interrupted_cohort_leaves_nothing(tmp_path, monkeypatch):
    import ofrnn.simulate as sim

    calls = []

    def boom(task):
        calls.append(task)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return sim.simulate_subject(task[2], task[1], task[3], subject_id=f"S{task[0]:03d}")

    monkeypatch.setattr(sim, "_simulate_task", boom)
    out = tmp_path / "half.h5"
    with pytest.raises(RuntimeError):
        sim.simulate_cohort(out, n_subjects=3, seed=0, progress=False, matrix=96)
    assert list(tmp_path.iterdir()) == []


def test_cli_simulate_and_info(tmp_path, capsys):
    out = tmp_path / "tiny.h5"
    assert main(["simulate", "--subjects", "2", "--seed", "1", "--matrix", "96", "--snr", "30",
                 "--pixel-mm", "1.8", "--field", "1.5", "--quiet", "--out", str(out)]) == 0
    assert main(["info", str(out)]) == 0
    text = capsys.readouterr().out
    assert "subjects=2" in text and "96x96" in text and "1.80x1.80" in text and "30.0" in text


@pytest.mark.parametrize("argv, field", [
    (["--subjects", "0"], "--subjects"),
    (["--frames", "1"], "acquisition"),
    (["--pixel-mm", "9"], "acquisition"),
])
def test_cli_simulate_bad_arguments(tmp_path, capsys, argv, field):
    assert main(["simulate", "--out", str(tmp_path / "x.h5"), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ofrnn: error:") and field in err[0]
    assert not (tmp_path / "x.h5").exists()


def test_cli_simulate_missing_folder(tmp_path, capsys):
    assert main(["simulate", "--subjects", "1", "--matrix", "96", "--quiet",
                 "--out", str(tmp_path / "nope" / "x.h5")]) == 2
    assert "output folder does not exist" in capsys.readouterr().err


def test_infarct_sizes_sit_within_real_lge_scars(cohort, shared_data):
    """EMIDEC LGE slices (Lalande et al. 2020) with scar: the phantom's median infarct share of the
    slice myocardium lies within their interquartile range."""
    from PIL import Image

    shares = []
    for f in sorted((shared_data / "emidec").glob("*annot/*.png")):
        a = np.asarray(Image.open(f))
        myo, scar = np.isin(a, (2, 3, 4)).sum(), np.isin(a, (3, 4)).sum()
        if myo > 50 and scar:
            shares.append(scar / myo)
    assert len(shares) > 100
    q1, q3 = np.percentile(shares, [25, 75])
    _, subjects = cohort
    ours = [s.infarct.sum() / s.myocardium.sum() for s in subjects if s.infarct.any()]
    assert q1 <= np.median(ours) <= q3


def test_phantom_report(cohort, tmp_path):
    import json
    import tomllib
    from pathlib import Path

    from ofrnn.experiments import phantom

    config = tomllib.loads((Path(__file__).parents[1] / "experiments" / "phantom.toml").read_text())
    config["cohort"] = str(cohort[0])
    phantom.run(config, "smoke", tmp_path)
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert m["summary"]["slices"] == 6 and len(m["subjects"]) == 6
    assert {"physiology.png", "gallery.png", "report.md"} <= {p.name for p in tmp_path.iterdir()}
    assert "| slice EF, no infarct |" in (tmp_path / "report.md").read_text()


def test_fat_reads_at_its_chemical_shift():
    """bSSFP reads fat 3.4 ppm below water: -217 Hz at 1.5 T, -434 Hz at 3 T. At 3 T and TR 3.4 ms
    that is 1.48 cycles per TR, next to the dark band, so fat goes dark; at 1.5 T and TR 3.2 ms it
    stays in the pass band. Water-based tissues are unaffected."""
    from ofrnn.simulate.mri import FATTY, chemical_shift_beta

    assert chemical_shift_beta(Tissue.LV_BLOOD, field_t=3.0, tr_ms=3.4) == 0.0
    beta = chemical_shift_beta(Tissue.FAT, field_t=3.0, tr_ms=3.4)
    cycles = 3.4e-6 * 42.577e6 * 3.0 * 3.4e-3  # 1.476 cycles per TR
    assert abs(beta) == pytest.approx(2 * np.pi * (cycles - 1), abs=1e-6)  # wrapped: near pi, the dark band
    # the main peak alone (the spectrum's other peaks: test_fat_spectrum_...)
    dark = signal_table(field_t=3.0, flip_deg=50, tr_ms=3.4, fat_spectrum=False)
    bright = signal_table(field_t=1.5, flip_deg=50, tr_ms=3.2, fat_spectrum=False)
    for fat in FATTY:
        assert abs(dark[fat]) / dark[Tissue.LV_BLOOD] < 0.3 < 0.6 < abs(bright[fat]) / bright[Tissue.LV_BLOOD]
        # the off-resonance table stays relative to the tissue's own signal
        np.testing.assert_allclose(band_table(field_t=3.0, flip_deg=50, tr_ms=3.4)[fat, 32], 1.0, rtol=1e-6)


def test_fat_is_read_in_opposed_phase_so_fat_water_voxels_go_dark():
    """At TE = TR / 2 fat lies one pass band from water for every field and TR the phantom draws
    (about -4.1 rad per TR at 1.5 T, -8.7 at 3 T), so it is read with the opposite sign: a voxel
    half fat, half water holds the difference of the two, darker than either (the dark fat-water
    boundary of bSSFP cines); water-based tissues keep the sign of blood."""
    from ofrnn.simulate.mri import FATTY, chemical_shift_sign

    for field, trs in ((1.5, (2.8, 3.0, 3.2)), (3.0, (3.0, 3.2, 3.4))):
        for tr in trs:
            t = signal_table(field_t=field, flip_deg=50, tr_ms=tr)
            assert all(chemical_shift_sign(f, field_t=field, tr_ms=tr) == -1.0 and t[f] < 0 for f in FATTY)
            assert t[Tissue.LV_BLOOD] > 0 and t[Tissue.MUSCLE] > 0 and t[Tissue.LIVER] > 0
            # half and half: the difference of the two, not their mean (in phase it would be)
            fat, muscle = abs(t[Tissue.FAT]), t[Tissue.MUSCLE]
            mixed = abs(0.5 * t[Tissue.FAT] + 0.5 * t[Tissue.MUSCLE])
            assert mixed == pytest.approx(0.5 * abs(fat - muscle), rel=1e-5) and mixed < 0.55 * 0.5 * (fat + muscle)
    # a fat resonance two bands away (here: 2.1 cycles per TR) is back in phase
    assert chemical_shift_sign(Tissue.FAT, field_t=3.0, tr_ms=2.1 / (3.4e-6 * 42.577e6 * 3.0) * 1e3) == 1.0
    assert chemical_shift_sign(Tissue.LV_BLOOD, field_t=1.5, tr_ms=3.0) == 1.0


def test_an_echo_before_half_tr_leaves_fat_water_voxels_a_floor():
    """Read at TE < TR / 2, fat turns by 2 pi f (TE - TR / 2) against water (f = -3.4 ppm): at
    1.5 T, TR 3.0 ms, TE 1.35 ms that is 2 pi * 217.1 Hz * 0.15 ms = 0.2046 rad. A voxel of equal fat
    and water magnitudes then keeps 2 sin(0.2046 / 2) of one of them instead of nothing; at
    TE = TR / 2 the table is the real, signed one. Magnitudes do not change."""
    from ofrnn.simulate.mri import echo_phase

    hz = 3.4e-6 * 42.577e6 * 1.5
    turn = echo_phase(Tissue.FAT, field_t=1.5, tr_ms=3.0, te_ms=1.35)
    assert turn == pytest.approx(2 * np.pi * hz * 0.15e-3, rel=1e-9) and turn == pytest.approx(0.2046, abs=1e-4)
    assert echo_phase(Tissue.LV_BLOOD, field_t=1.5, tr_ms=3.0, te_ms=1.35) == 0.0
    real = signal_table(field_t=1.5, flip_deg=50, tr_ms=3.0)
    assert real.dtype == np.float32
    np.testing.assert_array_equal(signal_table(field_t=1.5, flip_deg=50, tr_ms=3.0, te_ms=1.5), real)
    t = signal_table(field_t=1.5, flip_deg=50, tr_ms=3.0, te_ms=1.35)
    assert t.dtype == np.complex64
    np.testing.assert_allclose(np.abs(t), np.abs(real), rtol=1e-6)
    assert np.angle(t[Tissue.MUSCLE]) == 0.0
    fat = t[Tissue.FAT]
    water = abs(fat)  # a water-based tissue as bright as the fat
    assert abs(fat + water) == pytest.approx(2 * np.sin(turn / 2) * water, rel=1e-5)
    assert abs(real[Tissue.FAT] + water) == pytest.approx(0.0, abs=1e-3 * float(water))


def _neighbour_corr(x):
    """Correlation of horizontally neighbouring pixels over a (T, H, W) stack."""
    return np.corrcoef(x[:, :, :-1].ravel(), x[:, :, 1:].ravel())[0, 1]


def test_several_receive_channels_raise_the_air_and_keep_the_noise_of_bright_tissue():
    """Root-sum-of-squares over channels: pure noise reads as a chi magnitude of 2 * channels degrees
    of freedom (mean 2.74 sigma for 4, against Rayleigh's 1.25), while a bright signal keeps sigma."""
    rng = np.random.default_rng(1)
    air = acquire(np.zeros((4, 96, 96)), rng, noise_sigma=10.0, channels=4)
    assert air.mean() == pytest.approx(27.4, rel=0.05)
    one = acquire(np.zeros((4, 96, 96)), rng, noise_sigma=10.0)
    assert one.mean() == pytest.approx(10.0 * np.sqrt(np.pi / 2), rel=0.05)
    bright = acquire(np.full((4, 96, 96), 1000.0), rng, noise_sigma=10.0, channels=4, phase_resolution=0.7)
    assert bright.std() == pytest.approx(10.0, rel=0.08)
    # every channel goes through the same zero-filled reconstruction: the air's level is kept and its
    # noise is correlated between neighbours (a magnitude about as the square of the complex noise's
    # correlation, here 0.23 against 0 at full resolution)
    part = acquire(np.zeros((4, 96, 96)), rng, noise_sigma=10.0, channels=4, phase_resolution=0.7,
                   readout_resolution=0.6)
    assert part.mean() == pytest.approx(27.4, rel=0.05)
    assert _neighbour_corr(part) > 0.15 and abs(_neighbour_corr(air)) < 0.05
    with pytest.raises(ValueError, match="channels"):
        acquire(np.zeros((1, 8, 8)), rng, noise_sigma=1.0, channels=0)


def test_readout_truncation_keeps_the_noise_level_and_smooths_it():
    """Zero-filled k-space on both axes: the noise sigma stays as asked, and neighbouring pixels'
    noise becomes correlated (an interpolated reconstruction)."""
    rng = np.random.default_rng(0)
    img = np.zeros((4, 128, 128))
    full = acquire(img + 1000, rng, noise_sigma=10.0)
    part = acquire(img + 1000, rng, noise_sigma=10.0, phase_resolution=0.7, readout_resolution=0.6)
    for out in (full, part):
        assert out.std() == pytest.approx(10.0, rel=0.05)  # at high SNR the magnitude is the real part
    assert abs(_neighbour_corr(full)) < 0.05 and _neighbour_corr(part) > 0.3


def test_intensity_correction_leaves_the_residual_shading():
    """A uniform object seen through the coils, then corrected: the heart's pixel keeps its value,
    a perfect correction flattens the shading, none leaves it, and in between the shading's range
    shrinks to (max/min) ** residual."""
    from ofrnn.simulate.mri import coil_sensitivity, intensity_correction

    coil = coil_sensitivity((96, 96), np.random.default_rng(1), spacing_mm=3.0)
    seen = 100.0 * coil
    centre = (48, 40)
    spread = coil.max() / coil.min()
    assert spread > 1.5  # surface coils shade the body strongly
    for residual in (0.0, 0.5, 1.0):
        out = seen / intensity_correction(coil, centre, residual=residual)
        assert out[centre] == pytest.approx(seen[centre])
        assert out.max() / out.min() == pytest.approx(spread ** residual, rel=1e-4)


def test_fov_mask_blanks_only_outside_the_circle():
    s = simulate_subject(2, "mid", Acquisition(matrix=128, frames=3, pixel_mm=2.8, fov_mask=0.45))
    yy, xx = np.mgrid[0:128, 0:128]
    outside = np.hypot(yy - 63.5, xx - 63.5) > 0.45 * 128
    assert np.all(s.cine[:, outside] == 0) and np.all(s.cine[:, ~outside].mean(0) > 0)
    with pytest.raises(ValueError):
        Acquisition(fov_mask=0.1)


def test_fixing_one_acquisition_setting_leaves_the_other_drawn_ones():
    a = simulate_subject(6, "apical", Acquisition(matrix=128, frames=3, pixel_mm=2.8))
    b = simulate_subject(6, "apical", Acquisition(matrix=128, frames=3, pixel_mm=2.8, field_t=1.5))
    for k in ("residual_shading", "readout_resolution", "fov_mask", "mt"):
        assert a.attrs[k] == b.attrs[k], k
    assert b.attrs["field_t"] == 1.5
    # a fixed flip angle is taken as exact (no transmit-field shortfall) and moves no other draw
    c = simulate_subject(6, "apical", Acquisition(matrix=128, frames=3, pixel_mm=2.8, flip_deg=50.0))
    for k in ("field_t", "residual_shading", "readout_resolution", "fov_mask", "mt", "snr"):
        assert a.attrs[k] == c.attrs[k], k
    assert c.attrs["flip_deg"] == 50.0 and c.attrs["b1"] == 1.0


def test_scene_fills_the_abdomen_below_the_diaphragm():
    """Below the dome of the diaphragm the torso holds abdominal viscera, not lung; above it, lung."""
    from ofrnn.simulate.anatomy import sample_anatomy
    from ofrnn.simulate.render import material_map
    from ofrnn.simulate.scene import sample_scene

    rng = np.random.default_rng(2)
    a = sample_anatomy(rng, "mid", fov_mm=(360.0, 360.0))
    a.body["scene"] = sample_scene(np.random.default_rng(3), a)
    a.body["scene"]["turn_deg"] = 0.0  # the dome is laid out unturned (the turn has its own test)
    lab = material_map(a, (120, 120), 3.0, k=1)
    dy, dx, curve = a.body["scene"]["diaphragm"]
    rows = (np.arange(120) * 3.0)[:, None]
    cols = (np.arange(120) * 3.0)[None, :]
    below = rows > dy + curve * (cols - dx) ** 2
    assert not np.any(lab[below] == Tissue.LUNG)
    assert np.mean(lab[below] == Tissue.ABDOMEN) > 0.05
    assert np.any(lab[~below] == Tissue.LUNG)
    assert np.any(lab[below] == Tissue.FAT)  # fat planes among the viscera


def test_torso_turns_about_the_heart_which_stays_put():
    """The scene's turn rotates the torso about the LV centre, counter-clockwise on the display:
    at 90 deg what lay right of the heart lies above it; the heart's own labels do not move."""
    from ofrnn.simulate.anatomy import sample_anatomy
    from ofrnn.simulate.render import material_map
    from ofrnn.simulate.scene import sample_scene

    a = sample_anatomy(np.random.default_rng(2), "mid", fov_mm=(360.0, 360.0))
    a.body["scene"] = sample_scene(np.random.default_rng(3), a)
    a.body["scene"]["great"] = []
    labs = {}
    for turn in (0.0, 90.0):
        a.body["scene"]["turn_deg"] = turn
        labs[turn] = material_map(a, (180, 180), 2.0, k=1)
    cy, cx = (a.centre_mm / 2.0).round().astype(int)
    d = np.arange(int(a.heart_radius / 2.0) + 4, 60)
    # the bowel's compartments (content, fluid, mesenteric fat) come from a random field drawn on the
    # grid the torso is built on, which the turn enlarges: compare the abdomen as one class
    bowel = (Tissue.ABDOMEN, Tissue.GUT_CONTENT, Tissue.STOMACH, Tissue.FAT)
    right, above = (np.where(np.isin(v, bowel), Tissue.ABDOMEN, v) for v in (labs[0.0][cy, cx + d], labs[90.0][cy - d, cx]))
    assert np.mean(right == above) > 0.9
    assert not np.array_equal(labs[0.0][cy - d, cx], above)  # it did turn
    heart = np.isin(labs[0.0], (Tissue.LV_MYOCARDIUM, Tissue.LV_BLOOD, Tissue.LV_INFARCT))
    assert heart.any() and np.array_equal(labs[0.0][heart], labs[90.0][heart])


@pytest.mark.parametrize("shape, phase_axis, keep", [((40, 36), 0, (24, 27)), ((40, 36), 1, (30, 22)),
                                                     ((39, 35), 0, (23, 26))])
def test_acquire_without_noise_is_the_zero_filled_reconstruction(shape, phase_axis, keep):
    """With no noise, acquire is the magnitude of the image whose k-space outside the acquired centre
    (phase and readout shares; ``keep``: rows and columns, round(side x share)) is zeroed: the pruned
    single-precision inverse gives the plain one, for even and odd sides."""
    rng = np.random.default_rng(3)
    H, W = shape
    img = 500 * (rng.standard_normal((2, H, W)) + 1j * rng.standard_normal((2, H, W)))
    out = acquire(img, rng, noise_sigma=0.0, phase_resolution=0.6, readout_resolution=0.75, phase_axis=phase_axis)
    k = np.fft.fftshift(np.fft.fft2(img), axes=(1, 2))
    mask = np.zeros((H, W), bool)
    mask[(H - keep[0]) // 2:(H - keep[0]) // 2 + keep[0], (W - keep[1]) // 2:(W - keep[1]) // 2 + keep[1]] = True
    expected = np.abs(np.fft.ifft2(np.fft.ifftshift(k * mask, axes=(1, 2))))
    assert out.shape == img.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, np.rint(expected), atol=1.0)
    assert np.mean(out == np.rint(expected)) > 0.95


#: every ground truth of a subject: what a change of appearance alone must leave as it was
GROUND_TRUTH = ("myocardium", "infarct", "aha_segments", "lv_box", "myocardium_t", "lv_cavity_t", "flow", "flow_valid")


def _switched(monkeypatch, switch, values, seed, level, acq):
    """The same subject simulated with the module setting ``switch`` at each of ``values``, after
    checking that the frames differ and every ground truth does not."""
    import ofrnn.simulate as sim

    out = []
    for v in values:
        monkeypatch.setattr(sim, switch, v)
        out.append(simulate_subject(seed, level, acq))
    a, b = out
    assert not np.array_equal(a.cine, b.cine)
    for field in GROUND_TRUTH:
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=field)
    return a, b


def test_softened_fat_boundaries_change_only_a_band_about_them_and_no_ground_truth(monkeypatch):
    from ofrnn.simulate.render import soften_fat_boundaries

    mat = np.full((60, 60), Tissue.MUSCLE, np.uint8)
    mat[:, 28:32] = Tissue.FAT  # a 4-point fat sheet in muscle, read in opposed phase
    smap = np.where(mat == Tissue.FAT, -0.68, 0.21).astype(np.float32)
    assert soften_fat_boundaries(smap, mat, 0.0) is smap
    out = soften_fat_boundaries(smap, mat, 2.0)
    assert out.dtype == smap.dtype
    np.testing.assert_array_equal(out[:, :15], smap[:, :15])  # far from the sheet: untouched
    # the jump across the boundary is spread: the steepest step between neighbours is smaller
    assert np.abs(np.diff(out[30])).max() < 0.6 * np.abs(np.diff(smap[30])).max()
    # complex maps (fat turned by an asymmetric echo) are softened in both parts
    z = soften_fat_boundaries(smap * np.complex64(np.exp(0.3j)), mat, 2.0)
    np.testing.assert_allclose(z, out * np.exp(0.3j), atol=1e-6)
    # in a subject, the frames change and no ground truth does
    _switched(monkeypatch, "FAT_PARTIAL_VOLUME_MM", (0.0, 0.7), 5, "mid", Acquisition(matrix=128))



def _stepped_bssfp_echo(t1, t2, beta, *, flip_deg, tr_ms, n_tr=3000):
    """Complex echo at TE = TR / 2 after ``n_tr`` RF pulses of alternating sign from equilibrium,
    by stepping the Bloch equations pulse by pulse (demodulated with the RF's phase): an
    independent check of the steady-state solver."""
    a = np.deg2rad(flip_deg)
    e1, e2 = np.exp(-tr_ms / t1), np.exp(-tr_ms / t2)
    h2 = np.exp(-tr_ms / 2 / t2)
    beta = np.asarray(beta, float)
    m = np.zeros((beta.size, 3))
    m[:, 2] = 1.0
    for n in range(n_tr):
        s = 1 if n % 2 == 0 else -1
        ca, sa = np.cos(s * a), np.sin(s * a)
        my, mz = ca * m[:, 1] + sa * m[:, 2], -sa * m[:, 1] + ca * m[:, 2]
        mx = m[:, 0]
        if n == n_tr - 1:  # the echo: half a TR of precession and decay, in the RF's frame
            z = (mx + 1j * my) * np.exp(1j * beta / 2) * h2
            return z * s
        z = (mx + 1j * my) * np.exp(1j * beta) * e2
        m = np.stack([z.real, z.imag, mz * e1 + (1 - e1)], 1)


def test_fat_spectrum_lowers_fats_opposed_phase_echo_as_the_bloch_equations_do():
    """Fat's six peaks (Hamilton et al. 2011) each read at their own place on the bSSFP profile and
    with their own pass band's sign: the weighted sum of their echoes, stepped pulse by pulse through
    the Bloch equations, over the main peak's gives fat_spectrum_factor; the peaks near water are
    read in phase with it, so the spectrum keeps 0.5-0.8 of the single peak's opposed-phase echo
    over the fields, TRs and flip angles the phantom draws, and a spectrum of the main peak alone
    changes nothing."""
    from ofrnn.simulate.mri import (FAT_PEAK_SHARES, FAT_PEAKS_PPM, FAT_SHIFT_PPM, FATTY, GAMMA_MHZ_PER_T,
                                    TISSUE_PROPERTIES, fat_spectrum_factor)

    assert sum(FAT_PEAK_SHARES) == pytest.approx(1.0, abs=0.002)  # as published, to three decimals
    for field, tr, flip in ((1.5, 2.8, 60.0), (1.5, 3.2, 34.0), (3.0, 3.0, 22.0), (3.0, 3.4, 50.0)):
        _, t1, t2 = TISSUE_PROPERTIES[field][Tissue.FAT]
        factor = fat_spectrum_factor(field_t=field, flip_deg=flip, tr_ms=tr, t1=t1, t2=t2)
        assert 0.5 < factor < 0.8
        beta = 2 * np.pi * np.array((*FAT_PEAKS_PPM, FAT_SHIFT_PPM)) * GAMMA_MHZ_PER_T * field * tr * 1e-3
        echo = _stepped_bssfp_echo(t1, t2, beta, flip_deg=flip, tr_ms=tr)
        whole, main = np.dot(FAT_PEAK_SHARES, echo[:-1]), echo[-1]
        # the echoes at TR / 2 are real to within 0.1 pi of phase next to a stop band (3 T, TR 3.4 ms,
        # the main peak's), which the sign model rounds off: 0.621 there against 0.605
        assert (whole * np.conj(main)).real / abs(main) ** 2 == pytest.approx(factor, rel=0.03)
        assert fat_spectrum_factor(field_t=field, flip_deg=flip, tr_ms=tr, t1=t1, t2=t2,
                                   peaks_ppm=[FAT_SHIFT_PPM], shares=[1.0]) == pytest.approx(1.0)
        # the table scales both fatty labels by it and keeps their opposed phase; water is untouched
        whole_t = signal_table(field_t=field, flip_deg=flip, tr_ms=tr)
        main_t = signal_table(field_t=field, flip_deg=flip, tr_ms=tr, fat_spectrum=False)
        for fat in FATTY:
            assert whole_t[fat] == pytest.approx(factor * main_t[fat], rel=1e-5) and whole_t[fat] < 0
        np.testing.assert_array_equal(np.delete(whole_t, list(FATTY)), np.delete(main_t, list(FATTY)))


def test_signed_band_table_carries_the_echos_sign_from_pass_band_to_pass_band():
    """bSSFP's echo at TE = TR / 2 flips sign from one pass band to the next (Scheffler & Hennig
    2003): the signed table agrees with a pulse-by-pulse Bloch simulation in magnitude and sign,
    and its magnitude is the unsigned table's."""
    from ofrnn.simulate.mri import TISSUE_PROPERTIES, chemical_shift_beta

    field, flip, tr = 1.5, 50.0, 3.0
    plain = band_table(field_t=field, flip_deg=flip, tr_ms=tr, n_bins=64)
    signed = band_table(field_t=field, flip_deg=flip, tr_ms=tr, n_bins=64, signed=True)
    assert signed.shape == (len(Tissue), 128)
    np.testing.assert_allclose(np.abs(signed[:, 32:96]), plain, rtol=1e-6)  # the middle period
    np.testing.assert_allclose(np.abs(signed[:, :64]), np.abs(signed[:, 64:]), rtol=1e-5)  # periodic
    np.testing.assert_allclose(signed[:, 64], 1.0, rtol=1e-6)  # bin 64 is beta = 0
    # a water-based tissue: +1 about resonance, -1 one pass band away, either side
    beta = -2 * np.pi + 2 * np.pi * np.arange(128) / 64
    myo = signed[Tissue.LV_MYOCARDIUM]
    inner, outer = np.abs(beta) < 0.9 * np.pi, np.abs(beta) > 1.1 * np.pi
    assert (myo[inner] > 0).all() and (myo[outer] < 0).all()
    # against the Bloch equations stepped pulse by pulse, for myocardium and fat (at its own shift)
    for tissue in (Tissue.LV_MYOCARDIUM, Tissue.FAT):
        _, t1, t2 = TISSUE_PROPERTIES[field][tissue]
        shift = chemical_shift_beta(tissue, field_t=field, tr_ms=tr)
        pick = np.array([64, 80, 100, 110, 20, 40, 56])  # away from the stop bands' centres
        echo = _stepped_bssfp_echo(t1, t2, np.append(beta[pick] + shift, shift), flip_deg=flip, tr_ms=tr)
        ratio = (echo[:-1] * np.conj(echo[-1])).real / np.abs(echo[-1]) ** 2
        np.testing.assert_allclose(signed[tissue, pick], ratio, rtol=0.02, atol=0.01)


def test_bands_indexed_over_two_periods_and_a_field_interpolated_inside_pixels():
    from ofrnn.simulate.scene import band_index, upsample_linear

    tr = 3.2
    hz = np.array([0.0, 1 / (4 * tr * 1e-3), 1 / (tr * 1e-3), -1 / (tr * 1e-3), 2 / (tr * 1e-3)])
    # one period: beta 0 -> bin 32, pi/2 -> 48, and a whole turn wraps back to 32
    np.testing.assert_array_equal(band_index(hz, tr, 64), [32, 48, 32, 32, 32])
    # two periods: a whole turn is the next pass band (bins 0 and 128 are beta = -2 pi = 2 pi)
    np.testing.assert_array_equal(band_index(hz, tr, 64, periods=2), [64, 80, 0, 0, 64])
    # a ramp is reproduced inside the pixels; each pixel's sub-samples average to its value
    ramp = np.add.outer(np.arange(6.0), 2 * np.arange(5.0))
    fine = upsample_linear(ramp, 3)
    assert fine.shape == (18, 15)
    rows, cols = (np.arange(18) + 0.5) / 3 - 0.5, (np.arange(15) + 0.5) / 3 - 0.5
    exact = np.add.outer(np.clip(rows, 0, 5), 2 * np.clip(cols, 0, 4))
    np.testing.assert_allclose(fine, exact, atol=1e-9)
    np.testing.assert_allclose(fine.reshape(6, 3, 5, 3).mean((1, 3))[1:-1, 1:-1], ramp[1:-1, 1:-1], atol=1e-9)


def test_signed_bands_change_the_frames_and_no_ground_truth(monkeypatch):
    _switched(monkeypatch, "SIGNED_BANDS", (False, True), 7, "basal", Acquisition(matrix=128, field_t=3.0))


def test_small_vessels_dot_lung_liver_and_spleen_and_change_no_ground_truth(monkeypatch):
    """The small vessels draw from their own stream and are painted only where lung, liver or
    spleen was: the heart, its motion and every ground truth are those of the same seed without them."""
    import ofrnn.simulate as sim
    from ofrnn.simulate import scene as sc
    from ofrnn.simulate.anatomy import sample_anatomy
    from ofrnn.simulate.render import material_map

    a = sample_anatomy(np.random.default_rng(2), "apical", fov_mm=(360.0, 360.0))
    a.body["scene"] = sc.sample_scene(np.random.default_rng(3), a)
    bare = material_map(a, (180, 180), 2.0, k=1)
    drawn = sc.sample_small_vessels(np.random.default_rng(4), a)
    assert len(drawn) == sc.SMALL_VESSELS
    bright = np.mean([t == Tissue.AORTA_BLOOD for *_, t in drawn])
    assert abs(bright - sc.SMALL_VESSEL_BRIGHT) < 0.12
    a.body["scene"]["small_vessels"] = drawn
    dotted = material_map(a, (180, 180), 2.0, k=1)
    changed = dotted != bare
    assert changed.sum() > 50  # many of them land in the lungs, liver and spleen
    assert set(np.unique(bare[changed])) <= {Tissue.LUNG, Tissue.LIVER, Tissue.SPLEEN}
    assert set(np.unique(dotted[changed])) <= {Tissue.AORTA_BLOOD, Tissue.SOFT_TISSUE}

    acq = Acquisition(matrix=128, frames=4, pixel_mm=2.8)
    full = simulate_subject(3, "apical", acq)
    monkeypatch.setattr(sim, "sample_small_vessels", lambda rng, anatomy: [])
    without = simulate_subject(3, "apical", acq)
    assert not np.array_equal(full.cine, without.cine)
    for name in ("myocardium_t", "lv_cavity_t", "infarct", "lv_box", "flow", "aha_segments"):
        np.testing.assert_array_equal(getattr(full, name), getattr(without, name), err_msg=name)
    assert full.attrs == without.attrs
    # where a vessel wall makes a lung pixel solid, its (zero) flow becomes valid tissue ground truth;
    # around the heart nothing changes
    y0, x0, y1, x1 = full.lv_box[0]
    np.testing.assert_array_equal(full.flow_valid[:, y0:y1, x0:x1], without.flow_valid[:, y0:y1, x0:x1])


def test_organ_texture_never_turns_the_signal_negative():
    """A strong Gaussian texture falls below -1 somewhere; the multiplicative texture is clipped at 0
    there and untouched elsewhere."""
    from ofrnn.simulate.anatomy import sample_anatomy
    from ofrnn.simulate.scene import organ_texture

    a = sample_anatomy(np.random.default_rng(5), "mid", fov_mm=(256.0, 256.0))
    scene = dict(texture=dict(amplitude=1.5, sigma_mm=3.0))
    t = organ_texture(np.random.default_rng(6), scene, (256, 256), 1.0, a)
    assert t.min() == 0.0 and (t == 0).mean() > 0.01  # clipped where 1 + f < 0
    assert t.max() > 2.0  # the bright side is left as drawn


def test_blood_inflow_is_dark_at_the_walls_bright_in_the_core_and_only_in_blood():
    from ofrnn.simulate.render import blood_inflow

    step, a, length = 0.5, 0.3, 2.0
    yy, xx = np.mgrid[0:81, 0:81]
    r = np.hypot(yy - 40, xx - 40)
    lab = np.full((81, 81), Tissue.LV_MYOCARDIUM, np.uint8)
    lab[r <= 30] = Tissue.LV_BLOOD
    lab[np.hypot(yy - 40, xx - 62) <= 3] = Tissue.PAPILLARY  # a wall inside the pool
    f = blood_inflow(lab, step, amplitude=a, length_mm=length)
    assert f.dtype == np.float32
    np.testing.assert_array_equal(f[lab != Tissue.LV_BLOOD], 1.0)
    depth = ndi.distance_transform_edt(lab == Tissue.LV_BLOOD) * step
    blood = lab == Tissue.LV_BLOOD
    np.testing.assert_allclose(f[blood], 1 - a + 2 * a * (1 - np.exp(-depth[blood] / length)), rtol=1e-6)
    assert f[40, 40] == pytest.approx(1 + a, abs=0.01)  # 9.5 mm from the papillary muscle: fresh
    assert f[40, 10] == pytest.approx(1 - a + 2 * a * (1 - np.exp(-step / length)), rel=1e-6)  # at the wall
    # blood beside the papillary muscle is slow too: darker than blood as deep from the contour
    assert f[40, 57] < f[40, 23]
    for bad in (dict(amplitude=1.0, length_mm=4.0), dict(amplitude=-0.1, length_mm=4.0),
                dict(amplitude=0.2, length_mm=0.0)):
        with pytest.raises(ValueError):
            blood_inflow(lab, step, **bad)


def test_blood_inflow_brightens_the_cavity_core_and_changes_no_ground_truth(monkeypatch):
    import ofrnn.simulate as sim
    from ofrnn.experiments.realism_measures import blood_depth_measures, noise_level

    a, b = _switched(monkeypatch, "BLOOD_INFLOW", (False, True), 3, "mid", Acquisition(matrix=128, snr=400.0))
    assert "inflow_amplitude" not in a.attrs
    assert sim.INFLOW_AMPLITUDE[0] <= b.attrs["inflow_amplitude"] <= sim.INFLOW_AMPLITUDE[1]
    assert sim.INFLOW_LENGTH_MM[0] <= b.attrs["inflow_length_mm"] <= sim.INFLOW_LENGTH_MM[1]
    # every frame's cavity (its own walls) brightens inwards with the profile, and not without it
    for t in (0, b.attrs["es_frame"]):
        cavity = b.lv_cavity_t[t].astype(bool)
        before = blood_depth_measures(a.cine[t], cavity)["blood_core_rim"]
        after = blood_depth_measures(b.cine[t], cavity)["blood_core_rim"]
        assert before == pytest.approx(1.0, abs=0.05)
        assert after > before + 0.1
    # away from the heart the frame is the same pixel for pixel but for the reconstruction's ringing:
    # the noise is drawn alike, as the profile draws from a stream of its own (noise drawn again
    # would differ by about the noise level everywhere)
    far = np.ones(a.cine.shape[1:], bool)
    ys, xs = np.nonzero(b.lv_cavity_t.any(0))
    far[max(ys.min() - 30, 0):ys.max() + 30, max(xs.min() - 30, 0):xs.max() + 30] = False
    assert np.median(np.abs(a.cine[0] - b.cine[0])[far]) < 0.1 * noise_level(a.cine[0])


def test_the_render_submodule_is_not_hidden_by_its_function():
    """``ofrnn.simulate.render`` is the module (monkeypatching and docs name it), not the function."""
    import types

    import ofrnn.simulate as S

    assert isinstance(S.render, types.ModuleType) and callable(S.render.render)
