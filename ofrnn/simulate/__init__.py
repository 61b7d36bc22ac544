"""A physically grounded simulator of short-axis cine bSSFP with myocardial infarcts.

The paper's 114 clinical subjects are private; this phantom is ofrnn's default data set. Each
subject is one short-axis slice over one cardiac cycle with exact ground truth (motion, infarct,
LV boxes), built in four steps:

1. anatomy (:mod:`.anatomy`): LV ring, RV crescent, papillary muscles, trabeculae, fat,
   pericardium and torso, plus a coronary-territory infarct in the end-diastolic frame; the scene
   around the heart (:mod:`.scene`: bowel, great vessels, atria, texture, off-resonance) draws
   from its own stream;
2. kinematics (:mod:`.kinematics`): an incompressible, rotating, translating cardiac motion whose
   regional function follows the scar's transmurality;
3. rendering (:mod:`.render`): supersampled partial-volume frames, masks and flow from the same map;
4. image formation (:mod:`.mri`): bSSFP contrast from PD/T1/T2 at 1.5 or 3 T (fat at its
   chemical shift), coil shading, complex Gaussian noise, k-space truncation, magnitude, and the
   scanner's imperfect surface-coil intensity correction.

Determinism: subject ``i`` of a cohort draws from ``SeedSequence(seed).spawn(n)[i]``, so results
do not depend on the number of worker processes.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from ..store import LEVELS, Subject
from .anatomy import sample_anatomy
from .kinematics import sample_motion
from .mri import MT_RANGE, Tissue, acquire, band_table, coil_sensitivity, intensity_correction, signal_table, smooth_field
# imported as render_frames: bound as ``render`` the function would hide the submodule
# (``import ofrnn.simulate.render`` would give the function, not the module)
from .render import SUPERSAMPLE, lv_boxes
from .render import render as render_frames
from .scene import (ACQUISITION_STREAM, INFLOW_STREAM, VESSEL_STREAM, band_index, field_hz, organ_texture, sample_scene,
                    sample_small_vessels, scene_rng, substream, upsample, upsample_linear)

#: composition of the paper's cohort (Sec. 3): 43 apical, 37 mid-cavity, 34 basal slices
PAPER_LEVEL_COUNTS = {"apical": 43, "mid": 37, "basal": 34}
#: share of the phase-encoding lines and of the readout samples acquired (the rest zero-filled):
#: cine protocols acquire about 190 x 150 and reconstruct 256 x 256. Set on the calibration frames'
#: radial power spectra (`make realism-calibrate`): with 0.6-0.95 the phantom kept more of its
#: power in the finest bands than ACDC 061-080 and SC-HF-I-1 do
ACQUIRED_RESOLUTION = (0.55, 0.85)
#: through-plane partial volume at the boundaries of the fat inside the body (Gaussian sigma, mm;
#: :func:`.render.soften_fat_boundaries`). Set on the calibration frames: 0.7 mm lowered the
#: real-vs-simulated statistics AUC for three cohorts (two tuning seeds and the default seed: 0.919
#: against 0.935, 0.926 against 0.948, 0.936 against 0.959 with sharp boundaries;
#: docs/phantom-realism.md). A sigma of 0.7 mm spreads the fat-water mixture over about 2 mm,
#: a fraction of the 6-10 mm slice that cuts these sheets obliquely
FAT_PARTIAL_VOLUME_MM = 0.7
#: bSSFP banding with the echo's sign (:func:`.mri.band_table` ``signed``): the signal flips sign
#: from one pass band to the next, so a pixel across a stop band cancels to a thin black line
#: instead of a dimmed band, the field being interpolated inside each pixel. On from the phantom
#: 12-05e; off gives the magnitude profile with the field constant per pixel (12-05d and before)
SIGNED_BANDS = True
#: in-flow profile of the ventricles' blood (:func:`.render.blood_inflow`): amplitude ``a`` and
#: depth ``L`` (mm), drawn per subject from a stream of their own (:data:`.scene.INFLOW_STREAM`), so
#: nothing else drawn changes. The calibration frames' LV blood brightens from the contour inwards
#: (`make realism`'s "blood core / rim": ACDC 061-080 1.23, SC-HF-I-1 1.72), the phantom's uniform
#: blood does not (0.99 on the tuning draws); these ranges give 1.21-1.22 on them. Off: switched on, the
#: realism statistics lost on both draws (0.901 -> 0.909, 0.934 -> 0.949; the darker rim softens
#: the blood-myocardium edge, docs/phantom-realism.md), and it changes the cohort's frames
BLOOD_INFLOW = False
INFLOW_AMPLITUDE = (0.15, 0.35)
INFLOW_LENGTH_MM = (6.0, 10.0)
#: receive channels of the root-sum-of-squares combination (:func:`.mri.acquire`): the air of the
#: calibration frames reads 0.035-0.039 of blood, the former phantom's single channel (Rayleigh
#: floor, SNR 35-100) 0.014; four effective channels give 0.017 at SNR 70-200 and 0.024 at the
#: present 42-120 (medians, tuning cohort; the rest is ghosting, which the phantom lacks)
RECEIVE_CHANNELS = 4
#: blood SNR (per receive channel) and echo time over TR, drawn per subject (see simulate_subject)
SNR_RANGE = (42.0, 120.0)
TE_FRACTION = (0.42, 0.5)


@dataclass(frozen=True)
class Acquisition:
    """Acquisition settings; ``None`` draws a per-subject value from the stated clinical range."""

    frames: int = 25
    matrix: int = 256
    pixel_mm: float | None = None  # 1.3-1.6 mm
    snr: float | None = None  # blood signal / noise sigma (per receive channel): 42-120
    field_t: float | None = None  # 1.5 or 3 T, equally likely (clinical cine runs on both)
    flip_deg: float | None = None  # nominal 45-60 deg times the transmit field: 0.5-1.0 at 3 T, 0.75-1.0 at 1.5 T
    tr_ms: float | None = None  # 3.0-3.4 ms at 3 T, 2.8-3.2 ms at 1.5 T
    phase_resolution: float | None = None  # 0.55-0.85 of phase-encoding lines acquired
    readout_resolution: float | None = None  # 0.55-0.85 of the readout samples (interpolated reconstruction)
    fov_mask: float | None = None  # circular FOV mask radius / matrix: 0.46-0.5 in 35 % of cines, else 0 (none)
    residual_shading: float | None = None  # coil shading left by the intensity correction: 0.2-0.8
    te_fraction: float | None = None  # echo time / TR: 0.42-0.5 (asymmetric echoes read before TR / 2)

    def __post_init__(self):
        if self.frames < 2:
            raise ValueError("frames must be at least 2")
        if self.matrix < 64:
            raise ValueError("matrix must be at least 64")
        if self.field_t not in (None, 1.5, 3.0):
            raise ValueError("field_t must be 1.5 or 3")
        if self.pixel_mm is not None and not 0.5 <= self.pixel_mm <= 3.0:
            raise ValueError("pixel_mm must be within 0.5-3.0 mm")
        if self.snr is not None and self.snr <= 0:
            raise ValueError("snr must be positive")
        if self.phase_resolution is not None and not 0.3 <= self.phase_resolution <= 1.0:
            raise ValueError("phase_resolution must be within 0.3-1.0")
        if self.readout_resolution is not None and not 0.3 <= self.readout_resolution <= 1.0:
            raise ValueError("readout_resolution must be within 0.3-1.0")
        if self.fov_mask is not None and not (self.fov_mask == 0 or 0.3 <= self.fov_mask <= 0.71):
            raise ValueError("fov_mask must be 0 (none) or within 0.3-0.71")
        if self.residual_shading is not None and not 0.0 <= self.residual_shading <= 1.0:
            raise ValueError("residual_shading must be within 0-1")
        if self.te_fraction is not None and not 0.2 <= self.te_fraction <= 0.8:
            raise ValueError("te_fraction must be within 0.2-0.8")


def level_counts(n):
    """Slice levels for ``n`` subjects in the paper's 43/37/34 proportion (largest remainder)."""
    total = sum(PAPER_LEVEL_COUNTS.values())
    exact = {lv: n * c / total for lv, c in PAPER_LEVEL_COUNTS.items()}
    counts = {lv: int(np.floor(v)) for lv, v in exact.items()}
    for lv in sorted(exact, key=lambda lv: exact[lv] - counts[lv], reverse=True)[: n - sum(counts.values())]:
        counts[lv] += 1
    return counts


