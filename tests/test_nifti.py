"""NIfTI ingestion: small synthetic cines and label maps written with nibabel for every rule and bad
input, the geometry helpers that write results back in the input's voxel space, and real ACDC
slices converted to NIfTI on the fly (skipped when ``<repo>/../shared/data`` is absent)."""

import nibabel as nib
import numpy as np
import pytest

from conftest import SHARED_DATA, assert_private, cli
from ofrnn.errors import OfrnnError
from ofrnn.ingest import ingest_nifti, nifti_volume_for
from ofrnn.store import open_cohort

ACDC = SHARED_DATA / "acdc-edes"
X, Y, Z, T = 7, 6, 3, 4
#: oblique, with an offset: axes (x, y, z) of 1.25, 1.5 and 8 mm
ROTATION = np.array([[0.8, -0.6, 0.0], [0.6, 0.8, 0.0], [0.0, 0.0, 1.0]])
AFFINE = np.eye(4)
AFFINE[:3, :3] = ROTATION @ np.diag([1.25, 1.5, 8.0])
AFFINE[:3, 3] = [-40.0, 12.5, 30.0]
NAME = "Doe^Jane"


def cine_data(seed=0, shape=(X, Y, Z, T)):
    """Distinct values per voxel, slice and frame (so any axis mix-up shows)."""
    rng = np.random.default_rng(seed)
    return (rng.random(shape) * 100 + np.arange(shape[-1]) * 1000).astype(np.float32)


def write_nifti(path, data, *, affine=AFFINE, units=("mm", "sec"), dt=0.08, descrip=NAME):
    """A NIfTI-1 file; ``dt`` is pixdim[4] in the time unit; a patient name hides in the header."""
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units(*units)
    if data.ndim == 4:
        img.header["pixdim"][4] = dt
    img.header["descrip"] = descrip.encode()
    img.header.extensions.append(nib.nifti1.Nifti1Extension("comment", f"PatientName={NAME}".encode()))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, path)
    return path


def label_data(shape=(X, Y, Z, T)):
    """ACDC codes: an LV cavity (3) ringed by myocardium (2) beside an RV (1) on slices 0 and 1; slice 2
    (beyond the apex) has none; the ring moves by one voxel each frame."""
    lab = np.zeros(shape, np.uint8)
    for t in range(shape[-1]):
        for k in range(min(2, shape[2]) if len(shape) == 4 else 1):
            sl = lab[:, :, k, t] if len(shape) == 4 else lab[:, :, t]
            x0 = 1 + t % 2
            sl[x0:x0 + 4, 1:5] = 2
            sl[x0 + 1:x0 + 3, 2:4] = 3
            sl[0, :] = 1
    return lab


def test_4d_cine_slices_orientation_spacing_times_and_geometry(tmp_path, capsys):
    data = cine_data()
    src = write_nifti(tmp_path / NAME / "cine.nii.gz", data)
    out = tmp_path / "c.h5"
    rc, stdout, err = cli("nifti", capsys, src, "--out", out, "--frames", T)
    assert rc == 0 and err == "", err
    assert f"wrote {Z} subject(s)" in stdout
    normal = ROTATION[:, 2]
    with open_cohort(out) as c:
        assert c.source == "nifti" and len(c) == Z
        for k, sid in enumerate(c.ids):
            s = c[sid]
            assert s.cine.shape == (T, Y, X)  # rows = y, columns = x
            np.testing.assert_array_equal(s.cine, data[:, :, k, :].transpose(2, 1, 0))  # T -> T frames: the source
            np.testing.assert_allclose(s.frame_times_ms, 80 * np.arange(T))
            assert s.spacing_mm == pytest.approx((1.5, 1.25)) and s.level == "unknown"
            assert s.attrs["times_assumed"] == 0 and s.attrs["cycle_ms"] == pytest.approx(320)
            assert s.attrs["slice_position_mm"] == pytest.approx((AFFINE @ [0, 0, k, 1])[:3] @ normal)
            np.testing.assert_allclose(s.attrs["nifti_affine"], AFFINE, atol=1e-6)
            assert list(s.attrs["nifti_shape"]) == [X, Y, Z] and s.attrs["nifti_slice"] == k
            assert s.lv_box is None and s.myocardium is None  # no labels: unknown
    assert_private(out, [NAME, str(tmp_path), "cine.nii"])
    assert NAME.split("^")[0] not in stdout + err


