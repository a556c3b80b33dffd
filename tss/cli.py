"""Command line: ``python -m tss {synth,validate,default-profile}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _cmd_validate(args: argparse.Namespace) -> int:
    from tss import manifest

    findings = manifest.validate(args.cohort, check_data=not args.headers_only)
    print(manifest.format_findings(findings))
    return 1 if any(f.fatal for f in findings) else 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from tss import synth

    out = synth.generate(args.out, n=args.n, seed=args.seed, jobs=args.jobs)
    print(f"wrote {out.n_patients} patients to {out.root} in {out.seconds:.0f} s "
          f"({out.n_generated} generated, {out.n_cached} reused from cache)")
    return 0


def _cmd_default_profile(args: argparse.Namespace) -> int:
    from tss.profiles import default_profile

    print(default_profile())
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tss", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate a cohort folder (or manifest CSV) and print findings")
    v.add_argument("cohort", type=Path, help="cohort folder holding manifest.csv, or a manifest CSV")
    v.add_argument("--headers-only", action="store_true",
                   help="read NIfTI headers only (faster; does not detect truncated data)")
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("synth", help="generate the synthetic cohort")
    s.add_argument("--n", type=int, default=422, help="number of patients (paper: 422)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, required=True, help="output cohort folder")
    s.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    s.set_defaults(func=_cmd_synth)

    d = sub.add_parser("default-profile", help="print 'full' when a CUDA GPU is visible, else 'quick'")
    d.set_defaults(func=_cmd_default_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
