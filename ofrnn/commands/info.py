"""Summarise a cohort: one row per subject and a total line.

Columns: subject id, slice level, frames, matrix, pixel spacing (mm), infarct size (% of the
frame-0 myocardium, '-' when unknown) and SNR (blood signal over noise sigma, simulated cohorts).
"""
HELP = "show a cohort as a table (subjects, levels, frames, spacing, infarct %%, SNR)"


def add_arguments(p):
    p.add_argument("cohort", metavar="COHORT", help="cohort file (.h5) from 'ofrnn simulate' or 'ofrnn ingest'")
    p.add_argument("--summary", action="store_true", help="print only the totals, not one row per subject")


def run(args):
    import numpy as np

    from ..store import LEVELS, SCHEMA_VERSION, open_cohort

    with open_cohort(args.cohort) as c:
        rows = []
        for sid in c.ids:
            m = c.meta(sid)
            g = c.group(sid)
            infarct = None
            if "infarct" in g and "myocardium" in g:
                myo = int(g["myocardium"][()].sum())
                infarct = 100.0 * float(g["infarct"][()].sum()) / max(myo, 1)
            rows.append((sid, m["level"], m["shape"], m["spacing_mm"], infarct, m["attrs"].get("snr")))
        print(f"{c.path}  source={c.source}  subjects={len(rows)}  schema={SCHEMA_VERSION}")
        if not args.summary:
            print(f"{'subject':<12}{'level':<9}{'frames':>6}{'matrix':>10}{'spacing mm':>14}{'infarct %':>11}{'SNR':>7}")
            for sid, level, (T, H, W), sp, inf, snr in rows:
                inf_s = "-" if inf is None else f"{inf:.1f}"
                snr_s = "-" if snr is None else f"{snr:.1f}"
                print(f"{sid:<12}{level:<9}{T:>6}{f'{H}x{W}':>10}{f'{sp[0]:.2f}x{sp[1]:.2f}':>14}{inf_s:>11}{snr_s:>7}")
        levels = {lv: sum(r[1] == lv for r in rows) for lv in (*LEVELS, "unknown")}
        print("levels: " + " / ".join(f"{n} {lv}" for lv, n in levels.items() if n))
        if rows:
            frames = sorted({r[2][0] for r in rows})
            sp = np.array([r[3] for r in rows])
            print(f"frames: {', '.join(map(str, frames))}; spacing {sp.min():.2f}-{sp.max():.2f} mm")
            inf = np.array([r[4] for r in rows if r[4] is not None])
            if inf.size:
                print(f"infarct: {int((inf > 0).sum())}/{inf.size} slices, "
                      f"{inf[inf > 0].mean() if (inf > 0).any() else 0:.1f} % of myocardium on average where present")
            snr = np.array([r[5] for r in rows if r[5] is not None])
            if snr.size:
                print(f"SNR: {snr.min():.1f}-{snr.max():.1f} (median {np.median(snr):.1f})")
