"""Simulate a cohort of short-axis cine bSSFP slices with infarcts and exact ground truth.

The default is the paper-sized cohort: 114 subjects, 43 apical / 37 mid / 34 basal slices,
25 frames, 256x256 matrix. Options left unset draw per-subject values from clinical ranges
(1.5 or 3 T, pixel 1.3-1.6 mm, blood SNR 42-120 per receive channel, nominal flip 45-60 deg times the
transmit field, phase and readout resolution 55-85 %, the torso turned about the heart). The same seed gives the
same cohort, whatever --jobs.

example:
  ofrnn simulate --subjects 114 --seed 0 --out data/phantom.h5
  ofrnn simulate --subjects 20 --seed 7 --snr 12 --pixel-mm 1.8 --field 1.5 --out data/lowsnr.h5
"""
HELP = "simulate a cine CMR cohort with infarcts (the default data set)"


def add_arguments(p):
    p.add_argument("--out", required=True, metavar="FILE", help="cohort file to write (.h5)")
    p.add_argument("--subjects", type=int, default=114, help="number of slices (default: 114)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--frames", type=int, default=25, help="frames per cardiac cycle (default: 25)")
    p.add_argument("--matrix", type=int, default=256, help="image matrix, square (default: 256)")
    p.add_argument("--pixel-mm", type=float, default=None, help="pixel size in mm (default: 1.3-1.6 per subject)")
    p.add_argument("--snr", type=float, default=None, help="blood SNR per receive channel (default: 42-120 per subject)")
    p.add_argument("--field", type=float, choices=(1.5, 3.0), default=None,
                   help="field strength in T (default: 1.5 or 3 per subject, equally likely)")
    p.add_argument("--phase-resolution", type=float, default=None,
                   help="fraction of phase-encoding lines acquired (default: 0.55-0.85 per subject)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes (default: 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args):
    import time

    from ..errors import OfrnnError
    from ..simulate import Acquisition, keep_freed_memory, simulate_cohort

    if args.subjects < 1:
        raise OfrnnError("must be at least 1", field="--subjects")
    if args.jobs < 1:
        raise OfrnnError("must be at least 1", field="--jobs")
    acq = dict(frames=args.frames, matrix=args.matrix, pixel_mm=args.pixel_mm, snr=args.snr, field_t=args.field,
               phase_resolution=args.phase_resolution)
    try:
        Acquisition(**acq)
    except ValueError as e:
        raise OfrnnError(str(e), field="acquisition") from None
    if args.jobs == 1:  # this process simulates (the workers set it themselves)
        keep_freed_memory()
    t0 = time.perf_counter()
    ids = simulate_cohort(args.out, n_subjects=args.subjects, seed=args.seed, jobs=args.jobs,
                          progress=not args.quiet, **acq)
    print(f"wrote {len(ids)} subjects to {args.out} in {time.perf_counter() - t0:.1f} s")
