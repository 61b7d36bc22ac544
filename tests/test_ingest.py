"""DICOM ingestion: synthetic DICOMs written with pydicom for every rule, every kind of input a clinic
exports and every bad input; the shared field cases and the real Sunnybrook cines (skipped when
``<repo>/../shared`` is absent); interrupted runs."""
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread, dcmwrite
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (JPEG2000Lossless, EnhancedMRImageStorage, ExplicitVRLittleEndian, JPEGLSLossless,
                         MPEG2MPML, MRImageStorage, RLELossless, generate_uid)

from conftest import SHARED_DATA, assert_private, cli, strings_in_cohort
from ofrnn.cli import main
from ofrnn.errors import OfrnnError
from ofrnn.ingest import ENDO_BOX_MARGIN_MM, ingest_dicom, nearest_frame, read_cine_slices, resample_cycle
from ofrnn.store import open_cohort

# pydicom warns about this file's own odd header values (an 'inf' slope written on purpose, the
# Sunnybrook UIDs read back for the privacy check); ofrnn.ingest silences its own reads.
pytestmark = pytest.mark.filterwarnings("ignore:Invalid value for VR")

SUNNYBROOK = SHARED_DATA / "sunnybrook"
FIELD_CASES = SHARED_DATA.parent / "field-cases"

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
                float_pixels=False, compress=None, uid=None, preamble=True, **extra):
    """Write one single-frame MR image; ``raw`` is the stored uint16 (or float32) array.

    ``syntax`` compressed: fake (undecodable) pixel data; ``compress``: encode the pixels with
    pydicom's encoders into that transfer syntax; ``preamble`` False: a bare dataset (no preamble,
    no 'DICM', no file meta), implicit VR.
    """
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = MRImageStorage
    meta.MediaStorageSOPInstanceUID = uid = uid or generate_uid()
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
    if compress is not None:
        ds.BitsStored, ds.HighBit = 12, 11
        ds.compress(compress)
    if not preamble:
        del ds.file_meta
        dcmwrite(path, ds, implicit_vr=True, little_endian=True)
        return
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


# -- synthetic DICOM: the rules -------------------------------------------------------------------

def test_grouped_ordered_rescaled_and_resampled(tmp_path, capsys):
    write_cine(tmp_path / "in")
    (tmp_path / "in" / "notes.txt").write_text("skipped by name")
    out = tmp_path / "c.h5"
    rc, stdout, err = cli("dicom", capsys, tmp_path / "in", "--out", out, "--frames", 8)
    assert rc == 0, err
    assert "wrote 2 subject(s)" in stdout and "(1 file(s) skipped)" in stdout
    assert err.splitlines() == [f"ofrnn: note: {tmp_path / 'in' / 'notes.txt'}: not a DICOM file (no 'DICM' marker, "
                                f"and not a DICOM image dataset); skipped"]
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
    assert cli("dicom", capsys, tmp_path / "in", "--out", tmp_path / "u.h5", "--ids", "apex", "base")[0] == 0
    assert cli("dicom", capsys, tmp_path / "in", "--out", tmp_path / "p.h5", "--id-prefix", "pt1-")[0] == 0
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
    assert rows[0]["annotated_frames"] == 2
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
    rc, stdout, err = cli("dicom", capsys, tmp_path / "in", "--out", tmp_path / "c.h5", "--ids", "apex", "base",
                          "--masks", masks)
    assert rc == 0, err
    with open_cohort(tmp_path / "c.h5") as c:
        np.testing.assert_array_equal(c["apex"].infarct, a > 0)
        np.testing.assert_array_equal(c["base"].infarct, np.eye(H, W))
        assert c["apex"].infarct.dtype == np.uint8


# -- synthetic DICOM: what is not a cine is skipped with one note line, the cine is still ingested ----

def _skip_not_dicom(d):
    write_cine(d)
    (d / "junk.dcm").write_text("this is not DICOM")
    return "junk.dcm: not a DICOM file", "1 file(s) skipped"


def _skip_no_pixel_data(d):
    write_cine(d)
    write_dicom(d / "empty.dcm", raw_frame(0, 0), series=generate_uid(), pixels=False)
    return "empty.dcm: PixelData: a DICOM MR Image Storage without an image", "1 file(s) skipped"