def simulate_subject(seed, level, acquisition: Acquisition = Acquisition(), *, subject_id="S000"):
    """Simulate one short-axis cine slice.

    Parameters
    ----------
    seed : int or numpy.random.SeedSequence
        Everything about the subject follows from it.
    level : {'apical', 'mid', 'basal'}
    acquisition : Acquisition
    subject_id : str, keyword-only

    Returns
    -------
    Subject
        With every field of the store; ``attrs`` records the drawn acquisition and physiology
        (snr, field_t, tr_ms, te_ms, flip_deg (the effective one), b1 (its share of the nominal), mt (the
        magnetization-transfer factor of :data:`.mri.MT_TISSUES`), turn_deg (the torso's turn), rr_ms,
        ef, ef_target, es_frame, rotation_es_deg, infarct territory and maximal transmurality).
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {LEVELS}")
    rng = np.random.default_rng(seed)
    # settings added after the cohort's first release draw from their own stream, so every
    # heart, motion and noise draw of the main stream stays where it was
    # (drawn whether or not the acquisition fixes them, so fixing one leaves the others as drawn)
    arng = substream(seed, ACQUISITION_STREAM)
    acq = acquisition
    drawn = dict(field_t=float(arng.choice([1.5, 3.0])), residual_shading=float(arng.uniform(0.2, 0.8)),
                 readout_resolution=float(arng.uniform(*ACQUIRED_RESOLUTION)),
                 # a circular FOV mask (radius as a share of the matrix) in about a third of the cines
                 fov_mask=float(arng.uniform(0.46, 0.5)) if arng.random() < 0.35 else 0.0)
    field, residual, readout, fov_mask = (getattr(acq, k) if getattr(acq, k) is not None else v
                                          for k, v in drawn.items())
    # the transmit field over the heart falls short of the nominal flip angle at 3 T (Sung & Nayak,
    # JMRI 27:643 (2008), measured at 3 T); at 1.5 T the shortfall is assumed smaller. A lower flip
    # angle brightens myocardium against blood: the ranges were set on the calibration frames'
    # myocardium / blood (ACDC 061-080 0.46, IQR 0.35-0.57; SC-HF-I-1 0.34; `make
    # realism-calibrate`) and give 0.25-0.52. Those were read on the labels as drawn, whose edge pixels
    # mix in blood and fat; one pixel in from both edges, as `make realism` reads it since, ACDC
    # 061-080 gives 0.41 and SC-HF-I-1 0.31, and the phantom's median (0.33) lies between them. Drawn
    # even when flip_deg is fixed (then unused), so fixing it leaves the draws after it as they were
    b1 = float(arng.uniform(*((0.5, 1.0) if field == 3.0 else (0.75, 1.0))))
    # magnetization transfer lowers liver, spleen, muscle and abdominal signal (mri.MT_TISSUES); the
    # range puts the body's median over blood where ACDC 061-080 and SC-HF-I-1 have it (tuning
    # cohort 0.31 against 0.32-0.36, `make realism-calibrate`); the upper quartile stayed below
    # theirs (0.49 against 0.61-0.66). With fat's six-peak spectrum (12-06a) the tuning cohort reads
    # 0.36 and 0.62 (ACDC 061-080 0.36 and 0.66, SC-HF-I-1 0.33 and 0.61)
    mt = float(arng.uniform(*MT_RANGE))
    # the echo: Sunnybrook's GE cines read it at 0.44-0.46 of TR (DICOM headers), vendors with a
    # symmetric echo at 0.5; before TR / 2 fat and water no longer cancel exactly (mri.echo_phase).
    # Without it every fat-water boundary was an exact zero of the signed signal, whose magnitude
    # kinks there: the kinks held the phantom's excess power in the finest spectral bands, which
    # ACDC 061-080 and SC-HF-I-1 lack (`make realism-calibrate`)
    te_fraction = float(arng.uniform(*TE_FRACTION))
    te_fraction = acq.te_fraction if acq.te_fraction is not None else te_fraction
    b1 = b1 if acq.flip_deg is None else 1.0
    T, n = acq.frames, acq.matrix
    spacing = acq.pixel_mm if acq.pixel_mm is not None else rng.uniform(1.3, 1.6)
    # blood SNR of clinical cine bSSFP with phased-array coils; ACDC 061-080 and SC-HF-I-1 measure
    # 59 and 106 by Immerkaer's estimator (`make realism-calibrate`), but edges and texture bias
    # that estimator low, and on the phantom they dominate it. The range is set on the air outside
    # the body, which is noise alone: it reads 0.039 (ACDC 061-080) and 0.032 (SC-HF-I-1) of the blood
    # median, the former 70-200 gave 0.017 and 42-120 gives 0.024 (medians; the rest is ghosting,
    # which the phantom lacks, and which made the local-binary-pattern histograms less real when
    # tried). The pixel-scale statistics barely moved between those ranges
    snr = acq.snr if acq.snr is not None else rng.uniform(*SNR_RANGE)
    # nominal flip angle times the transmit field's share (an explicit flip_deg is taken as exact)
    flip = acq.flip_deg if acq.flip_deg is not None else rng.uniform(45, 60) * b1
    tr = acq.tr_ms if acq.tr_ms is not None else rng.uniform(*((3.0, 3.4) if field == 3.0 else (2.8, 3.2)))
    phase_res = acq.phase_resolution if acq.phase_resolution is not None else rng.uniform(*ACQUIRED_RESOLUTION)
    # temporal resolution as the paper's cohort: 45.1 +- 8.8 ms per frame (Sec. 3)
    rr = T * float(np.clip(rng.normal(45.1, 8.8), 30, 65))
    fov = (n * spacing, n * spacing)

    anatomy = sample_anatomy(rng, level, fov_mm=fov)
    motion = sample_motion(rng, anatomy, n_frames=T, rr_ms=rr)
    k = SUPERSAMPLE
    texture = 1 + smooth_field((n * k, n * k), rng, sigma_px=2.5 * k / spacing, amplitude=0.03)
    sig = signal_table(field_t=field, flip_deg=flip, tr_ms=tr, mt=mt, te_ms=te_fraction * tr)
    # the scene around the heart draws from its own stream: the heart, motion and noise above
    # and below are those of the same seed without it
    srng = scene_rng(seed)
    anatomy.body["scene"] = scene = sample_scene(srng, anatomy)
    scene["small_vessels"] = sample_small_vessels(substream(seed, VESSEL_STREAM), anatomy)
    texture *= organ_texture(srng, scene, (n * k, n * k), spacing / k, anatomy)
    hz = field_hz(srng, scene, (n, n), spacing, anatomy, field)
    if SIGNED_BANDS:  # the field varies inside a pixel, so a pixel across a stop band cancels
        bins = band_index(upsample_linear(hz, k), tr, 64, periods=2)
    else:
        bins = upsample(band_index(hz, tr, 64), k)
    band = (band_table(field_t=field, flip_deg=flip, tr_ms=tr, n_bins=64, signed=SIGNED_BANDS), bins)
    inflow = None
    if BLOOD_INFLOW:
        irng = substream(seed, INFLOW_STREAM)
        inflow = (float(irng.uniform(*INFLOW_AMPLITUDE)), float(irng.uniform(*INFLOW_LENGTH_MM)))
    out = render_frames(anatomy, motion, shape=(n, n), spacing=spacing, signal=sig, texture=texture.astype(np.float32),
                 band=band, fat_partial_volume_mm=FAT_PARTIAL_VOLUME_MM, inflow=inflow)

    coil = coil_sensitivity((n, n), rng, spacing_mm=spacing)
    phase = smooth_field((n, n), rng, sigma_px=40 / spacing, amplitude=1.0)
    ci, cj = (int(round(v / spacing)) for v in anatomy.centre_mm)
    blood = float(np.abs(sig[int(Tissue.LV_BLOOD)])) * coil[ci, cj]  # the table is complex when fat turns
    cine = acquire(out["frames"] * coil * np.exp(1j * phase), rng, noise_sigma=blood / snr,
                   phase_resolution=phase_res, phase_axis=int(rng.integers(2)), readout_resolution=readout,
                   channels=RECEIVE_CHANNELS)
    cine = np.rint(cine / intensity_correction(coil, (ci, cj), residual=residual)).astype(np.float32)
    if fov_mask:
        # some reconstructions blank the corners outside a circular field of view (Sunnybrook's)
        yy, xx = np.mgrid[0:n, 0:n]
        cine[:, np.hypot(yy - (n - 1) / 2, xx - (n - 1) / 2) > fov_mask * n] = 0

    cav = out["lv_cavity_t"].reshape(T, -1).sum(1)
    es_frame = int(np.argmin(cav))
    inf = anatomy.infarct
    attrs = dict(snr=float(snr), field_t=field, b1=b1, mt=mt, turn_deg=float(scene["turn_deg"]), residual_shading=residual, fov_mask=fov_mask, tr_ms=float(tr), te_ms=float(te_fraction * tr),
                 flip_deg=float(flip), rr_ms=float(rr), phase_resolution=float(phase_res), readout_resolution=readout,
                 ef=float(1 - cav[es_frame] / max(cav[0], 1)), ef_target=motion.ef_target, es_frame=es_frame,
                 rotation_es_deg=float(np.rad2deg(motion.rotation_es)),
                 infarct_territory=inf.territory if inf else "",
                 infarct_max_transmurality=inf.max_transmurality if inf else 0.0)
    if inflow is not None:  # recorded only when drawn, so a cohort without it keeps its bytes
        attrs.update(inflow_amplitude=inflow[0], inflow_length_mm=inflow[1])
    return Subject(id=subject_id, cine=cine, spacing_mm=(spacing, spacing), level=level,
                   frame_times_ms=np.arange(T) * rr / T, infarct=out["infarct"], myocardium=out["myocardium"],
                   aha_segments=out["aha_segments"], lv_box=lv_boxes(out["myocardium_t"], out["lv_cavity_t"]),
                   myocardium_t=out["myocardium_t"], lv_cavity_t=out["lv_cavity_t"], flow=out["flow"],
                   flow_valid=out["flow_valid"], attrs=attrs)


def keep_freed_memory():
    """Let this process's C allocator keep freed memory instead of returning it to the system.

    Rendering allocates and frees arrays of a few megabytes hundreds of times per subject; glibc
    serves each from a fresh ``mmap`` and hands it back on free, so every one costs page faults:
    ``ofrnn simulate --subjects 114 --jobs 2`` took 159.5 s (40 s of it system time) before this
    and the renderer's flat gathers, and 136.9 s (6 s) with both, back to back on the 2-core build
    machine (2026-12-06, the same bytes); five subjects in one process, gathers in both: 11-12.7 s
    with it, 13.6-15.5 s without. Raising the mmap and trim thresholds
    (``mallopt(3)``) keeps the freed memory for the next array; the peak memory is the same
    (about 350 MB per worker) and so is every value computed. A no-op where the C library is
    not glibc. Called in the simulator's own processes only (the workers of
    :func:`simulate_cohort` and ``ofrnn simulate``), never in a process that imports the package.
    """
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc: its allocator keeps its own policy
        return
    M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
    mallopt(M_MMAP_THRESHOLD, 32 << 20)  # glibc's ceiling on 64-bit; a frame stack is about 13 MB
    mallopt(M_TRIM_THRESHOLD, 1 << 30)
    mallopt(M_TOP_PAD, 64 << 20)


def _simulate_task(task):
    index, level, seed_seq, acq = task
    return simulate_subject(seed_seq, level, acq, subject_id=f"S{index:03d}")


def cohort_plan(n_subjects, seed):
    """(index, level, SeedSequence) per subject: levels in the paper's proportion, shuffled by seed."""
    # child 0 shuffles the levels; children 1..n are the subjects
    shuffle, *children = np.random.SeedSequence(seed).spawn(n_subjects + 1)
    levels = [lv for lv, c in level_counts(n_subjects).items() for _ in range(c)]
    order = np.random.default_rng(shuffle).permutation(len(levels))
    return [(i, levels[order[i]], children[i]) for i in range(n_subjects)]


