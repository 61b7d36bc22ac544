"""DICOM ingestion: synthetic DICOMs written with pydicom for every rule and every bad input, and the
real Sunnybrook cines (skipped when ``<repo>/../shared/data`` is absent)."""
from pathlib import Path

import h5py
import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEGLSLossless, MRImageStorage, generate_uid

from ofrnn.cli import main
from ofrnn.errors import OfrnnError
from ofrnn.ingest import ENDO_BOX_MARGIN_MM, ingest_dicom, nearest_frame, resample_cycle
from ofrnn.store import open_cohort

# pydicom warns about this file's own odd header values (an 'inf' slope written on purpose, the
# Sunnybrook UIDs read back for the privacy check); ofrnn.ingest silences its own reads.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SUNNYBROOK = SHARED / "sunnybrook"

#: header values that must never reach the cohort or the console
IDENTITY = {
    "PatientName": "Doe^Jane",
    "PatientID": "PID-4711",
    "PatientBirthDate": "19700101",
    "StudyDate": "20240102",
    "InstitutionName": "St Example Hospital",
    "ReferringPhysicianName": "Who^Doctor",
    "AccessionNumber": "ACC991",
    "DeviceSerialNumber": "SN-XYZ-0042",
}
STUDY = generate_uid()
H, W = 6, 5
SPACING = (1.5, 1.25)


def write_dicom(path, raw, *, series, z=0.0, trigger=None, instance=None, spacing=SPACING,
                orientation=(1, 0, 0, 0, 1, 0), syntax=ExplicitVRLittleEndian, modality="MR", pixels=True,
                float_pixels=False, **extra):
    """Write one single-frame MR image; ``raw`` is the stored uint16 (or float32) array."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = syntax
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = MRImageStorage, uid, modality
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = STUDY, series, 7
    ds.MagneticFieldStrength, ds.RepetitionTime, ds.EchoTime, ds.FlipAngle = 3, 3.1, 1.5, 50
    ds.ImageOrientationPatient = list(orientation)
    ds.ImagePositionPatient = [-10.0, 20.0, z]
    ds.PixelSpacing = list(spacing)
    ds.RescaleSlope, ds.RescaleIntercept = 2, -5
    for keyword, value in {**IDENTITY, **extra}.items():
        setattr(ds, keyword, value)
    if trigger is not None:
        ds.TriggerTime = trigger
    if instance is not None:
        ds.InstanceNumber = instance
    ds.Rows, ds.Columns = raw.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    if float_pixels:
        ds.BitsAllocated = 32
        ds.FloatPixelData = raw.astype(np.float32).tobytes()
    else:
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
        if syntax.is_compressed:
            ds.PixelData = encapsulate([b"\xff\xd8\xff\xf7 not really JPEG-LS \xff\xd9"])
        elif pixels:
            ds.PixelData = raw.astype(np.uint16).tobytes()
    dcmwrite(path, ds, enforce_file_format=True)


def raw_frame(s, f, shape=(H, W)):
    """Stored values of frame ``f`` of slice ``s``: a gradient plus an offset per slice and frame."""
    return np.arange(np.prod(shape), dtype=np.uint16).reshape(shape) + 100 * s + 10 * f


def write_cine(folder, *, slices=(0.0, 8.0), frames=4, series=None, trigger=True, first_instance=1, **kw):
    """Write a cine series: ``frames`` images at each z in ``slices``, file names in reverse time order.

    Triggers are 10, 60, 110, ... ms; instances run slice-major from ``first_instance``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    series = series or generate_uid()
    n = len(slices) * frames
    for s, z in enumerate(slices):
        for f in range(frames):
            i = s * frames + f
            write_dicom(folder / f"im{n - i:03d}.dcm", raw_frame(s, f), series=series, z=z,
                        trigger=10.0 + 50 * f if trigger else None, instance=first_instance + i, **kw)
    return series