def _skip_not_mr(d):
    write_cine(d)
    write_dicom(d / "ct.dcm", raw_frame(0, 0), series=generate_uid(), modality="CT")
    return "ct.dcm: Modality: modality CT, not MR", "1 file(s) skipped"


def _skip_colour(d):
    write_cine(d)
    write_dicom(d / "rgb.dcm", np.zeros((H, 3 * W), np.uint16), series=generate_uid())
    ds = dcmread(d / "rgb.dcm")
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
    ds.save_as(d / "rgb.dcm")
    return "rgb.dcm: SamplesPerPixel: a colour image (3 samples per pixel)", "1 file(s) skipped"


def _skip_tilted(d):
    series = write_cine(d)  # one image of the series in another orientation is a stack of 1 frame
    write_dicom(d / "tilted.dcm", raw_frame(0, 0), series=series, trigger=300.0, instance=9,
                orientation=(1, 0, 0, 0, 0.8, 0.6))
    return "tilted.dcm: ImagePositionPatient: only 1 frame at this slice position", "1 series or slice(s) skipped"


def _skip_other_spacing(d):
    series = write_cine(d)
    write_dicom(d / "fine.dcm", raw_frame(0, 0), series=series, z=8.0, trigger=10.0, spacing=(0.7, 0.7))
    return "fine.dcm: ImagePositionPatient: only 1 frame", "1 series or slice(s) skipped"


def _skip_other_size(d):
    series = write_cine(d)
    write_dicom(d / "big.dcm", raw_frame(0, 4, (H + 2, W)), series=series, trigger=400.0, instance=9)
    return "big.dcm: ImagePositionPatient: only 1 frame", "1 series or slice(s) skipped"


def _skip_two_acquisitions(d):
    series = write_cine(d / "a")
    write_cine(d / "b", slices=(16.0,), series=series, first_instance=9)
    write_cine(d / "c", slices=(16.0,), series=series, first_instance=13)  # the same place and times again
    return "TriggerTime: two frames at this slice position share TriggerTime 10 ms", "1 series or slice(s) skipped"


SKIPPED = {f.__name__[6:]: f for f in (
    _skip_not_dicom, _skip_no_pixel_data, _skip_not_mr, _skip_colour, _skip_tilted, _skip_other_spacing,
    _skip_other_size, _skip_two_acquisitions)}