def simulate_cohort(path, *, n_subjects=114, seed=0, jobs=1, progress=True, **acquisition):
    """Simulate a cohort and write it atomically to ``path`` (see :mod:`ofrnn.store`).

    Parameters
    ----------
    path : str or Path
    n_subjects : int, keyword-only
        Slices; levels follow the paper's 43/37/34 apical/mid/basal proportion.
    seed : int, keyword-only
    jobs : int, keyword-only
        Worker processes; the result is the same for any number.
    progress : bool, keyword-only
        Show a progress bar.
    **acquisition
        Fields of :class:`Acquisition` (frames, matrix, pixel_mm, snr, field_t, flip_deg, tr_ms,
        phase_resolution, readout_resolution, residual_shading, fov_mask, te_fraction).

    Returns
    -------
    list of str
        Subject ids written.
    """
    from multiprocessing import get_context

    from tqdm import tqdm

    from ..store import CohortWriter

    acq = Acquisition(**acquisition)
    plan = cohort_plan(n_subjects, seed)
    tasks = [(i, lv, ss, acq) for i, lv, ss in plan]
    params = dict(generator="ofrnn.simulate", n_subjects=n_subjects, seed=seed, supersample=SUPERSAMPLE,
                  acquisition=asdict(acq), level_counts=level_counts(n_subjects))
    with CohortWriter(path, source="simulated", params=params) as writer:
        bar = tqdm(total=n_subjects, desc="simulate", unit="subject", disable=not progress)
        if jobs > 1:
            # spawned workers: a fork of a process that already runs threads (TensorFlow's, BLAS's) can
            # inherit a lock another thread held and hang forever, as it did once in the test suite
            with get_context("spawn").Pool(jobs, initializer=keep_freed_memory) as pool:
                for subject in pool.imap(_simulate_task, tasks):
                    writer.add(subject)
                    bar.update()
        else:
            for task in tasks:
                writer.add(_simulate_task(task))
                bar.update()
        bar.close()
    return writer.ids