def expected_cine(s, frames=4, n_out=8):
    """Rescaled frames of slice ``s`` resampled periodically: 8 from 4 is a midpoint between each pair."""
    orig = np.stack([raw_frame(s, f) * 2.0 - 5 for f in range(frames)])
    out = np.empty((n_out, H, W))
    out[0::2] = orig
    out[1::2] = (orig + np.roll(orig, -1, axis=0)) / 2
    return out


def cli(capsys, *argv):
    rc = main(["ingest", "dicom", *map(str, argv)])
    cap = capsys.readouterr()
    return rc, cap.out, cap.err


def strings_in_cohort(path):
    """Every string an HDF5 file holds in names and attributes (root, groups, datasets)."""
    found = []

    def attrs(obj):
        for k, v in obj.attrs.items():
            found.append(k)
            v = np.atleast_1d(v)
            found.extend(x.decode() if isinstance(x, bytes) else str(x) for x in v.ravel())

    with h5py.File(path, "r") as f:
        attrs(f)
        f.visititems(lambda name, obj: (found.append(name), attrs(obj)))
    return found


def assert_private(path, values, *texts):
    hay = "\n".join(strings_in_cohort(path))
    raw = Path(path).read_bytes()
    for v in values:
        assert v not in hay, v
        assert v.encode() not in raw, v
        for t in texts:
            assert v not in t, v


# -- synthetic DICOM: the rules -------------------------------------------------------------------

def test_grouped_ordered_rescaled_and_resampled(tmp_path, capsys):
    write_cine(tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("skipped by name")
    out = tmp_path / "c.h5"
    rc, stdout, err = cli(capsys, tmp_path / "in", "--out", out, "--frames", 8)
    assert rc == 0, err
    assert "wrote 2 subject(s)" in stdout and "1 non-DICOM file(s) skipped" in stdout
    with open_cohort(out) as c:
        assert c.source == "dicom" and len(c) == 2 and c.params["frames"] == 8
        for s, sid in enumerate(c.ids):
            sub = c[sid]
            np.testing.assert_allclose(sub.cine, expected_cine(s), rtol=1e-6)
            np.testing.assert_allclose(sub.frame_times_ms, 10 + 25 * np.arange(8))  # cycle 4 * 50 ms
            assert sub.spacing_mm == SPACING and sub.level == "unknown"
            assert sub.attrs["frames_original"] == 4 and sub.attrs["cycle_ms"] == pytest.approx(200)
            assert sub.attrs["slice_position_mm"] == pytest.approx(8.0 * s)
            assert sub.attrs["field_t"] == 3 and sub.attrs["flip_deg"] == 50 and sub.attrs["times_assumed"] == 0
            assert sub.lv_box is None and sub.infarct is None  # absent = unknown
    assert_private(out, list(IDENTITY.values()) + [STUDY], stdout, err)


def test_subject_ids_default_hash_user_list_and_prefix(tmp_path, capsys):
    write_cine(tmp_path / "in")
    ids = []
    for run in range(2):
        ingest_dicom(tmp_path / "in", tmp_path / f"h{run}.h5", progress=False)
        with open_cohort(tmp_path / f"h{run}.h5") as c:
            ids.append(c.ids)
    assert ids[0] == ids[1] and all(len(i) == 12 for i in ids[0])
    assert cli(capsys, tmp_path / "in", "--out", tmp_path / "u.h5", "--ids", "apex", "base")[0] == 0
    assert cli(capsys, tmp_path / "in", "--out", tmp_path / "p.h5", "--id-prefix", "pt1-")[0] == 0
    with open_cohort(tmp_path / "u.h5") as u, open_cohort(tmp_path / "p.h5") as p:
        assert u.ids == ["apex", "base"] and p.ids == ["pt1-01", "pt1-02"]
        assert u["apex"].cine.shape == (25, H, W)


def test_instance_number_orders_frames_without_trigger_time(tmp_path):
    write_cine(tmp_path / "in", slices=(0.0,), trigger=False, NominalInterval=800)
    rows, _ = ingest_dicom(tmp_path / "in", tmp_path / "c.h5", frames=8, progress=False)
    with open_cohort(tmp_path / "c.h5") as c:
        sub = c[rows[0]["id"]]
        np.testing.assert_allclose(sub.cine, expected_cine(0), rtol=1e-6)
        np.testing.assert_allclose(sub.frame_times_ms, 100 * np.arange(8))
        assert sub.attrs["times_assumed"] == 1 and sub.attrs["cycle_ms"] == 800


def test_resample_cycle_is_periodic_linear():
    frames = np.array([0.0, 10.0, 30.0])[:, None, None] * np.ones((1, 2, 2))
    times = np.array([100.0, 120.0, 160.0])
    out, t = resample_cycle(frames, times, cycle_ms=240.0, n_out=6)
    np.testing.assert_allclose(t, 100 + 40 * np.arange(6))
    # 140: halfway 10 -> 30; 260 - 340: from frame 2 (160) back to frame 0 (340)
    np.testing.assert_allclose(out[:, 0, 0], [0, 20, 30 * (1 - 20 / 180), 30 * (1 - 60 / 180), 30 * (1 - 100 / 180),
                                              30 * (1 - 140 / 180)], rtol=1e-6)
    same, _ = resample_cycle(frames[[0, 1]], np.array([0.0, 50.0]), 100.0, 2)
    np.testing.assert_array_equal(same, frames[[0, 1]])
    assert nearest_frame(405.0, 10.0, 400.0, 25) == (0, pytest.approx(5.0))  # 5 ms before 410 = frame 0 again
    assert nearest_frame(42.0, 10.0, 400.0, 25) == (2, pytest.approx(0.0))


def write_square(path, y0, x0, y1, x1):
    """A closed rectangular polygon, vertices as 'x y' (column, row)."""
    pts = [(x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0)]
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in pts))


