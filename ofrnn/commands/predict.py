"""Detect the infarct area pixel by pixel with a trained OF-RNN bundle.

Writes into OUT/ (layout and units: data/README.md, "Prediction files"):
  predictions.h5  per subject, in the input's frame-0 image pixels (row, col): infarct_prob float32
                  (NaN outside the ROI: not scored), infarct_pred uint8, roi_mask uint8 (1 = scored),
                  roi_box (y0, x0, y1, x1) the ROI actually cropped; spacing in mm as attributes; the
                  threshold and the model (profile, fold, SHA-256 of its weights) as file attributes
  <id>.json       infarct area (mm^2), % of myocardium, centroid as (row, col) in pixels and in mm, the
                  call "infarct present" and its rule, the AHA segments involved. Only predicted pixels
                  inside the myocardium count when the input supplies it (simulated cohorts, --contours);
                  otherwise every predicted pixel in the ROI, and the file says so
  <id>.png        the full frame 0 with the ROI box, beside the ROI enlarged: predicted infarct green,
                  traced infarct yellow and myocardium cyan when known
  bullseye.png    where the AHA segments are known: mean infarct % per segment (and <id>_bullseye.png)
  infarct_pred_<hash>.nii.gz, infarct_prob_<hash>.nii.gz
                  with --nifti (or a cohort from 'ofrnn ingest nifti'): the masks on the input's voxel
                  grid and affine, to overlay in ITK-SNAP or 3D Slicer (<hash>: the input's content hash)
  metrics.json    when the cohort has traced infarcts: scored as in training
No output stores an input path, file or folder name; ids come from the cohort (DICOM: a hash).

ROI boxes: --roi gt uses the cohort's annotated lv_box; --roi detector runs the heart localization
layers: the model bundle's own (make train puts the fold's localizer in it) or --localizer DIR. The
default is gt when every subject has a box, else detector; an explicit --roi gt predicts the subjects
that have a box and skips the others (e.g. Sunnybrook slices without contours). DICOM folders (--dicom)
are read with 'ofrnn ingest' rules (25 frames per cycle); without --contours they have no boxes, so
`ofrnn predict --model results/train/fold3 --dicom DIR --out OUT` finds the LV with the bundle's localizer.
"""
HELP = "predict infarct maps (image coordinates) for a cohort or a DICOM folder with a trained model"
NEEDS_TENSORFLOW = True


def add_arguments(p):
    p.add_argument("--model", required=True, help="model bundle folder from 'ofrnn train' (e.g. results/train/fold3)")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--cohort", help="cohort file (.h5)")
    src.add_argument("--dicom", help="folder of short-axis cine DICOM images (an exam folder or CD is fine)")
    src.add_argument("--nifti", nargs="+", metavar="FILE", help="4-D (x, y, slice, time) or 3-D+t NIfTI cines")
    p.add_argument("--contours", default=None,
                   help="with --dicom: Sunnybrook-style contour files (their boxes become the ROI, --roi gt)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--roi", choices=("gt", "detector"), default=None, help="ROI source (see above)")
    p.add_argument("--localizer", default=None, help="heart localization bundle folder (default: the model bundle's own localizer/)")
    p.add_argument("--threads", type=int, default=0, help="TensorFlow threads (0: all cores)")


def run(args):
    import json
    import sys
    import tempfile
    from pathlib import Path

    from ..errors import OfrnnError
    from ..predict import LOCALIZER_DIR

    if args.contours and not args.dicom:
        raise OfrnnError("--contours goes with --dicom (a cohort carries its own boxes)", field="--contours")
    model = Path(args.model)
    if not model.is_dir():
        raise OfrnnError("no such model folder", path=model)
    out = Path(args.out)
    with tempfile.TemporaryDirectory(prefix="ofrnn-predict-") as tmp:
        if args.dicom or args.nifti:
            from ..ingest import ingest_dicom, ingest_nifti

            cohort = Path(tmp) / "input.h5"
            if args.dicom:
                _, report = ingest_dicom(args.dicom, cohort, contours=args.contours, progress=False)
            else:
                _, report = ingest_nifti(args.nifti, cohort)
            for note in report.notes:  # they may name input files: printed, never stored
                print(f"ofrnn: note: {note}", file=sys.stderr)
        else:
            cohort = Path(args.cohort)
        source = args.dicom or (", ".join(args.nifti) if args.nifti else cohort)  # for error lines only
        from ..store import open_cohort

        with open_cohort(cohort) as c:
            boxed = [s for s in c.ids if "lv_box" in c.group(s) and (c.group(s)["lv_box"][()] >= 0).all(axis=1).any()]
            roi = args.roi or ("gt" if len(boxed) == len(c.ids) else "detector")
            ids = list(c.ids)
            if roi == "gt":
                if not boxed:
                    raise OfrnnError("no subject has an annotated LV box; use --roi detector --localizer DIR",
                                     path=source, field="lv_box")
                if len(boxed) < len(ids):
                    print(f"--roi gt: {len(ids) - len(boxed)} of {len(ids)} subjects have no LV box and are skipped")
                ids = boxed
            localizer = None
            if roi == "detector":
                # the bundle's own heart localization layers (make train), unless another is named
                own = model / LOCALIZER_DIR
                found = args.localizer or (own if (own / "detector.keras").is_file() else None)
                if found is None:
                    raise OfrnnError("no LV boxes to crop the ROI from, and the model bundle has no heart localization "
                                     "layers (train it with localizer = \"train\", or pass --localizer DIR)",
                                     path=source, field="--localizer")
                from ..localization import load_detector

                localizer = load_detector(found)
            import tensorflow as tf

            if args.threads:
                tf.config.threading.set_intra_op_parallelism_threads(args.threads)
                tf.config.threading.set_inter_op_parallelism_threads(args.threads)
            from ..predict import load_bundle, predict_subjects

            network, config = load_bundle(model)
            res = predict_subjects(network, config, (c.read(s) for s in ids), out, roi=roi, localizer=localizer,
                                   source_path=source, total=len(ids))
    tm = res["timings"]
    mean = {k: sum(t[k] for t in tm) / len(tm) for k in ("roi", "flow", "features", "network", "total")} if tm else {}
    print(json.dumps(dict(subjects=len(tm), roi=roi, flow=config["flow"],
                          seconds_per_subject={k: round(v, 3) for k, v in mean.items()}), indent=1))
    if "metrics" in res:
        m = res["metrics"]
        print(json.dumps({g: {k: round(m[g][k], 4) for k in ("accuracy", "sensitivity", "specificity", "dice")}
                          for g in ("roi", "myocardium")}, indent=1))
    print(f"wrote {out}/predictions.h5 and one PNG + JSON per subject" + (", metrics.json" if "metrics" in res else ""))
    return 0
