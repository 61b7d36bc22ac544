"""Ingest real short-axis cine DICOM into a cohort: one subject per slice position of each series.

Frames are ordered by TriggerTime (InstanceNumber when it is missing) and resampled to --frames per
cardiac cycle by periodic linear interpolation (frame 0 = the first, end-diastolic, frame unchanged);
pixel spacing is kept and the slice level is 'unknown'. Optional inputs:

  --contours DIR  Sunnybrook-style LV contours, IM-0001-NNNN-{i,o}contour-manual.txt with one
                  'x y' (column row) vertex per line, NNNN = the image's InstanceNumber; they give
                  lv_cavity_t, myocardium_t and lv_box on the resampled frame nearest in time.
  --masks DIR     infarct masks <subject id>.png or .npy (nonzero = infarct) at end-diastole.

No names, IDs, dates, UIDs or institution fields are copied; subject ids are --ids, PREFIX01,
PREFIX02, ... (--id-prefix), or a hash of series and slice position. See ofrnn/ingest.py for every rule.
"""
HELP = "read cine DICOM (with optional contours and infarct masks) into a cohort"


def add_arguments(p):
    p.add_argument("format", choices=["dicom"], help="input format")
    p.add_argument("folder", metavar="DIR", help="folder searched recursively for the cine DICOM images")
    p.add_argument("--out", required=True, metavar="COHORT", help="cohort file (.h5) to write")
    p.add_argument("--contours", metavar="DIR", help="folder of Sunnybrook-style LV contour text files")
    p.add_argument("--masks", metavar="DIR", help="folder of infarct masks named <subject id>.png or .npy")
    p.add_argument("--frames", type=int, default=25, help="frames per cardiac cycle after resampling (default 25)")
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--ids", nargs="+", metavar="ID", help="one subject id per slice, in the order listed")
    ids.add_argument("--id-prefix", metavar="PREFIX", help="name the subjects PREFIX01, PREFIX02, ...")


def run(args):
    from ..ingest import ingest_dicom

    rows, skipped = ingest_dicom(args.folder, args.out, frames=args.frames, masks=args.masks,
                                 contours=args.contours, ids=args.ids, id_prefix=args.id_prefix)
    print(f"{'subject':<14}{'series':>7}{'position mm':>13}{'frames':>9}{'matrix':>10}{'spacing mm':>13}"
          f"{'contoured':>11}{'infarct':>9}")
    for r in rows:
        series = "-" if r["series_number"] is None else str(r["series_number"])
        H, W = r["matrix"]
        sp = r["spacing_mm"]
        frames = f"{r['frames_original']}->{r['frames']}"
        print(f"{r['id']:<14}{series:>7}{r['position_mm']:>13.1f}{frames:>9}{f'{H}x{W}':>10}"
              f"{f'{sp[0]:.2f}x{sp[1]:.2f}':>13}{r['contour_frames']:>11}{'yes' if r['infarct'] else '-':>9}")
    note = f" ({skipped} non-DICOM file(s) skipped by name)" if skipped else ""
    print(f"wrote {len(rows)} subject(s) to {args.out}{note}")