def test_contours_give_masks_boxes_and_flags(tmp_path):
    shape = (40, 36)
    folder = tmp_path / "in"
    folder.mkdir()
    series = generate_uid()
    for f in range(4):
        write_dicom(folder / f"{f}.dcm", raw_frame(0, f, shape), series=series, trigger=10.0 + 50 * f, instance=f + 1)
    c = tmp_path / "contours"
    (c / "i-contours").mkdir(parents=True)
    (c / "o-contours").mkdir()
    write_square(c / "i-contours" / "IM-0001-0001-icontour-manual.txt", 15, 12, 24, 22)  # ED, frame 0
    write_square(c / "o-contours" / "IM-0001-0001-ocontour-manual.txt", 10, 8, 29, 27)
    write_square(c / "i-contours" / "IM-0001-0003-icontour-manual.txt", 17, 14, 22, 20)  # 110 ms: frame 4 of 8
    rows, _ = ingest_dicom(folder, tmp_path / "c.h5", frames=8, contours=c, progress=False)
    assert rows[0]["contour_frames"] == 2
    with open_cohort(tmp_path / "c.h5") as coh:
        s = coh[rows[0]["id"]]
    np.testing.assert_array_equal(s.annotated["lv_cavity_t"], [1, 0, 0, 0, 1, 0, 0, 0])
    np.testing.assert_array_equal(s.annotated["myocardium_t"], [1, 0, 0, 0, 0, 0, 0, 0])
    # pixel centres on or inside the polygon edges are filled
    assert s.lv_cavity_t[0].sum() == 10 * 11 and s.lv_cavity_t[4].sum() == 6 * 7
    assert s.myocardium_t[0].sum() == 20 * 20 - 10 * 11
    np.testing.assert_array_equal(s.myocardium, s.myocardium_t[0])
    assert not np.any(s.myocardium_t[0] & s.lv_cavity_t[0])
    margin = int(np.ceil(ENDO_BOX_MARGIN_MM / min(SPACING)))  # 8 px
    np.testing.assert_array_equal(s.lv_box[0], [10, 8, 30, 28])  # half-open around the o-contour fill
    np.testing.assert_array_equal(s.lv_box[4], [17 - margin, 14 - margin, 23 + margin, 21 + margin])
    assert np.all(s.lv_box[[1, 2, 3, 5, 6, 7]] == -1)


