"""The HDF5 cohort store: schema round trip, atomic writes, validation messages, ``ofrnn info``."""
import re
import time

import h5py
import numpy as np
import pytest

from ofrnn.cli import main
from ofrnn.errors import OfrnnError
from ofrnn.store import SCHEMA_VERSION, CohortWriter, Subject, open_cohort, validate_subject, write_cohort

T, H, W = 4, 12, 10


def full_subject(sid="s001", seed=0):
    """A simulated-style subject with every field filled by hand."""
    rng = np.random.default_rng(seed)
    myo = np.zeros((H, W), np.uint8)
    myo[3:9, 2:8] = 1
    myo[5:7, 4:6] = 0
    infarct = np.zeros_like(myo)
    infarct[3:5, 2:8] = myo[3:5, 2:8]
    aha = np.where(myo > 0, 7, 0).astype(np.uint8)
    box = np.tile(np.array([3, 2, 9, 8], np.int32), (T, 1))
    return Subject(
        id=sid, cine=rng.random((T, H, W), dtype=np.float32), spacing_mm=(1.5, 1.25), level="mid",
        frame_times_ms=np.arange(T) * 40.0, infarct=infarct, myocardium=myo, aha_segments=aha, lv_box=box,
        myocardium_t=np.repeat(myo[None], T, 0), lv_cavity_t=np.zeros((T, H, W), np.uint8),
        flow=rng.normal(size=(T - 1, 2, H, W)).astype(np.float32), flow_valid=np.ones((T - 1, H, W), np.uint8),
        annotated={"myocardium_t": np.array([1, 0, 1, 0], np.uint8)}, attrs={"snr": 22.5, "field_t": 3.0})


def dicom_subject(sid="d1"):
    return Subject(id=sid, cine=np.ones((T, H, W), np.float32), spacing_mm=(1.4, 1.4), level="unknown",
                   frame_times_ms=np.arange(T) * 30.0 + 12.0)


def test_round_trip_every_field(tmp_path):
    path = tmp_path / "c.h5"
    a, b = full_subject("s001", 0), full_subject("s002", 1)
    assert write_cohort(path, [a, b], source="simulated", params={"seed": np.int64(3)}) == ["s001", "s002"]
    with open_cohort(path) as c:
        assert c.ids == ["s001", "s002"] and c.source == "simulated" and c.params == {"seed": 3}
        got = c["s002"]
        for name, arr in b.arrays().items():
            np.testing.assert_array_equal(getattr(got, name), arr, err_msg=name)
            assert getattr(got, name).dtype == arr.dtype, name
        assert got.level == "mid" and got.spacing_mm == (1.5, 1.25)
        np.testing.assert_array_equal(got.frame_times_ms, b.frame_times_ms)
        np.testing.assert_array_equal(got.annotated["myocardium_t"], [1, 0, 1, 0])
        np.testing.assert_array_equal(got.annotated["lv_cavity_t"], np.ones(T))  # omitted flags: all annotated
        assert got.attrs == {"snr": 22.5, "field_t": 3.0}
        partial = c.read("s001", fields=("lv_box",))
        assert partial.cine is None and partial.lv_box.shape == (T, 4)
        assert c.meta("s001")["shape"] == (T, H, W)
        assert [s.id for s in c] == ["s001", "s002"]


def test_dicom_subject_needs_only_cine(tmp_path):
    path = tmp_path / "d.h5"
    write_cohort(path, [dicom_subject()], source="dicom")
    with open_cohort(path) as c:
        s = c["d1"]
        assert s.level == "unknown" and s.infarct is None and s.lv_box is None
        assert c.meta("d1")["fields"] == ["cine"]


def nifti_subject(sid="n1", **attrs):
    affine = np.diag([1.5, 1.25, 8.0, 1.0])
    affine[:3, 3] = [-20, 10, 5]
    geometry = dict(nifti_affine=affine, nifti_shape=np.array([W, H, 3]), nifti_slice=2)
    return Subject(id=sid, cine=np.ones((T, H, W), np.float32), spacing_mm=(1.25, 1.5), level="unknown",
                   frame_times_ms=np.arange(T) * 30.0, attrs={**geometry, **attrs})