def test_3d_plus_time_file_is_one_slice_with_assumed_or_given_times(tmp_path, capsys):
    data = cine_data(shape=(X, Y, 5))
    src = write_nifti(tmp_path / "cine.nii", data)
    rc, stdout, err = cli("nifti", capsys, src, "--out", tmp_path / "a.h5", "--frames", 5)
    assert rc == 0, err
    assert err == (f"ofrnn: note: {src}: a 3-D file has no frame interval; the 5 frames are spread evenly over "
                   f"1000 ms (give --cycle-ms for the real R-R interval)\n")
    assert cli("nifti", capsys, src, "--out", tmp_path / "b.h5", "--frames", 5, "--cycle-ms", 800)[0] == 0
    with open_cohort(tmp_path / "a.h5") as a, open_cohort(tmp_path / "b.h5") as b:
        assert len(a) == len(b) == 1
        sa, sb = a[a.ids[0]], b[b.ids[0]]
        np.testing.assert_array_equal(sa.cine, data.transpose(2, 1, 0))
        np.testing.assert_allclose(sa.frame_times_ms, 200 * np.arange(5))
        np.testing.assert_allclose(sb.frame_times_ms, 160 * np.arange(5))
        assert sa.attrs["times_assumed"] == 1 and sb.attrs["cycle_ms"] == 800
        assert list(sa.attrs["nifti_shape"]) == [X, Y, 1] and sa.attrs["nifti_slice"] == 0


def test_header_units_and_an_implausible_frame_interval(tmp_path, capsys):
    metres = np.diag([0.00125, 0.0015, 0.008, 1.0])
    src = write_nifti(tmp_path / "m.nii", cine_data(), affine=metres, units=("meter", "msec"), dt=200)
    assert cli("nifti", capsys, src, "--out", tmp_path / "m.h5", "--frames", T)[0] == 0
    acdc_like = write_nifti(tmp_path / "a.nii", cine_data(), dt=1.0)  # 1 s per frame: 4 s is not a heartbeat
    rc, _, err = cli("nifti", capsys, acdc_like, "--out", tmp_path / "a.h5", "--frames", T)
    assert rc == 0 and "pixdim[4] = 1 sec: 4 frames would span 4000 ms, not a heartbeat" in err
    with open_cohort(tmp_path / "m.h5") as m, open_cohort(tmp_path / "a.h5") as a:
        sm = m[m.ids[0]]
        assert sm.spacing_mm == pytest.approx((1.5, 1.25)) and sm.attrs["cycle_ms"] == pytest.approx(800)
        assert a[a.ids[0]].attrs["times_assumed"] == 1 and a[a.ids[0]].attrs["cycle_ms"] == 1000