def test_masks_png_and_npy(tmp_path, capsys):
    import cv2

    write_cine(tmp_path / "in")
    masks = tmp_path / "masks"
    masks.mkdir()
    a = np.zeros((H, W), np.uint8)
    a[1:3, 2:4] = 255
    cv2.imwrite(str(masks / "apex.png"), a)
    np.save(masks / "base.npy", np.eye(H, W, dtype=bool))
    rc, stdout, err = cli(capsys, tmp_path / "in", "--out", tmp_path / "c.h5", "--ids", "apex", "base",
                          "--masks", masks)
    assert rc == 0, err
    with open_cohort(tmp_path / "c.h5") as c:
        np.testing.assert_array_equal(c["apex"].infarct, a > 0)
        np.testing.assert_array_equal(c["base"].infarct, np.eye(H, W))
        assert c["apex"].infarct.dtype == np.uint8


# -- synthetic DICOM: every bad input is one error line, exit 2, nothing written ------------------

def _not_dicom(d):
    write_cine(d)
    (d / "junk.dcm").write_text("this is not DICOM")
    return [], ("junk.dcm", "not a DICOM file")


def _no_pixel_data(d):
    write_cine(d)
    write_dicom(d / "empty.dcm", raw_frame(0, 0), series=generate_uid(), pixels=False)
    return [], ("empty.dcm", "PixelData: no pixel data")


def _compressed(d):
    write_cine(d)
    write_dicom(d / "jpegls.dcm", raw_frame(0, 0), series=generate_uid(), syntax=JPEGLSLossless)
    return [], ("jpegls.dcm", "TransferSyntaxUID: unsupported compression 'JPEG-LS Lossless")


def _mixed_orientation(d):
    series = write_cine(d, slices=(0.0,))
    write_dicom(d / "tilted.dcm", raw_frame(0, 0), series=series, trigger=300.0, instance=9,
                orientation=(1, 0, 0, 0, 0.8, 0.6))
    return [], ("tilted.dcm", "ImageOrientationPatient: mixed series")


def _mixed_same_time(d):
    series = write_cine(d / "a", slices=(0.0,))
    write_cine(d / "b", slices=(0.0,), series=series, first_instance=5)  # a second cine at the same place
    return [], ("TriggerTime: mixed series: same slice position and TriggerTime",)


def _mixed_spacing(d):
    series = write_cine(d, slices=(0.0,))
    write_dicom(d / "fine.dcm", raw_frame(0, 0), series=series, z=8.0, trigger=10.0, spacing=(0.7, 0.7))
    return [], ("fine.dcm", "PixelSpacing: mixed series")


def _one_frame(d):
    write_dicom(d / "single.dcm", raw_frame(0, 0), series=generate_uid(), trigger=10.0, instance=1)
    return [], ("single.dcm", "only 1 frame at this slice position")


def _sizes(d):
    series = write_cine(d, slices=(0.0,))
    write_dicom(d / "big.dcm", raw_frame(0, 4, (H + 2, W)), series=series, trigger=400.0, instance=5)
    return [], ("big.dcm", "Rows/Columns: inconsistent sizes: 8x5 here, 6x5 in the other")


def _nan(d):
    series = write_cine(d, slices=(0.0,))
    raw = raw_frame(0, 4).astype(np.float32)
    raw[2, 2] = np.nan
    write_dicom(d / "nan.dcm", raw, series=series, trigger=400.0, instance=5, float_pixels=True)
    return [], ("nan.dcm", "PixelData: contains NaN or inf")


