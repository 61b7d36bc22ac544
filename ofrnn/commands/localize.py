"""Find the LV in every cine and crop it to the paper's 64x64 ROI sequence.

The heart localization layers (Sec. 2): a trained Fast R-CNN bundle (``--model``, e.g.
``results/localization/model`` from ``make localize``) detects the LV on the frames of each
slice, one box per sequence is taken from the per-frame detections, and every frame is cropped to
64x64 (padded at image borders, resampled when the LV does not fit 64 pixels).

The output is a cohort (same schema, same source) of ROI subjects: ``cine`` (T, 64, 64),
``spacing_mm`` of ROI pixels, and every annotation of the input cropped the same way (masks with
nearest-neighbour sampling, flows converted to ROI pixels, ``lv_box`` mapped into the ROI). Each
subject's attrs record the crop so predictions map back to the original images:
``roi_transform`` (JSON of :meth:`ofrnn.roi.RoiTransform.to_dict`), ``roi_box`` (the detected
sequence box, image pixels, JSON), ``roi_score``, ``roi_image_shape`` and ``localize_mode``.
"""
HELP = "detect the LV (Fast R-CNN) and crop 64x64 ROI sequences from a cohort or a DICOM folder"
NEEDS_TENSORFLOW = True


def add_arguments(p):
    p.add_argument("--model", required=True, metavar="DIR", help="detector bundle folder (detector.keras + detector.json)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cohort", metavar="FILE", help="cohort file (.h5) from 'ofrnn simulate' or 'ofrnn ingest'")
    src.add_argument("--dicom", metavar="DIR", help="folder of short-axis cine DICOM images (read as 'ofrnn ingest' does)")
    p.add_argument("--out", required=True, metavar="FILE", help="output cohort of 64x64 ROI sequences (.h5)")
    p.add_argument("--mode", choices=("fast", "quality"), default="fast",
                   help="proposal mode: fast (a few frames, selective search fast) or quality (every frame, "
                        "selective search quality, as the paper); default fast")


def run(args):
    from pathlib import Path

    from tqdm import tqdm

    from ..errors import OfrnnError
    from ..store import CohortWriter, open_cohort

    out = Path(args.out)
    if not out.parent.is_dir():
        raise OfrnnError("output folder does not exist", path=out.parent, field="--out")
    if args.cohort:
        cohort = open_cohort(args.cohort)
        source, params, ids = cohort.source, cohort.params, cohort.ids
        subjects = (cohort.read(sid) for sid in ids)
    else:
        from ..ingest import DEFAULT_FRAMES, read_cine_slices, slice_to_subject, subject_ids

        slices, _ = read_cine_slices(args.dicom)
        ids = subject_ids(slices)
        source, params = "dicom", dict(frames=DEFAULT_FRAMES)
        subjects = (slice_to_subject(sl, sid) for sl, sid in zip(slices, ids))
    from ..files import content_digest
    from ..localization import MODEL_FILE, crop_subject, load_detector

    detector = load_detector(args.model)
    params = dict(params, localize=dict(model_sha256=content_digest(Path(args.model) / MODEL_FILE), mode=args.mode,
                                        detector=detector.settings))
    with CohortWriter(out, source=source, params=params) as w:
        for s in tqdm(subjects, total=len(ids), desc="localizing", unit="slice"):
            found = detector.localize(s.cine, mode=args.mode)
            w.add(crop_subject(s, found, mode=args.mode))
    print(f"{out}: {len(ids)} ROI sequence(s), 64x64")