def test_nifti_subject_keeps_the_input_geometry(tmp_path):
    path = tmp_path / "n.h5"
    write_cohort(path, [nifti_subject()], source="nifti")
    with open_cohort(path) as c:
        a = c.meta("n1")["attrs"]
        assert c.source == "nifti" and c.meta("n1")["fields"] == ["cine"]
        np.testing.assert_array_equal(a["nifti_affine"], nifti_subject().attrs["nifti_affine"])
        assert a["nifti_shape"] == [W, H, 3] and a["nifti_slice"] == 2


@pytest.mark.parametrize("attrs, field", [
    (dict(nifti_slice=None), "nifti_slice: missing"),
    (dict(nifti_affine=np.zeros((4, 4))), "nifti_affine: must be a finite 4x4 affine"),
    (dict(nifti_shape=np.array([W, H])), "nifti_shape: must be 3 positive integers"),
    (dict(nifti_slice=3), "nifti_slice: must be an integer slice index in [0, 3)"),
])
def test_nifti_geometry_is_validated(attrs, field):
    s = nifti_subject()
    s.attrs.update(attrs)
    s.attrs = {k: v for k, v in s.attrs.items() if v is not None}
    with pytest.raises(OfrnnError, match=re.escape(f"subjects/n1/{field}")):
        validate_subject(s, source="nifti")


def test_same_content_gives_the_same_bytes(tmp_path):
    """Reports name a cohort by the SHA-256 of its bytes, so writing the same subjects again, even a
    second later, must give the same file: no HDF5 object timestamps (they have 1 s resolution)."""
    from ofrnn.files import content_digest

    paths = [tmp_path / "a.h5", tmp_path / "b.h5"]
    for i, path in enumerate(paths):
        if i:
            time.sleep(1.1)  # a later second on the wall clock
        write_cohort(path, [full_subject("s001", 0), full_subject("s002", 1)], source="simulated",
                     params={"seed": 0})
    assert paths[0].read_bytes() == paths[1].read_bytes()
    assert content_digest(paths[0]) == content_digest(paths[1])


def test_atomic_write_leaves_nothing_on_exception(tmp_path):
    path = tmp_path / "c.h5"
    with pytest.raises(RuntimeError):
        with CohortWriter(path, source="simulated") as w:
            w.add(full_subject())
            raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_cohort(tmp_path):
    path = tmp_path / "c.h5"
    write_cohort(path, [full_subject("old")], source="simulated")
    bad = full_subject("new")
    bad.cine[0, 0, 0] = np.nan
    with pytest.raises(OfrnnError):
        write_cohort(path, [full_subject("a"), bad], source="simulated")
    with open_cohort(path) as c:
        assert c.ids == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.h5"]


def _broken(kind):
    s = full_subject("s007")
    if kind == "lv_box":
        s.lv_box = s.lv_box[:, :3].copy()
    elif kind == "cine":
        s.cine[1, 2, 3] = np.inf
    elif kind == "infarct":
        s.infarct[0, 0] = 2
    elif kind == "myocardium_t":
        s.myocardium_t = s.myocardium_t.astype(np.float32)
    elif kind == "flow":
        s.flow = None
    elif kind == "aha_segments":
        s.aha_segments[4, 4] = 17
    elif kind == "cine.level":
        s.level = "unknown"  # allowed for DICOM only
    elif kind == "cine.frame_times_ms":
        s.frame_times_ms = np.array([0.0, 40.0, 40.0, 80.0])
    elif kind == "cine.spacing_mm":
        s.spacing_mm = (1.5, 0.0)
    return s