def _inf_slope(d):
    write_cine(d, slices=(0.0,))
    write_dicom(d / "slope.dcm", raw_frame(0, 0), series=generate_uid(), RescaleSlope="inf")
    return [], ("slope.dcm", "RescaleSlope: not a finite number")


def _not_mr(d):
    write_cine(d)
    write_dicom(d / "ct.dcm", raw_frame(0, 0), series=generate_uid(), modality="CT")
    return [], ("ct.dcm", "Modality: modality CT, expected MR")


def _mask_shape(d):
    write_cine(d)
    (d.parent / "masks").mkdir()
    np.save(d.parent / "masks" / "a.npy", np.zeros((H, W + 1), np.uint8))
    return ["--ids", "a", "b", "--masks", d.parent / "masks"], ("a.npy", "shape: shape (6, 6), expected (6, 5)")


def _mask_pickle(d):
    write_cine(d)
    (d.parent / "masks").mkdir()
    np.save(d.parent / "masks" / "a.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    return ["--ids", "a", "b", "--masks", d.parent / "masks"], ("a.npy", "not a readable .npy array")


def _mask_unknown_id(d):
    write_cine(d)
    (d.parent / "masks").mkdir()
    np.save(d.parent / "masks" / "c.npy", np.zeros((H, W), np.uint8))
    return ["--ids", "a", "b", "--masks", d.parent / "masks"], ("c.npy", "no subject 'c' (subjects: a, b)")


def _ids_count(d):
    write_cine(d)
    return ["--ids", "only-one"], ("--ids: 1 id(s) for 2 slice(s)",)


def _bad_id(d):
    write_cine(d)
    return ["--ids", "ok", "not ok"], ("subjects/not ok: subject id must be",)


def _contour_line(d):
    write_cine(d, slices=(0.0,))
    (d.parent / "ct").mkdir()
    (d.parent / "ct" / "IM-0001-0002-icontour-manual.txt").write_text("1 1\n2 oops\n3 3\n")
    return ["--contours", d.parent / "ct"], ("IM-0001-0002-icontour-manual.txt", "line 2: expected 'x y'")


def _contour_outside(d):
    write_cine(d, slices=(0.0,))
    (d.parent / "ct").mkdir()
    (d.parent / "ct" / "IM-0001-0002-ocontour-manual.txt").write_text("1 1\n40 2\n3 3\n")
    return ["--contours", d.parent / "ct"], ("line 2: point (40, 2) outside the 5x6 image",)


def _contour_no_image(d):
    write_cine(d, slices=(0.0,))
    (d.parent / "ct").mkdir()
    (d.parent / "ct" / "IM-0001-0099-icontour-manual.txt").write_text("1 1\n2 2\n3 1\n")
    return ["--contours", d.parent / "ct"], ("IM-0001-0099", "InstanceNumber: image 99 (InstanceNumber) is not")


def _contours_two_series(d):
    write_cine(d / "a", slices=(0.0,))
    write_cine(d / "b", slices=(0.0,))
    (d.parent / "ct").mkdir()
    return ["--contours", d.parent / "ct"], ("--contours: contours name images by InstanceNumber",)


def _empty_folder(d):
    (d / "readme.txt").write_text("no images here")
    return [], ("no DICOM files",)


BAD = {f.__name__[1:]: f for f in (
    _not_dicom, _no_pixel_data, _compressed, _mixed_orientation, _mixed_same_time, _mixed_spacing, _one_frame,
    _sizes, _nan, _inf_slope, _not_mr, _mask_shape, _mask_pickle, _mask_unknown_id, _ids_count, _bad_id,
    _contour_line, _contour_outside, _contour_no_image, _contours_two_series, _empty_folder)}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line_and_nothing_written(case, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    extra, expected = BAD[case](folder)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, stdout, err = cli(capsys, folder, "--out", out_dir / "c.h5", *extra)
    assert rc == 2
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("ofrnn: error: "), err
    for text in expected:
        assert text in lines[0], lines[0]
    assert list(out_dir.iterdir()) == []  # no cohort, no temporary file
    for v in IDENTITY.values():
        assert v not in err and v not in stdout


def test_failed_ingest_keeps_the_previous_cohort(tmp_path, capsys):
    write_cine(tmp_path / "good")
    out = tmp_path / "c.h5"
    assert cli(capsys, tmp_path / "good", "--out", out, "--ids", "a", "b")[0] == 0
    before = out.read_bytes()
    _nan(tmp_path / "bad")
    assert cli(capsys, tmp_path / "bad", "--out", out)[0] == 2
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["bad", "c.h5", "good"]


def test_library_raises_ofrnn_error(tmp_path):
    with pytest.raises(OfrnnError, match="not a folder"):
        ingest_dicom(tmp_path / "absent", tmp_path / "c.h5")
    with pytest.raises(OfrnnError, match="--frames: 1; a cine needs at least 2 frames"):
        ingest_dicom(tmp_path, tmp_path / "c.h5", frames=1)


# -- real data: Sunnybrook SC-HF-I-1, slices 3 and 4 (images 41-80) --------------------------------

SB_PATIENT, SB_CONTOURS = "SCD0000101", "SC-HF-I-1"
SB_IMAGES = range(41, 81)
# i-contours at end-systole (48, 68) and end-diastole (59, 79); o-contours at end-diastole
SB_ENDO, SB_EPI = (48, 59, 68, 79), (59, 79)


@pytest.fixture(scope="module")
def sunnybrook(tmp_path_factory):
    """Ingest a 2-slice subset of one patient through the CLI, reading the shared files in place."""
    if not (SUNNYBROOK / "dicoms" / SB_PATIENT).is_dir():
        pytest.skip(f"real Sunnybrook DICOMs not found at {SUNNYBROOK} (shared data folder absent)")
    root = tmp_path_factory.mktemp("sunnybrook")
    dicoms, contours = root / "dicoms", root / "contours"
    dicoms.mkdir()
    for n in SB_IMAGES:
        (dicoms / f"{n}.dcm").symlink_to(SUNNYBROOK / "dicoms" / SB_PATIENT / f"{n}.dcm")
    for kind, images in (("i", SB_ENDO), ("o", SB_EPI)):
        (contours / f"{kind}-contours").mkdir(parents=True)
        for n in images:
            name = f"IM-0001-{n:04d}-{kind}contour-manual.txt"
            (contours / f"{kind}-contours" / name).symlink_to(
                SUNNYBROOK / "contourfiles" / SB_CONTOURS / f"{kind}-contours" / name)
    headers = {n: dcmread(dicoms / f"{n}.dcm") for n in SB_IMAGES}
    out = root / "sb.h5"
    rc = main(["ingest", "dicom", str(dicoms), "--out", str(out), "--contours", str(contours)])
    assert rc == 0
    with open_cohort(out) as c:
        subjects = [c[sid] for sid in c.ids]
    return dict(out=out, subjects=subjects, headers=headers, contours=contours)


def test_sunnybrook_frames_ordered_and_resampled(sunnybrook):
    subjects, headers = sunnybrook["subjects"], sunnybrook["headers"]
    assert len(subjects) == 2
    for s, first in zip(subjects, (41, 61)):
        imgs = sorted(range(first, first + 20), key=lambda n: float(headers[n].TriggerTime))
        assert imgs == list(range(first, first + 20))  # this series numbers frames in time order
        t = np.array([float(headers[n].TriggerTime) for n in imgs])
        stack = np.stack([headers[n].pixel_array.astype(np.float32) for n in imgs])
        assert s.cine.shape == (25, 256, 256) and s.attrs["frames_original"] == 20
        cycle = (t[-1] - t[0]) * 20 / 19
        assert s.attrs["cycle_ms"] == pytest.approx(cycle)
        np.testing.assert_allclose(s.frame_times_ms, t[0] + np.arange(25) * cycle / 25)
        np.testing.assert_array_equal(s.cine[0], stack[0])  # frame 0 = the first trigger, unchanged
        for y, x in ((128, 128), (100, 140), (140, 110)):  # independent periodic interpolation
            np.testing.assert_allclose(s.cine[:, y, x], np.interp(s.frame_times_ms, t, stack[:, y, x], period=cycle),
                                       rtol=1e-5, atol=1e-3)
        assert 1.3 <= s.spacing_mm[0] <= 1.4 and s.spacing_mm[0] == s.spacing_mm[1] == pytest.approx(1.367188)
        assert s.level == "unknown" and s.attrs["field_t"] == 1.5


def _polygon(path):
    xy = np.loadtxt(path)
    return xy[:, 1], xy[:, 0]  # rows, columns


def test_sunnybrook_contours_on_nearest_frames(sunnybrook):
    step_tol = 0.5
    for s, (es, ed) in zip(sunnybrook["subjects"], ((48, 59), (68, 79))):
        step = s.attrs["cycle_ms"] / 25
        flags_cav, flags_myo = s.annotated["lv_cavity_t"], s.annotated["myocardium_t"]
        assert flags_cav.sum() == 2 and flags_myo.sum() == 1
        for n in (es, ed):
            k = int(np.argmin(np.abs(s.frame_times_ms - float(sunnybrook["headers"][n].TriggerTime))))
            assert abs(s.frame_times_ms[k] - float(sunnybrook["headers"][n].TriggerTime)) <= step * step_tol
            assert flags_cav[k] == 1 and flags_myo[k] == (n == ed)
            ys, xs = _polygon(sunnybrook["contours"] / "i-contours" / f"IM-0001-{n:04d}-icontour-manual.txt")
            shoelace = 0.5 * abs(np.dot(xs, np.roll(ys, 1)) - np.dot(ys, np.roll(xs, 1)))
            assert s.lv_cavity_t[k].sum() == pytest.approx(shoelace, rel=0.05)
            y0, x0, y1, x1 = s.lv_box[k]
            assert 0 <= y0 < y1 <= 256 and 0 <= x0 < x1 <= 256  # inside the image
            if n == ed:
                ys, xs = _polygon(sunnybrook["contours"] / "o-contours" / f"IM-0001-{n:04d}-ocontour-manual.txt")
                assert not np.any(s.myocardium_t[k] & s.lv_cavity_t[k]) and s.myocardium_t[k].sum() > 300
            # the box holds the contour (to within a pixel: it is tight around filled pixel centres)
            assert y0 - 1 <= ys.min() and ys.max() <= y1 and x0 - 1 <= xs.min() and xs.max() <= x1
            rr, cc = np.nonzero(s.lv_cavity_t[k])
            assert y0 <= rr.min() and rr.max() < y1 and x0 <= cc.min() and cc.max() < x1
        assert np.all(s.lv_box[(flags_cav == 0)] == -1)
        assert s.myocardium is None  # the end-diastolic contours lie late in the cycle, not on frame 0


def test_sunnybrook_output_holds_no_identifying_fields(sunnybrook, capsys):
    h = sunnybrook["headers"][41]
    values = [str(h.PatientName), str(h.PatientID), str(h.StudyInstanceUID), str(h.SeriesInstanceUID),
              str(h.SOPInstanceUID), str(h.FrameOfReferenceUID), str(h.DeviceSerialNumber)]
    assert main(["info", str(sunnybrook["out"])]) == 0
    out = capsys.readouterr().out
    assert "unknown" in out and "256x256" in out
    assert_private(sunnybrook["out"], [v for v in values if v], out)
    hay = strings_in_cohort(sunnybrook["out"])
    assert str(h.StudyDate) not in hay and "GE MEDICAL SYSTEMS" not in hay
