"""Ingest real short-axis cines into a cohort: one subject per slice.

  ofrnn ingest dicom DIR --out COHORT [--contours DIR] [--masks DIR]
      DIR is searched recursively (an exam folder or a CD): every cine series is read; files that are
      not DICOM, non-image objects, localizers and single images are skipped with one note each.
      Compressed syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000, RLE), enhanced multi-frame MR and files
      without the DICM preamble are read. Frames are ordered by TriggerTime (InstanceNumber when it is
      missing or the same on every frame).
  ofrnn ingest nifti FILE... --out COHORT [--labels LABELS... (once per FILE)]
      4-D (x, y, slice, time) or 3-D (x, y, time) NIfTI; spacing and frame interval from the header.
      Label maps (ACDC codes by default: 1 RV, 2 myocardium, 3 LV cavity) give the LV masks and boxes;
      a map of one frame is frame 0 (end-diastole), or frame N when written FILE@N. With the RV
      labelled at frame 0 and three or more LV slices, slices also get their level (thirds, the base
      at the end with the larger LV cavity) and AHA segments (the septum next to the RV).

Every subject's cine is resampled to --frames per cardiac cycle by periodic linear interpolation
(frame 0 = the first, end-diastolic, frame unchanged); pixel spacing is kept and the slice level is
'unknown'. Infarct masks (--masks DIR): <subject id>.png or .npy, nonzero = infarct, at end-diastole.
DICOM contours (--contours DIR): Sunnybrook-style IM-0001-NNNN-{i,o}contour-manual.txt, one 'x y'
(column row) vertex per line, NNNN = the image's InstanceNumber.

No names, IDs, dates, UIDs, institution fields or input paths are stored; subject ids are --ids,
PREFIX01, PREFIX02, ... (--id-prefix), or a hash. Notes on skipped input go to the terminal only.
See ofrnn/ingest/ for every rule.
"""
HELP = "read cine DICOM or NIfTI (with optional contours, label maps and infarct masks) into a cohort"


def _common(p):
    p.add_argument("--out", required=True, metavar="COHORT", help="cohort file (.h5) to write")
    p.add_argument("--masks", metavar="DIR", help="folder of infarct masks named <subject id>.png or .npy")
    p.add_argument("--frames", type=int, default=25, help="frames per cardiac cycle after resampling (default 25)")
    ids = p.add_mutually_exclusive_group()
    ids.add_argument("--ids", nargs="+", metavar="ID", help="one subject id per slice, in the order listed")
    ids.add_argument("--id-prefix", metavar="PREFIX", help="name the subjects PREFIX01, PREFIX02, ...")


def add_arguments(p):
    sub = p.add_subparsers(dest="format", metavar="FORMAT", required=True)
    d = sub.add_parser("dicom", help="a folder of cine DICOM (an exam, a CD)", description=__doc__,
                       formatter_class=p.formatter_class)
    d.add_argument("folder", metavar="DIR", help="folder searched recursively for the cine DICOM images")
    d.add_argument("--contours", metavar="DIR", help="folder of Sunnybrook-style LV contour text files")
    _common(d)
    n = sub.add_parser("nifti", help="NIfTI cines, 4-D (x, y, slice, time) or 3-D (x, y, time)",
                       description=__doc__, formatter_class=p.formatter_class)
    n.add_argument("files", nargs="+", metavar="FILE", help="NIfTI cine files (.nii, .nii.gz)")
    n.add_argument("--labels", nargs="+", action="append", metavar="LABELS",
                   help="label maps of one input (FILE or FILE@FRAME); give --labels once per input, in order")
    n.add_argument("--myocardium-label", type=int, default=2, help="label code of the LV myocardium (default 2, ACDC)")
    n.add_argument("--cavity-label", type=int, default=3,
                   help="label code of the LV cavity (default 3, ACDC; 1 for M&Ms)")
    n.add_argument("--rv-label", type=int,
                   help="label code of the RV cavity, for AHA segments (default: the code of 1-3 that is neither "
                        "myocardium nor cavity: 1 for ACDC, 3 for M&Ms)")
    n.add_argument("--cycle-ms", type=float, help="spread the frames evenly over this R-R interval (ms) instead of "
                                                  "the header's frame interval")
    _common(n)


def _print_rows(rows):
    print(f"{'subject':<14}{'series':>7}{'position mm':>13}{'frames':>9}{'matrix':>10}{'spacing mm':>13}"
          f"{'annotated':>11}{'infarct':>9}")
    for r in rows:
        series = "-" if r["series_number"] is None else str(r["series_number"])
        H, W = r["matrix"]
        sp = r["spacing_mm"]
        frames = f"{r['frames_original']}->{r['frames']}"
        print(f"{r['id']:<14}{series:>7}{r['position_mm']:>13.1f}{frames:>9}{f'{H}x{W}':>10}"
              f"{f'{sp[0]:.2f}x{sp[1]:.2f}':>13}{r['annotated_frames']:>11}{'yes' if r['infarct'] else '-':>9}")


def run(args):
    import sys

    if args.format == "dicom":
        from ..ingest import ingest_dicom

        rows, report = ingest_dicom(args.folder, args.out, frames=args.frames, masks=args.masks,
                                    contours=args.contours, ids=args.ids, id_prefix=args.id_prefix)
    else:
        from ..ingest import ingest_nifti

        rows, report = ingest_nifti(args.files, args.out, labels=args.labels, frames=args.frames, masks=args.masks,
                                    ids=args.ids, id_prefix=args.id_prefix, cycle_ms=args.cycle_ms,
                                    myocardium_label=args.myocardium_label, cavity_label=args.cavity_label,
                                    rv_label=args.rv_label)
    # notes name input files: the terminal may show them, no file keeps them
    for note in report.notes:
        print(f"ofrnn: note: {note}", file=sys.stderr)
    _print_rows(rows)
    summary = report.summary()
    print(f"wrote {len(rows)} subject(s) to {args.out}" + (f" ({summary})" if summary else ""))