def test_label_maps_fill_myocardium_cavity_and_boxes(tmp_path, capsys):
    data, lab = cine_data(), label_data()
    src = write_nifti(tmp_path / "cine.nii.gz", data)
    full = write_nifti(tmp_path / "gt_all.nii.gz", lab)
    ed = write_nifti(tmp_path / "gt_ed.nii.gz", lab[..., 0])
    es = write_nifti(tmp_path / "gt_es.nii.gz", lab[..., 3])
    rc, _, err = cli("nifti", capsys, src, src, "--out", tmp_path / "c.h5", "--frames", 8, "--labels", full,
                     "--labels", ed, f"{es}@3", "--id-prefix", "p")
    assert rc == 0, err
    assert err.endswith(f"{src}: the same content as cine.nii.gz; dropped\n")  # the second input is a copy
    rc, _, err = cli("nifti", capsys, src, "--out", tmp_path / "c.h5", "--frames", 8, "--labels", ed, f"{es}@3",
                     "--id-prefix", "p")
    assert rc == 0, err
    assert cli("nifti", capsys, src, "--out", tmp_path / "f.h5", "--frames", 8, "--labels", full,
               "--id-prefix", "p")[0] == 0
    with open_cohort(tmp_path / "c.h5") as c, open_cohort(tmp_path / "f.h5") as f:
        assert c.ids == f.ids == ["p01", "p02", "p03"]
        for k in range(2):
            s, sf = c[f"p0{k + 1}"], f[f"p0{k + 1}"]
            # 4 frames over 320 ms -> 8: original frame j lands on output frame 2j
            np.testing.assert_array_equal(s.annotated["lv_cavity_t"], [1, 0, 0, 0, 0, 0, 1, 0])
            np.testing.assert_array_equal(sf.annotated["myocardium_t"], [1, 0, 1, 0, 1, 0, 1, 0])
            for j, out_frame in ((0, 0), (3, 6)):
                want_cavity = (lab[:, :, k, j] == 3).T
                want_myo = (lab[:, :, k, j] == 2).T
                for sub in (s, sf):
                    np.testing.assert_array_equal(sub.lv_cavity_t[out_frame], want_cavity)
                    np.testing.assert_array_equal(sub.myocardium_t[out_frame], want_myo)
                    rows, cols = np.nonzero(want_cavity | want_myo)
                    np.testing.assert_array_equal(sub.lv_box[out_frame],
                                                  [rows.min(), cols.min(), rows.max() + 1, cols.max() + 1])
            np.testing.assert_array_equal(s.myocardium, (lab[:, :, k, 0] == 2).T)
            assert np.all(s.lv_box[s.annotated["lv_cavity_t"] == 0] == -1)
        beyond = c["p03"]  # no LV labels on slice 2: unknown, not empty
        assert beyond.lv_box is None and beyond.myocardium_t is None and beyond.myocardium is None
        assert c.params["labels"] is True and c.params["cavity_label"] == 3


def test_mnms_codes_and_a_3d_plus_time_label_map(tmp_path, capsys):
    lab = label_data(shape=(X, Y, T))
    mnms = lab.copy()  # M&Ms: 1 LV cavity, 3 RV
    mnms[lab == 3], mnms[lab == 1] = 1, 3
    src = write_nifti(tmp_path / "cine.nii", cine_data(shape=(X, Y, T)))
    gt = write_nifti(tmp_path / "gt.nii", mnms)
    assert cli("nifti", capsys, src, "--out", tmp_path / "c.h5", "--frames", T, "--labels", gt,
               "--cavity-label", 1)[0] == 0
    with open_cohort(tmp_path / "c.h5") as c:
        s = c[c.ids[0]]
        np.testing.assert_array_equal(s.lv_cavity_t, (lab == 3).transpose(2, 1, 0))
        np.testing.assert_array_equal(s.myocardium_t, (lab == 2).transpose(2, 1, 0))