@pytest.mark.parametrize("case", list(SKIPPED))
def test_what_is_not_a_cine_is_skipped_with_a_note(case, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    note, summary = SKIPPED[case](folder)
    rc, stdout, err = cli("dicom", capsys, folder, "--out", tmp_path / "c.h5", "--frames", 8)
    assert rc == 0, err
    notes = err.splitlines()
    assert len(notes) == 1 and notes[0].startswith("ofrnn: note: ") and note in notes[0], err
    assert f"wrote 2 subject(s) to {tmp_path / 'c.h5'} ({summary})" in stdout
    with open_cohort(tmp_path / "c.h5") as c:
        for s, sid in enumerate(c.ids):
            np.testing.assert_allclose(c[sid].cine, expected_cine(s), rtol=1e-6)
    for v in IDENTITY.values():
        assert v not in err and v not in stdout


# -- synthetic DICOM: every bad input is one error line, exit 2, nothing written ------------------

def _compressed(d):
    write_cine(d)
    write_dicom(d / "jpegls.dcm", raw_frame(0, 0), series=generate_uid(), syntax=JPEGLSLossless)
    return [], ("jpegls.dcm", "PixelData: cannot decode the 'JPEG-LS Lossless Image Compression' pixel data")


def _no_decoder(d):
    write_cine(d)
    write_dicom(d / "mpeg.dcm", raw_frame(0, 0), series=generate_uid(), syntax=MPEG2MPML)
    return [], ("mpeg.dcm", "TransferSyntaxUID: unsupported compression 'MPEG2 Main Profile / Main Level': "
                            "no installed decoder reads it")


def _same_uid_other_pixels(d):
    write_cine(d)
    uid = dcmread(d / "im001.dcm").SOPInstanceUID
    write_dicom(d / "im001(1).dcm", raw_frame(1, 3) + 1, series=generate_uid(), uid=uid)
    return [], ("im001(1).dcm", "SOPInstanceUID: the same as in im001.dcm, but the pixels differ")


def _two_acquisitions_only(d):
    series = write_cine(d / "a", slices=(0.0,))
    write_cine(d / "b", slices=(0.0,), series=series, first_instance=5)  # a second cine at the same place
    return [], ("TriggerTime: two frames at this slice position share TriggerTime",
                "two acquisitions in one series, not one cine")


def _constant_trigger_no_instance(d):
    series = generate_uid()
    for f in range(3):
        write_dicom(d / f"{f}.dcm", raw_frame(0, f), series=series, trigger=0.0)
    return [], ("TriggerTime: cannot order frames: no usable TriggerTime and no InstanceNumber",)


def _one_frame(d):
    write_dicom(d / "single.dcm", raw_frame(0, 0), series=generate_uid(), trigger=10.0, instance=1)
    return [], ("single.dcm", "only 1 frame at this slice position")


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


def _no_dicom_at_all(d):
    (d / "readme.txt").write_text("no images here")
    return [], ("readme.txt: not a DICOM file",)


def _nothing_but_skips(d):
    (d / "LICENSE").write_text("viewer licence")
    write_dicom(d / "ct.dcm", raw_frame(0, 0), series=generate_uid(), modality="CT")
    return [], ("no cine to ingest (2 file(s) skipped): ", "LICENSE: not a DICOM file", "ct.dcm: Modality")


def _empty_folder(d):
    return [], ("in: no files",)


BAD = {f.__name__[1:]: f for f in (
    _compressed, _no_decoder, _same_uid_other_pixels, _two_acquisitions_only, _constant_trigger_no_instance,
    _one_frame, _nan, _inf_slope, _mask_shape, _mask_pickle, _mask_unknown_id, _ids_count, _bad_id,
    _contour_line, _contour_outside, _contour_no_image, _contours_two_series, _no_dicom_at_all,
    _nothing_but_skips, _empty_folder)}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line_and_nothing_written(case, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    extra, expected = BAD[case](folder)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    rc, stdout, err = cli("dicom", capsys, folder, "--out", out_dir / "c.h5", *extra)
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
    assert cli("dicom", capsys, tmp_path / "good", "--out", out, "--ids", "a", "b")[0] == 0
    before = out.read_bytes()
    _nan(tmp_path / "bad")
    assert cli("dicom", capsys, tmp_path / "bad", "--out", out)[0] == 2
    assert out.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["bad", "c.h5", "good"]


def test_library_raises_ofrnn_error(tmp_path):
    with pytest.raises(OfrnnError, match="not a folder"):
        ingest_dicom(tmp_path / "absent", tmp_path / "c.h5")
    with pytest.raises(OfrnnError, match="--frames: 1; a cine needs at least 2 frames"):
        ingest_dicom(tmp_path, tmp_path / "c.h5", frames=1)


# -- synthetic DICOM: what clinics export -----------------------------------------------------------

def stored_12bit(seed, shape=(64, 48)):
    """A 12-bit image with structure and noise, as a compressor sees real frames."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[:shape[0], :shape[1]]
    return (1500 + 800 * np.sin(y / 3.0) * np.cos(x / 4.0) + rng.integers(0, 200, shape)).astype(np.uint16)


@pytest.mark.parametrize("syntax", [JPEGLSLossless, JPEG2000Lossless, RLELossless], ids=lambda u: u.name.split()[0])
def test_compressed_syntaxes_decode_to_the_source_pixels(syntax, tmp_path):
    series = generate_uid()
    raws = [stored_12bit(f) for f in range(3)]
    for f, raw in enumerate(raws):
        write_dicom(tmp_path / "in" / f"{f}.dcm" if f else _mkdir(tmp_path / "in") / "0.dcm", raw, series=series,
                    trigger=10.0 + 50 * f, instance=f + 1, compress=syntax)
    assert dcmread(tmp_path / "in" / "1.dcm").file_meta.TransferSyntaxUID == syntax
    slices, report = read_cine_slices(tmp_path / "in", progress=False)
    assert len(slices) == 1 and report.notes == []
    np.testing.assert_array_equal(slices[0].frames, np.stack(raws) * 2.0 - 5)  # lossless, then rescaled


def _mkdir(path):
    path.mkdir(parents=True, exist_ok=True)
    return path


def test_jpeg_ls_is_read_by_the_installed_pylibjpeg_plugin(tmp_path):
    from pydicom.pixels import get_decoder, pixel_array

    write_dicom(tmp_path / "ls.dcm", stored_12bit(7), series=generate_uid(), compress=JPEGLSLossless)
    # pyjpegls (a test extra, for encoding) also decodes; the installed product path is pylibjpeg-libjpeg
    assert "pylibjpeg" in get_decoder(JPEGLSLossless).available_plugins
    np.testing.assert_array_equal(pixel_array(tmp_path / "ls.dcm", decoding_plugin="pylibjpeg"), stored_12bit(7))


def write_enhanced(path, *, series, slopes, triggers, positions, order, spacing=(1.25, 1.5)):
    """One Enhanced MR file; frame i (stored in ``order``) is slice ``positions[i]`` at ``triggers[i]`` ms."""
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = EnhancedMRImageStorage
    meta.MediaStorageSOPInstanceUID = uid = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = Dataset()
    ds.file_meta = meta
    ds.SOPClassUID, ds.SOPInstanceUID, ds.Modality = EnhancedMRImageStorage, uid, "MR"
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SeriesNumber = STUDY, series, 301
    for keyword, value in IDENTITY.items():
        setattr(ds, keyword, value)
    ds.Rows, ds.Columns, ds.NumberOfFrames = H, W, len(order)
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0

    def item(**kw):
        it = Dataset()
        for k, v in kw.items():
            setattr(it, k, v)
        return it

    shared = item(PixelMeasuresSequence=Sequence([item(PixelSpacing=list(spacing), SliceThickness=8)]),
                  PlaneOrientationSequence=Sequence([item(ImageOrientationPatient=[1, 0, 0, 0, 1, 0])]))
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    frames = []
    for i in order:
        s, f = divmod(i, 4)
        frames.append(item(
            CardiacSynchronizationSequence=Sequence([item(NominalCardiacTriggerDelayTime=triggers[i])]),
            PlanePositionSequence=Sequence([item(ImagePositionPatient=[-10.0, 20.0, positions[i]])]),
            PixelValueTransformationSequence=Sequence([item(RescaleSlope=slopes[i], RescaleIntercept=-5,
                                                            RescaleType="US")]),
            FrameContentSequence=Sequence([item(TemporalPositionIndex=f + 1)])))
    ds.PerFrameFunctionalGroupsSequence = Sequence(frames)
    ds.PixelData = np.stack([raw_frame(*divmod(i, 4)) for i in order]).astype(np.uint16).tobytes()
    dcmwrite(path, ds, enforce_file_format=True)


def test_enhanced_multiframe_mr_is_split_into_slices_in_trigger_order(tmp_path, capsys):
    # 2 slices x 4 phases, stored out of order, with a rescale slope per frame
    triggers = [10.0 + 50 * (i % 4) for i in range(8)]
    positions = [8.0 * (i // 4) for i in range(8)]
    slopes = [1.0 + 0.25 * i for i in range(8)]
    _mkdir(tmp_path / "in")
    write_enhanced(tmp_path / "in" / "IM_0001", series=generate_uid(), slopes=slopes, triggers=triggers,
                   positions=positions, order=[5, 0, 3, 6, 1, 7, 2, 4])
    rc, stdout, err = cli("dicom", capsys, tmp_path / "in", "--out", tmp_path / "c.h5", "--frames", 4)
    assert rc == 0 and err == "", err
    with open_cohort(tmp_path / "c.h5") as c:
        assert len(c) == 2
        for s, sid in enumerate(c.ids):
            sub = c[sid]
            want = np.stack([raw_frame(s, f) * slopes[4 * s + f] - 5 for f in range(4)])
            np.testing.assert_allclose(sub.cine, want, rtol=1e-6)  # 4 -> 4 frames: the source frames
            np.testing.assert_allclose(sub.frame_times_ms, triggers[:4])
            assert sub.spacing_mm == (1.25, 1.5) and sub.attrs["slice_position_mm"] == pytest.approx(8.0 * s)
            assert sub.attrs["times_assumed"] == 0 and sub.attrs["series_number"] == 301
    assert_private(tmp_path / "c.h5", list(IDENTITY.values()) + [STUDY], stdout, err,
                   cohort_only=[str(tmp_path), "IM_0001"])


def test_preamble_less_files_are_read_and_a_cd_folder_skips_the_rest(tmp_path, capsys):
    cd = _mkdir(tmp_path / "cd")
    series = generate_uid()
    for f in range(4):
        write_dicom(_mkdir(cd / "DICOM" / "S1") / f"I{f:04d}", raw_frame(0, f), series=series,
                    trigger=10.0 + 50 * f, instance=f + 1, preamble=False)
    assert (cd / "DICOM" / "S1" / "I0000").read_bytes()[:2] == b"\x08\x00"  # no preamble, no 'DICM'
    (cd / "LICENSE").write_text("Viewer licence: you may ...\n")
    (cd / "viewer.exe").write_bytes(b"MZ\x90\x00" + bytes(500))
    (cd / "AUTORUN.INF").write_text("[autorun]\nopen=viewer.exe\n")
    rc, stdout, err = cli("dicom", capsys, cd, "--out", tmp_path / "c.h5", "--frames", 8)
    assert rc == 0, err
    notes = err.splitlines()
    assert len(notes) == 3 and all("not a DICOM file" in n and n.endswith("; skipped") for n in notes), err
    assert {Path(n.split(": ")[2]).name for n in notes} == {"LICENSE", "viewer.exe", "AUTORUN.INF"}
    assert "wrote 1 subject(s)" in stdout and "(3 file(s) skipped)" in stdout
    with open_cohort(tmp_path / "c.h5") as c:
        np.testing.assert_allclose(c[c.ids[0]].cine, expected_cine(0), rtol=1e-6)


def test_exam_folder_keeps_every_cine_and_skips_localizer_and_report(tmp_path, capsys):
    exam = _mkdir(tmp_path / "exam")
    write_cine(exam / "S300_CINE")
    write_cine(exam / "S400_CINE", slices=(30.0,))
    loc = generate_uid()
    for i, o in enumerate([(1, 0, 0, 0, 1, 0), (0, 1, 0, 0, 0, -1), (1, 0, 0, 0, 0, -1)]):  # tri-plane
        write_dicom(_mkdir(exam / "S001_LOC") / f"{i}.dcm", raw_frame(0, 0), series=loc, instance=i + 1,
                    orientation=o, ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    write_dicom(exam / "sr.dcm", raw_frame(0, 0), series=generate_uid(), pixels=False)
    rc, stdout, err = cli("dicom", capsys, exam, "--out", tmp_path / "c.h5", "--frames", 8)
    assert rc == 0, err
    notes = err.splitlines()
    assert len(notes) == 2, err
    assert "sr.dcm: PixelData: a DICOM MR Image Storage without an image; skipped" in notes[0]
    assert "S001_LOC/0.dcm: ImagePositionPatient: only 1 frame at this slice position" in notes[1]
    assert notes[1].endswith("series 7 skipped (3 image(s))")
    assert "wrote 3 subject(s)" in stdout and "(1 file(s) and 1 series or slice(s) skipped)" in stdout


def test_duplicate_copies_are_dropped(tmp_path, capsys):
    write_cine(tmp_path / "in")
    for name in ("im001", "im005"):
        shutil.copy(tmp_path / "in" / f"{name}.dcm", tmp_path / "in" / f"{name}(1).dcm")
    rc, stdout, err = cli("dicom", capsys, tmp_path / "in", "--out", tmp_path / "c.h5", "--frames", 8)
    assert rc == 0, err
    assert err.splitlines() == [f"ofrnn: note: {tmp_path / 'in' / f'{n}(1).dcm'}: a copy of {n}.dcm (same "
                                f"SOPInstanceUID and pixels); dropped" for n in ("im001", "im005")]
    assert "wrote 2 subject(s)" in stdout and "(2 duplicate file(s) dropped)" in stdout
    with open_cohort(tmp_path / "c.h5") as c:
        for s, sid in enumerate(c.ids):
            np.testing.assert_allclose(c[sid].cine, expected_cine(s), rtol=1e-6)


def test_constant_trigger_time_falls_back_to_instance_number(tmp_path, capsys):
    folder = _mkdir(tmp_path / "in")
    series = generate_uid()
    for f in (2, 0, 3, 1):
        write_dicom(folder / f"x{f}.dcm", raw_frame(0, f), series=series, trigger=0.0, instance=11 + f,
                    NominalInterval=600)
    rc, stdout, err = cli("dicom", capsys, folder, "--out", tmp_path / "c.h5", "--frames", 8)
    assert rc == 0, err
    assert err == (f"ofrnn: note: {folder / 'x0.dcm'}: frames ordered by InstanceNumber (TriggerTime is 0 ms on all "
                   f"4 frames); times assumed evenly spaced over 600 ms\n")
    with open_cohort(tmp_path / "c.h5") as c:
        sub = c[c.ids[0]]
        np.testing.assert_allclose(sub.cine, expected_cine(0), rtol=1e-6)
        np.testing.assert_allclose(sub.frame_times_ms, 75 * np.arange(8))
        assert sub.attrs["times_assumed"] == 1 and sub.attrs["cycle_ms"] == 600


# -- the shared field cases (../shared/field-cases, real Sunnybrook images with fake patient fields) ---

#: case -> (subjects, frames per subject, notes expected): what each README says a correct product gives
FIELD = {
    "02-trigger-all-zero": (1, 20, 1),
    "04-jpeg-lossless-sv1": (1, 20, 0),
    "08-philips-enhanced-mr": (2, 20, 0),
    "13-duplicate-copies": (1, 20, 5),
    "21-exam-with-localizer": (2, 20, 1),
}
#: the fake patient fields every field case carries
FIELD_IDENTITY = ["TEST^CASE", "TESTID0001", "20010203", "19700101", "TEST HOSPITAL FIELDCASE", "FAKE^DOCTOR",
                  "FAKE^OPERATOR", "STATIONFAKE", "SNFAKE999", "ACCFAKE123"]
#: Sunnybrook SC-HF-I-1 images of slices 5 and 6, whose pixels the field cases carry
SB_SLICES = {-78.9: range(81, 101), -88.9: range(101, 121)}


def _sunnybrook_frames(images):
    return np.stack([dcmread(SUNNYBROOK / "dicoms" / SB_PATIENT / f"{n}.dcm").pixel_array for n in images])


def _enhanced_delays_and_slopes(path):
    """``{slice position (mm, to 0.1): (trigger delays, rescale slopes)}`` per frame of an enhanced MR
    file, read from its per-frame functional groups, each slice's frames in time order."""
    ds = dcmread(path, stop_before_pixels=True)
    orientation = np.array(ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient,
                           dtype=float)
    normal = np.cross(orientation[:3], orientation[3:])
    by_slice = {}
    for g in ds.PerFrameFunctionalGroupsSequence:
        position = round(float(np.array(g.PlanePositionSequence[0].ImagePositionPatient, dtype=float) @ normal), 1)
        delay = float(g.CardiacSynchronizationSequence[0].NominalCardiacTriggerDelayTime)
        by_slice.setdefault(position, []).append((delay, float(g.PixelValueTransformationSequence[0].RescaleSlope)))
    return {k: tuple(zip(*sorted(v))) for k, v in by_slice.items()}


@pytest.mark.parametrize("case", list(FIELD))
def test_field_case(case, tmp_path, capsys):
    folder = FIELD_CASES / case / "input"
    if not folder.is_dir():
        pytest.skip(f"field case not found at {folder} (shared folder absent)")
    n_subjects, n_frames, n_notes = FIELD[case]
    slices, report = read_cine_slices(folder, progress=False)
    assert len(slices) == n_subjects and len(report.notes) == n_notes, report.notes
    for sl in slices:
        assert sl.frames.shape == (n_frames, 256, 256) and sl.spacing_mm == (1.367188, 1.367188)
        assert np.all(np.diff(sl.times_ms) > 0)
        originals = _sunnybrook_frames(SB_SLICES[round(sl.position_mm, 1)]) if SUNNYBROOK.is_dir() else None
        if case == "08-philips-enhanced-mr":
            times, slopes = _enhanced_delays_and_slopes(folder / "IM_0001")[round(sl.position_mm, 1)]
            np.testing.assert_allclose(sl.times_ms, times)  # the per-frame delays, in time order
            # stored = round(original / slope) per frame: each frame's slope applied gives the original to
            # within slope / 2; without it frames would be off by up to 43 %
            assert len(set(slopes)) > 1
            if originals is not None:
                assert np.abs(sl.frames - originals).max() <= max(slopes) / 2
        elif originals is not None:
            np.testing.assert_array_equal(sl.frames, originals)  # decoded, ordered, deduplicated: the originals
    if case == "02-trigger-all-zero":
        assert slices[0].times_assumed and slices[0].cycle_ms == 759  # NominalInterval
        assert "frames ordered by InstanceNumber (TriggerTime is 0 ms on all 20 frames)" in report.notes[0]
    if case == "04-jpeg-lossless-sv1":
        assert dcmread(folder / "IM00001").file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.70"
    if case == "13-duplicate-copies":
        assert report.duplicates == 5 and all("(1).dcm: a copy of" in n for n in report.notes)
    if case == "21-exam-with-localizer":
        assert report.parts_skipped == 1 and "S001_LOCALIZER" in report.notes[0]
    out = tmp_path / "c.h5"
    rc, stdout, err = cli("dicom", capsys, folder, "--out", out)
    assert rc == 0 and f"wrote {n_subjects} subject(s)" in stdout, err
    assert len(err.splitlines()) == n_notes
    with open_cohort(out) as c:
        assert all(c[sid].cine.shape == (25, 256, 256) for sid in c.ids)
    uids = {str(dcmread(p, stop_before_pixels=True).get(k)) for p in folder.rglob("*") if p.is_file()
            for k in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID")}
    assert_private(out, FIELD_IDENTITY, stdout, err, cohort_only=sorted(uids) + [str(folder), case])


# -- interrupted runs leave nothing behind ----------------------------------------------------------

#: runs `ofrnn ...` with a pause after the first subject is written, so a signal lands mid-write
_SLOW_INGEST = """
import signal, sys, time
# A user's Ctrl-C reaches a process whose SIGINT raises KeyboardInterrupt; a child of a shell that ran
# the tests in the background starts with SIGINT ignored, and would never see the signal under test.
signal.signal(signal.SIGINT, signal.default_int_handler)
import ofrnn.store as store
add = store.CohortWriter.add
def slow_add(self, subject):
    add(self, subject)
    print("writing", flush=True)
    time.sleep(60)
store.CohortWriter.add = slow_add
from ofrnn.cli import main
sys.exit(main(sys.argv[1:]))
"""


def _start_slow_ingest(folder, out):
    p = subprocess.Popen([sys.executable, "-c", _SLOW_INGEST, "ingest", "dicom", str(folder), "--out", str(out)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline() == "writing\n", p.stderr.read()
    return p


@pytest.mark.parametrize("sig, rc", [(signal.SIGTERM, 143), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"])
def test_a_signal_during_the_write_leaves_nothing(sig, rc, tmp_path):
    write_cine(tmp_path / "in")
    out_dir = _mkdir(tmp_path / "out")
    p = _start_slow_ingest(tmp_path / "in", out_dir / "c.h5")
    assert [f.name.endswith(".tmp") for f in out_dir.iterdir()] == [True]  # the cohort is being written
    p.send_signal(sig)
    assert p.wait(timeout=30) == rc
    err = p.stderr.read()
    assert "Traceback" not in err and list(out_dir.iterdir()) == []


def test_a_killed_run_leaves_a_temp_file_the_next_run_removes(tmp_path, capsys):
    write_cine(tmp_path / "in")
    out_dir = _mkdir(tmp_path / "out")
    out = out_dir / "c.h5"
    killed = _start_slow_ingest(tmp_path / "in", out)
    killed.kill()  # SIGKILL: nothing in the process can clean up
    killed.wait(timeout=30)
    stale = list(out_dir.iterdir())
    assert len(stale) == 1 and stale[0].name.startswith(".c.h5.")
    other = out_dir / ".c.h5.notours.tmp"  # not our pattern (8 random characters): never touched
    other.write_text("x")
    live = _start_slow_ingest(tmp_path / "in", out)  # a writer still at work keeps its temporary file
    try:
        live_tmp = {f for f in out_dir.iterdir()} - {stale[0], other}
        assert len(live_tmp) == 1
        assert cli("dicom", capsys, tmp_path / "in", "--out", out)[0] == 0
        assert {f for f in out_dir.iterdir()} == {out, other} | live_tmp  # the stale one is gone
    finally:
        live.send_signal(signal.SIGTERM)
        assert live.wait(timeout=30) == 143
    assert {f for f in out_dir.iterdir()} == {out, other}
    with open_cohort(out) as c:
        assert len(c) == 2


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
