"""Estimate the optical flow between two images and write it as a Middlebury .flo file.

Images: PNG, PPM/PGM, JPEG or NumPy .npy (2-D, or RGB converted to gray). The flow goes from
IMG0 to IMG1: the point at (x, y) of IMG0 is at (x + u, y + v) in IMG1 (.flo stores u, v).
Methods (--method): deep (default: the paper's deep optical flow, Sec. 2 Eqs. 4-7); the baselines of
the paper's Table 3: hs (Horn-Schunck), pyramid-hs, lucas-kanade, phase (phase-based); and library
methods for comparison: farneback, dis, opencv-deepflow, opencv-tvl1 (OpenCV), skimage-tvl1,
skimage-ilk (scikit-image). Pixels a sparse method leaves unestimated
are written as the format's 'unknown' value.
"""
HELP = "optical flow between two images -> Middlebury .flo (deep OF or a baseline)"

# Kept in sync with ofrnn.flow.METHODS (checked by the tests); listed here so --help stays instant.
METHOD_NAMES = ("deep", "hs", "pyramid-hs", "lucas-kanade", "phase", "farneback", "dis", "opencv-deepflow",
                "opencv-tvl1", "skimage-tvl1", "skimage-ilk")


def add_arguments(p):
    p.add_argument("image0", metavar="IMG0", help="first (reference) image")
    p.add_argument("image1", metavar="IMG1", help="second (moving) image, same size")
    p.add_argument("--out", required=True, metavar="FILE.flo", help="output .flo file (written atomically)")
    p.add_argument("--method", default="deep", choices=METHOD_NAMES, help="flow method (default: deep)")


def run(args):
    from ..errors import OfrnnError
    from ..flow import METHODS, read_image, write_flo

    a = read_image(args.image0)
    b = read_image(args.image1)
    if a.shape != b.shape:
        raise OfrnnError(f"size mismatch: {b.shape[1]}x{b.shape[0]} vs {args.image0} {a.shape[1]}x{a.shape[0]}",
                         path=args.image1, field="size")
    try:
        flow = METHODS[args.method](a, b)
    except OfrnnError as e:
        raise OfrnnError(str(e), path=f"{args.image0}, {args.image1}") from None
    write_flo(args.out, flow)
    return 0