def test_helpers_write_masks_back_in_the_input_voxel_space(tmp_path, capsys):
    data, lab = cine_data(), label_data()
    src = write_nifti(tmp_path / "cine.nii.gz", data)
    gt = write_nifti(tmp_path / "gt.nii.gz", lab[..., 0])
    assert cli("nifti", capsys, src, "--out", tmp_path / "c.h5", "--labels", gt)[0] == 0
    with open_cohort(tmp_path / "c.h5") as c:
        metas = [c.meta(sid) for sid in c.ids]
        masks = [c.read(sid, fields=("myocardium",)).myocardium for sid in c.ids]
        cine = c[c.ids[1]].cine
    # a pixel (row, col) of subject k sits where the input's voxel (col, row, k) sits
    assert cine[0, 2, 4] == data[4, 2, 1, 0]
    img = nifti_volume_for([(m["attrs"], mask) for m, mask in zip(metas, masks) if mask is not None])
    nib.save(img, tmp_path / "mask.nii.gz")
    back = nib.load(tmp_path / "mask.nii.gz")
    assert back.shape == (X, Y, Z) and back.get_data_dtype() == np.uint8
    np.testing.assert_allclose(back.affine, AFFINE, atol=1e-5)
    assert back.header.get_xyzt_units()[0] == "mm" and int(back.header["sform_code"]) == 1
    np.testing.assert_array_equal(np.asarray(back.dataobj), lab[..., 0] == 2)  # slice 2 (none given) stays 0
    with pytest.raises(OfrnnError, match="image of shape"):
        nifti_volume_for([(metas[0]["attrs"], masks[0].T)])
    with pytest.raises(OfrnnError, match="not a NIfTI subject"):
        nifti_volume_for([({"level": "unknown"}, masks[0])])


# -- bad input: one error line, exit 2, nothing written --------------------------------------------

def _bad_dims(d):
    return [write_nifti(d / "v.nii", cine_data(shape=(X, Y, Z, T, 2)))], [], ("v.nii: dim: shape (7, 6, 3, 4, 2)",)


def _one_frame(d):
    return [write_nifti(d / "v.nii", cine_data(shape=(X, Y, Z, 1)))], [], ("v.nii: dim: 1 frame(s) on the time axis",)


def _nan(d):
    data = cine_data()
    data[1, 1, 1, 1] = np.nan
    return [write_nifti(d / "v.nii", data)], [], ("v.nii: data: contains NaN or inf",)


def _not_nifti(d):
    (d / "notes.nii").write_text("not an image")
    return [d / "notes.nii"], [], ("notes.nii: not a NIfTI file",)


def _missing(d):
    return [d / "absent.nii.gz"], [], ("absent.nii.gz: no such NIfTI file",)


def _label_shape(d):
    src = write_nifti(d / "v.nii", cine_data())
    return [src], ["--labels", write_nifti(d / "gt.nii", label_data()[:, :, :2])], (
        "gt.nii: dim: shape (7, 6, 2, 4), expected the cine's (7, 6, 3, 4) (every frame) or (7, 6, 3) (one frame)",)


def _label_affine(d):
    src = write_nifti(d / "v.nii", cine_data())
    return [src], ["--labels", write_nifti(d / "gt.nii", label_data(), affine=np.eye(4))], (
        "gt.nii: sform/qform: affine differs from the cine's",)


def _label_values(d):
    src = write_nifti(d / "v.nii", cine_data())
    return [src], ["--labels", write_nifti(d / "gt.nii", label_data().astype(np.float32) + 0.5)], (
        "gt.nii: data: label values must be integers",)


def _label_frame(d):
    src = write_nifti(d / "v.nii", cine_data())
    return [src], ["--labels", f"{write_nifti(d / 'gt.nii', label_data()[..., 0])}@4"], (
        "gt.nii: @frame: frame 4 of a 4-frame cine",)


def _label_groups(d):
    src = write_nifti(d / "v.nii", cine_data())
    return [src, src], ["--labels", write_nifti(d / "gt.nii", label_data())], (
        "--labels: 1 --labels group(s) for 2 input file(s)",)