@pytest.mark.parametrize("field", ["lv_box", "cine", "infarct", "myocardium_t", "flow", "aha_segments",
                                   "cine.level", "cine.frame_times_ms", "cine.spacing_mm"])
def test_validation_names_subject_and_field(field):
    with pytest.raises(OfrnnError) as e:
        validate_subject(_broken(field), source="simulated", path="x.h5")
    assert str(e.value).startswith(f"x.h5: subjects/s007/{field}: ")


def test_box_outside_image_and_bad_id_are_rejected():
    s = full_subject()
    s.lv_box[2] = [0, 0, H + 1, W]
    with pytest.raises(OfrnnError, match="subjects/s001/lv_box"):
        validate_subject(s, source="simulated")
    s = dicom_subject("bad id!")
    with pytest.raises(OfrnnError, match="subject id must be"):
        validate_subject(s, source="dicom")


def test_duplicate_subject_id(tmp_path):
    with pytest.raises(OfrnnError, match="duplicate subject id"):
        write_cohort(tmp_path / "c.h5", [dicom_subject("a"), dicom_subject("a")], source="dicom")
    assert list(tmp_path.iterdir()) == []


def test_wrong_schema_version(tmp_path):
    path = tmp_path / "c.h5"
    write_cohort(path, [dicom_subject()], source="dicom")
    with h5py.File(path, "a") as f:
        f.attrs["schema_version"] = SCHEMA_VERSION + 1
    with pytest.raises(OfrnnError) as e:
        open_cohort(path)
    assert f"{path}: schema_version: schema version {SCHEMA_VERSION + 1}" in str(e.value)


def test_tampered_shape_is_caught_on_open(tmp_path):
    path = tmp_path / "c.h5"
    write_cohort(path, [full_subject()], source="simulated")
    with h5py.File(path, "a") as f:
        del f["subjects/s001/infarct"]
        f["subjects/s001"].create_dataset("infarct", data=np.zeros((H + 1, W), np.uint8))
    with pytest.raises(OfrnnError, match=r"subjects/s001/infarct: shape \(13, 10\), expected \(12, 10\)"):
        open_cohort(path)


def test_not_hdf5_and_missing_files(tmp_path):
    junk = tmp_path / "junk.h5"
    junk.write_text("not an HDF5 file")
    with pytest.raises(OfrnnError, match="not an HDF5 cohort"):
        open_cohort(junk)
    with pytest.raises(OfrnnError, match="no such cohort file"):
        open_cohort(tmp_path / "absent.h5")
    plain = tmp_path / "plain.h5"
    h5py.File(plain, "w").close()
    with pytest.raises(OfrnnError, match="schema_version: missing root attribute"):
        open_cohort(plain)


def test_info_table(tmp_path, capsys):
    path = tmp_path / "c.h5"
    write_cohort(path, [full_subject("s001"), full_subject("s002", 1)], source="simulated")
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith("s002"))
    # infarct: 12 of the 32 frame-0 myocardium pixels
    assert row.split() == ["s002", "mid", "4", "12x10", "1.50x1.25", "37.5", "22.5"]
    assert "source=simulated  subjects=2" in out and "levels: 0 apical" not in out and "2 mid" in out


def test_info_on_bad_file_is_one_error_line(tmp_path, capsys):
    junk = tmp_path / "junk.h5"
    junk.write_bytes(b"\x00" * 64)
    assert main(["info", str(junk)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"ofrnn: error: {junk}: not an HDF5 cohort")


def test_write_json_is_strict_and_atomic(tmp_path):
    import json

    from ofrnn.files import write_json

    out = tmp_path / "m.json"
    write_json(out, {"a": np.float32(1.5), "b": np.arange(3), "c": float("nan"), "d": [np.inf, 2]}, nan_as_null=True)
    assert json.loads(out.read_text()) == {"a": 1.5, "b": [0, 1, 2], "c": None, "d": [None, 2]}
    write_json(out, {"c": np.float64("nan")})
    assert np.isnan(json.loads(out.read_text())["c"])
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]