BAD = {f.__name__[1:]: f for f in (_bad_dims, _one_frame, _nan, _not_nifti, _missing, _label_shape, _label_affine,
                                    _label_values, _label_frame, _label_groups)}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line_and_nothing_written(case, tmp_path, capsys):
    inputs, extra, expected = BAD[case](tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, stdout, err = cli("nifti", capsys, *inputs, "--out", out_dir / "c.h5", *extra)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ofrnn: error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert list(out_dir.iterdir()) == [] and NAME not in err


def test_library_raises_ofrnn_error(tmp_path):
    src = write_nifti(tmp_path / "v.nii", cine_data())
    with pytest.raises(OfrnnError, match="--frames: 1; a cine needs at least 2 frames"):
        ingest_nifti([src], tmp_path / "c.h5", frames=1)
    with pytest.raises(OfrnnError, match="--cycle-ms: -5"):
        ingest_nifti([src], tmp_path / "c.h5", cycle_ms=-5)
    with pytest.raises(OfrnnError, match="different label codes"):
        ingest_nifti([src], tmp_path / "c.h5", myocardium_label=3, cavity_label=3)
    with pytest.raises(OfrnnError, match="--rv-label: 3 is also the myocardium or cavity code"):
        ingest_nifti([src], tmp_path / "c.h5", rv_label=3)


# -- AHA segments and slice levels from label maps (ofrnn/ingest/aha.py) ---------------------------------

#: a short-axis grid: the image (rows down, columns right) seen along (1, -1, 1)/sqrt(3) in RAS+, from
#: the apex towards the base; negating the column axis gives the mirror, seen from the base
_COLS, _ROWS = np.array([1.0, 1.0, 0.0]) / np.sqrt(2), np.array([-1.0, 1.0, 2.0]) / np.sqrt(6)
SAX = np.eye(4)
SAX[:3, :3] = np.column_stack([_COLS, _ROWS, np.cross(_COLS, _ROWS) * 8.0])
SAX_MIRRORED = SAX @ np.diag([-1.0, 1.0, 1.0, 1.0])
SEPTAL = {"basal": (2, 3), "mid": (8, 9), "apical": (14,)}
LATERAL = {"basal": (5, 6), "mid": (11, 12), "apical": (16,)}
N = 48


def ring_labels(cavity_radius, rv=True):
    """ACDC codes on an (N, N) (row, column) image: a cavity disc, a 4-pixel myocardial ring, and an RV
    crescent on the image left (within 60 degrees of 180), one pixel clear of the ring."""
    rr, cc = np.mgrid[:N, :N] - N / 2 + 0.5
    r, theta = np.hypot(rr, cc), np.arctan2(-rr, cc)
    lab = np.zeros((N, N), np.uint8)
    lab[r < cavity_radius] = 3
    lab[(r >= cavity_radius) & (r < cavity_radius + 4)] = 2
    if rv:
        near_left = np.abs(np.angle(-np.exp(1j * theta))) < np.pi / 3  # |theta - 180 deg| < 60 deg
        lab[(r >= cavity_radius + 5) & (r < cavity_radius + 12) & near_left] = 1
    return lab


def sax_stack(tmp_path, affine, name):
    """A 7-slice cine and its frame-0 labels: slices 0-5 hold the LV, the cavity widening with the slice
    index (the base is the last slice), slice 0 has no RV, slice 6 no labels; returns the cine path,
    the label path and the (row, column) labels per slice."""
    per_slice = [ring_labels(5 + k, rv=k > 0) for k in range(6)] + [np.zeros((N, N), np.uint8)]
    lab = np.stack([m.T for m in per_slice], axis=2)  # (x, y, slice): columns along x
    src = write_nifti(tmp_path / f"{name}.nii.gz", cine_data(shape=(N, N, 7, 3)), affine=affine)
    return src, write_nifti(tmp_path / f"{name}_gt.nii.gz", lab, affine=affine), per_slice


def mean_row_col(mask):
    return np.argwhere(mask).mean(axis=0)


@pytest.mark.parametrize("affine, name, seen_from_apex", [(AFFINE, "placeholder", True), (SAX, "sax", True),
                                                          (SAX_MIRRORED, "mirrored", False)])
def test_label_maps_give_levels_and_aha_segments(tmp_path, capsys, affine, name, seen_from_apex):
    src, gt, per_slice = sax_stack(tmp_path, affine, name)
    rc, _, err = cli("nifti", capsys, src, "--out", tmp_path / "c.h5", "--frames", 3, "--labels", gt,
                     "--id-prefix", "s")
    assert rc == 0, err
    # an axis-aligned affine says nothing of the view: the display convention is assumed, with a note
    assert ("AHA segments assume images seen from the apex" in err) == (affine is AFFINE)
    with open_cohort(tmp_path / "c.h5") as c:
        subjects = [c[sid] for sid in c.ids]
    # the widest cavity is the base: slices 4-5 basal, 2-3 mid, 0-1 apical; slice 0 has no RV (and
    # slice 6 no LV), so both stay unknown
    assert [s.level for s in subjects] == ["unknown", "apical", "mid", "mid", "basal", "basal", "unknown"]
    assert subjects[0].aha_segments is None and subjects[6].aha_segments is None
    for s, lab in zip(subjects[1:6], per_slice[1:6]):
        seg = s.aha_segments
        assert seg.dtype == np.uint8
        np.testing.assert_array_equal(seg > 0, lab == 2)  # exactly the frame-0 myocardium
        np.testing.assert_array_equal(seg > 0, s.myocardium)
        first = {"basal": 1, "mid": 7, "apical": 13}[s.level]
        assert set(np.unique(seg[seg > 0])) == set(range(first, first + (4 if s.level == "apical" else 6)))
        centre = N / 2 - 0.5
        septal, lateral = np.isin(seg, SEPTAL[s.level]), np.isin(seg, LATERAL[s.level])
        assert np.argwhere(septal)[:, 1].max() < centre < np.argwhere(lateral)[:, 1].min()  # the RV is left
        if s.level != "apical":
            # anteroseptal above inferoseptal when seen from the apex; the mirror swaps them
            ant, inf = mean_row_col(seg == first + 1), mean_row_col(seg == first + 2)
            assert (ant[0] < inf[0]) == seen_from_apex


def test_no_aha_segments_for_one_slice_or_too_few_lv_slices(tmp_path, capsys):
    """A 3-D+t file is one slice, and two LV slices cannot be split into thirds: no level, no segments."""
    lab = ring_labels(8)
    src = write_nifti(tmp_path / "one.nii", cine_data(shape=(N, N, 3)), affine=SAX)
    gt = write_nifti(tmp_path / "one_gt.nii", lab.T, affine=SAX)
    two = write_nifti(tmp_path / "two.nii", cine_data(shape=(N, N, 2, 3)), affine=SAX)
    two_gt = write_nifti(tmp_path / "two_gt.nii", np.stack([lab.T, ring_labels(6).T], axis=2), affine=SAX)
    rc, _, err = cli("nifti", capsys, src, two, "--out", tmp_path / "c.h5", "--frames", 3, "--labels", gt,
                     "--labels", two_gt)
    assert rc == 0, err
    with open_cohort(tmp_path / "c.h5") as c:
        for sid in c.ids:
            s = c[sid]
            assert s.level == "unknown" and s.aha_segments is None and s.myocardium is not None


# -- real data: ACDC patient 045 (MINF), end-diastole and end-systole, converted to NIfTI here ----------

#: the shared ACDC files hold no spacing; this one is made up for the conversion (ACDC's are ~1.2-1.8 mm)
ACDC_SPACING = (1.5625, 1.5625, 10.0)


@pytest.fixture(scope="module")
def acdc(tmp_path_factory):
    """patient045 ED and ES volumes (z, y, x) as one 2-frame 4-D NIfTI cine (x, y, z, t) and its labels."""
    import h5py as h5

    frames = [ACDC / f"patient045_frame0{i}.h5" for i in (1, 2)]
    if not all(f.is_file() for f in frames):
        pytest.skip(f"ACDC volumes not found at {ACDC} (shared data folder absent)")
    images, labels = [], []
    for f in frames:
        with h5.File(f, "r") as h:
            images.append(h["image"][()])
            labels.append(h["label"][()])
    root = tmp_path_factory.mktemp("acdc")
    image = np.stack(images, axis=-1).transpose(2, 1, 0, 3)  # (z, y, x, t) -> (x, y, z, t)
    label = np.stack(labels, axis=-1).transpose(2, 1, 0, 3)
    affine = np.diag(ACDC_SPACING + (1.0,))
    write_nifti(root / "cine.nii.gz", image, affine=affine, dt=1.0, descrip="")  # ACDC's placeholder interval
    write_nifti(root / "gt.nii.gz", label, affine=affine, descrip="")
    return dict(root=root, images=images, labels=labels)


def test_acdc_converted_to_nifti(acdc, capsys):
    root = acdc["root"]
    rc, stdout, err = cli("nifti", capsys, root / "cine.nii.gz", "--out", root / "c.h5", "--frames", 2,
                          "--labels", root / "gt.nii.gz")
    assert rc == 0, err
    ed, es = acdc["images"]
    with open_cohort(root / "c.h5") as c:
        assert len(c) == ed.shape[0]
        annotated = 0
        for k, sid in enumerate(c.ids):
            s = c[sid]
            assert s.spacing_mm == (1.5625, 1.5625) and s.cine.shape == (2,) + ed.shape[1:]
            np.testing.assert_array_equal(s.cine[0], ed[k])  # the stored (y, x) images, unflipped
            np.testing.assert_array_equal(s.cine[1], es[k])
            for t, lab in enumerate(acdc["labels"]):
                has_lv = np.isin(lab[k], (2, 3)).any()
                if s.lv_box is None or s.lv_box[t, 0] < 0:
                    assert not has_lv
                    continue
                annotated += 1
                np.testing.assert_array_equal(s.myocardium_t[t], lab[k] == 2)
                np.testing.assert_array_equal(s.lv_cavity_t[t], lab[k] == 3)
                y0, x0, y1, x1 = s.lv_box[t]
                rows, cols = np.nonzero(np.isin(lab[k], (2, 3)))
                assert (y0, x0, y1, x1) == (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
        assert annotated >= ed.shape[0]  # most slices carry the LV at both ED and ES


def test_acdc_aha_segments_on_the_mid_slices(acdc, capsys):
    """ACDC's labels give segments on the myocardium, the septum on the RV side (the stored images show
    the RV on the left); its axis-aligned affine leaves the view to the display-convention assumption."""
    root = acdc["root"]
    rc, _, err = cli("nifti", capsys, root / "cine.nii.gz", "--out", root / "aha.h5", "--frames", 2,
                     "--labels", root / "gt.nii.gz")
    assert rc == 0, err
    assert "AHA segments assume images seen from the apex" in err
    ed_labels = acdc["labels"][0]
    with open_cohort(root / "aha.h5") as c:
        subjects = [c[sid] for sid in c.ids]
    mid = [(s, lab) for s, lab in zip(subjects, ed_labels) if s.level == "mid"]
    assert len(mid) >= 2
    for s, lab in mid:
        seg = s.aha_segments
        assert seg is not None, s.id
        np.testing.assert_array_equal(seg > 0, lab == 2)
        assert set(np.unique(seg[seg > 0])) == set(range(7, 13))
        rv_col = np.argwhere(lab == 1)[:, 1].mean()
        septal, lateral = (np.argwhere(np.isin(seg, codes))[:, 1].mean() for codes in ((8, 9), (11, 12)))
        assert abs(septal - rv_col) < abs(lateral - rv_col)
    # the base is the end with the wider cavity: the levels run basal -> apical with the slice index here
    known = [s.level for s in subjects if s.level != "unknown"]
    assert known == sorted(known, key=("basal", "mid", "apical").index)
