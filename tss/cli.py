"""Command line: ``python -m tss {synth,validate,preprocess,train,study,audit,calibrate,clock,results,default-profile}``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

# each command imports what it runs inside its function: the whole package at the top makes `python -m tss
# --help` take 0.1 s -> 11 s (torch, SimpleITK, nilearn, dask; measured on 2 busy cores)


def _cmd_validate(args: argparse.Namespace) -> int:
    from tss import manifest

    findings = manifest.validate(args.cohort, check_data=not args.headers_only, data_roots=args.data_roots)
    print(manifest.format_findings(findings))
    return 1 if any(f.fatal for f in findings) else 0


def _profile_defaults(args: argparse.Namespace, **defaults) -> None:
    """Fill the folders (and sizes) left out from ``--profile``: each of ``defaults`` maps an argument
    to a function of the profile. Without ``--profile`` every one of them must be given."""
    from tss import profiles, project

    missing = [k for k in defaults if getattr(args, k) is None]
    if missing and not args.profile:
        raise SystemExit(f"python -m tss {args.command}: give --profile, or " +
                         " and ".join(f"--{k.replace('_', '-')}" if k != "cohort" else "COHORT" for k in missing))
    if args.profile:
        profiles.check(args.profile)
        for k in missing:
            setattr(args, k, defaults[k](args.profile, project.paths(args.profile)))


def _cmd_synth(args: argparse.Namespace) -> int:
    from tss import engine, profiles, synth

    if args.n is None and not args.profile:
        args.n = 422  # the paper's cohort
    variant = args.variant or profiles.DEFAULT_VARIANT
    synth.params.overrides(variant)  # an unknown variant is an error before any folder is chosen
    _profile_defaults(args, out=lambda prof, P: P.variant_cohort(variant), n=lambda prof, P: profiles.COHORT[prof].n_patients)
    client = engine.connect(args.scheduler, args.workers)
    with engine.patients_on(client):  # one patient per task on the cluster, when there is one
        out = synth.generate(args.out, n=args.n, seed=args.seed, jobs=-1 if client else args.jobs,
                             variant=variant)
    print(f"wrote {out.n_patients} patients to {out.root} in {out.seconds:.0f} s "
          f"({out.n_generated} generated, {out.n_cached} reused from cache)")
    return 0


def _cmd_preprocess(args: argparse.Namespace) -> int:
    from tss import engine, preprocess

    _profile_defaults(args, cohort=lambda prof, P: P.cohort, out=lambda prof, P: P.cache)
    client = engine.connect(args.scheduler, args.workers)
    with engine.patients_on(client):  # one patient per task on the cluster, when there is one
        run = preprocess.preprocess_cohort(args.cohort, args.out, jobs=-1 if client else args.jobs,
                                           data_roots=args.data_roots)
    print(run.summary())
    if args.assemble and len(run.failures) < len(run.outcomes):
        path = preprocess.assemble(args.out, args.cohort, reference=args.reference)
        arr, index = preprocess.load_hemispheres(args.out)
        print(f"hemisphere tensors: {path} {tuple(arr.shape)} float16, {int(index['label'].sum())} with stroke")
    if run.failures:
        print(f"failures listed in {args.out / 'failures.csv'}")
    return 1 if run.failures else 0


def _cmd_train(args: argparse.Namespace) -> int:
    import torch

    from tss import engine, profiles, project
    from tss.runtree import RunTree
    from tss.train import Hemispheres, grid, report, run_grid

    profiles.check(args.profile)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    from tss.train import clock
    from tss.train.config import INITS, PHASES

    # a typo is an error that lists the valid names, not a selection of nothing
    archs = clock.check_names(args.archs, profiles.ARCHS, "architecture")
    phases = clock.check_names(args.phases, tuple(PHASES), "phase") if args.phases else None
    inits = clock.check_names(args.inits, INITS, "init")
    exps = [e for e in grid(archs, phases) if e.init in inits]
    tp = profiles.TRAIN[args.profile]
    seeds = args.seeds or list(tp.seeds)
    where = project.paths(args.profile)  # the project's folders, from any working directory
    runs = args.out or where.runs
    cache = args.cache or where.cache
    device = "cuda" if torch.cuda.is_available() else "cpu"
    print(f"{len(exps)} experiments x {len(seeds)} seeds, profile {args.profile} (at most {tp.max_epochs} epochs, "
          f"patience {tp.patience}), {device} -> {runs}", flush=True)
    client = engine.connect(args.scheduler, args.workers)
    if client is not None:  # the grid as a task graph on the cluster: each run waits for its weight source
        print(f"on the Dask cluster at {client.scheduler.address}", flush=True)
        done = engine.train_grid(client, exps, seeds, engine.CohortSource(str(cache.resolve()), args.profile),
                                 runs.resolve(), args.profile, threads=max(args.threads, 0), gpus=args.gpus)
        for r in done:
            if "skipped" in r or "failed" in r:
                print(f"{r['experiment']} (seed {r['seed']}): {r.get('skipped') or r.get('failed')}", flush=True)
    else:  # in this process, one architecture's cohort at a time
        for arch in archs:
            cohort = Hemispheres.load(cache, profiles.MODEL[args.profile].downsample(arch), device)
            for s in seeds:
                for r in run_grid([e for e in exps if e.arch == arch], cohort, RunTree(runs).seed_dir(s),
                                  args.profile, s):
                    if "skipped" in r:
                        print(f"{r['experiment']} (seed {s}) skipped: {r['skipped']}", flush=True)
            del cohort
    df = report.summaries(runs)
    if not df.empty:
        print(report.table(df[df["experiment"].isin([e.name for e in exps])]).to_string())
    return 0


def _cmd_study(args: argparse.Namespace) -> int:
    import torch

    from tss import project
    from tss.train import study

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    exps = study.RANDOM if args.only_random else study.CHAIN + (study.RANDOM if args.random else ())
    sizes = [None if s == "all" else int(s) for s in args.sizes] if args.sizes else None
    where = project.paths(args.profile)  # the project's folders, from any working directory
    root = args.out or where.study
    study.run_study(args.cache or where.cache, root,
                    profile=args.profile, downsamples=args.downsample, sizes=sizes, experiments=exps,
                    seed=args.seed, device="cuda" if torch.cuda.is_available() else "cpu",
                    grid_root=None if args.out else where.runs)
    print(study.pivot(study.table(root)).to_string(index=False))  # as the book's table
    return 0


def _cmd_audit(args: argparse.Namespace) -> int:
    import torch

    from tss import audit, manifest, profiles, project

    profiles.check(args.profile)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    where = project.paths(args.profile)
    cache, cohort = args.cache or where.cache, args.cohort or where.cohort
    audit.run(cache, cohort, where.audit)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.probes:
        audit.run_probes(cache, (where.runs, where.clock), where.audit, args.profile, device=device)
    if args.probes or args.lesion_probes:
        audit.run_lesion_probes(cache, (where.runs, where.clock), where.audit, args.profile, device=device)
    man = manifest.load_cohort(cohort, check=False).table
    latent = where.results / "cohort" / "latent.csv"
    sc = audit.scores(where.audit, man, pd_read(latent), where.runs, audit.TRAINED, lee=where.lee)
    t = audit.table(sc, n_boot=args.n_boot)
    print(t.assign(auc=t["auc"].round(3), lo=t["lo"].round(2), hi=t["hi"].round(2)).to_string(index=False))
    return 0


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from tss import stages

    out = stages.calibrate_variant(args.profile, args.variant, seed=args.seed, jobs=args.jobs, with_lee=args.lee)
    s = out["summary"]
    print(out["table"].drop(columns=["source"]).to_string(index=False))
    if "lee" in s:
        lo, hi = s["lee"]["test_auc_ci"]
        print(f"Lee et al. baseline: test AUC {s['lee']['test_auc']:.2f} ({lo:.2f}-{hi:.2f}) on "
              f"{s['lee']['n_usable']['test']} usable of {s['lee']['n_patients']['test']} test patients")
    print(f"{s['variant']} ({s['n']} patients of {s['profile']}): {s['met']} of {s['targets']} targets met; "
          f"wrote {', '.join(str(f) for f in out['files'])}")
    return 0


def pd_read(path):
    import pandas as pd

    return pd.read_csv(path) if Path(path).exists() else None


def _cmd_clock(args: argparse.Namespace) -> int:
    import torch

    from tss import profiles, project
    from tss.train import Hemispheres, clock

    profiles.check(args.profile)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    where = project.paths(args.profile)
    recipes = clock.check_names(args.recipes, clock.RECIPES, "recipe")
    inits = clock.check_names(args.inits, ("transfer", "random"), "init")
    device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.planted:  # the positive control: profile-independent, minutes
        root = where.planted_small if args.lesion == "small" else where.planted
        clock.run_planted(root, recipes, seeds=args.seeds, device=device, lesion=args.lesion, inits=inits)
        print(clock.pivot(clock.table(root, n_boot=args.n_boot)).drop(columns="what the recipe changes")
              .to_string(index=False))
        return 0
    for arch in clock.check_names(args.archs, profiles.ARCHS, "architecture"):
        cohort = Hemispheres.load(args.cache or where.cache, profiles.MODEL[args.profile].downsample(arch), device)
        clock.run_variants(cohort, where.clock, where.runs, args.profile, arch, seeds=args.seeds,
                           inits=inits, recipes=recipes)
        del cohort
    t = clock.table(where.clock, n_boot=args.n_boot, grid_root=where.runs)
    if not t.empty:
        print(clock.pivot(t).drop(columns="what the recipe changes").to_string(index=False))
    return 0


def _cmd_results(args: argparse.Namespace) -> int:
    from tss import profiles, project, reproduction, results, stages

    profiles.check(args.profile)
    args.results_root = args.results_root or project.paths(args.profile).results_root
    tables = stages.write_tables(args.results_root, args.profile, n_boot=args.n_boot, seed=args.seed)
    print(results.table2_parts(tables["table2"])[0].to_string(index=False))
    print(f"\nreproduction ({args.profile}): {reproduction.counts(tables['reproduction'])}")
    print(f"tables written to {project.under(args.results_root, args.profile).outputs}: " + ", ".join(f"{n}.csv" for n in tables))
    return 0


def _cmd_findings(args: argparse.Namespace) -> int:
    from tss import profiles, project, results, stages

    profiles.check(args.profile)
    root = project.paths(args.profile).results_root
    shown = results.profile_of(root) or args.profile  # the profile the Results pages show
    dest = stages.write_findings(root, shown, args.out, link=args.link, n_boot=args.n_boot)
    print(f"findings of the {shown} profile: {dest}")
    return 0


def _cmd_default_profile(args: argparse.Namespace) -> int:
    from tss.profiles import default_profile

    print(default_profile())
    return 0


def _add_data_root(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", dest="data_roots", action="append", type=Path, default=[], metavar="DIR",
                   help="a folder the manifest's image paths may point into besides the manifest's own "
                        "folder (repeatable); a path anywhere else is refused")


def _add_cluster(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--scheduler", metavar="ADDRESS", help="run on the Dask cluster whose scheduler is at ADDRESS "
                   "(tcp://host:8786); workers must share this filesystem")
    g.add_argument("--workers", type=int, default=0, metavar="N",
                   help="run on a local Dask cluster of N worker processes (default: in this process)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tss", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="validate a cohort folder (or manifest CSV) and print findings")
    v.add_argument("cohort", type=Path, help="cohort folder holding manifest.csv, or a manifest CSV")
    v.add_argument("--headers-only", action="store_true",
                   help="read NIfTI headers only (faster; does not detect truncated data)")
    _add_data_root(v)
    v.set_defaults(func=_cmd_validate)

    s = sub.add_parser("synth", help="generate the synthetic cohort")
    s.add_argument("--profile", help="the profile's cohort: its size, in data/synthetic-<profile> of the project")
    s.add_argument("--n", type=int, help="number of patients (default: the profile's, else the paper's 422)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, help="output cohort folder (default: the profile's)")
    s.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    s.add_argument("--variant", help="named cohort (tss.synth.params.VARIANTS; default: the first, 'loud'); "
                                     "one variant per folder: with --profile, another variant goes to "
                                     "data/synthetic-<profile>-<variant>")
    _add_cluster(s)
    s.set_defaults(func=_cmd_synth)

    pp = sub.add_parser("preprocess", help="N4, reorient, skull strip, register to MNI 224x224x26, "
                                          "normalise, split hemispheres (cached, resumable)")
    pp.add_argument("cohort", type=Path, nargs="?",
                    help="cohort folder holding manifest.csv, or a manifest CSV (default: the profile's)")
    pp.add_argument("--profile", help="the profile's synthetic cohort and cache folder (results/<profile>/cache/preprocess)")
    pp.add_argument("--out", type=Path, help="cache folder for the processed cohort (default: the profile's)")
    pp.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    pp.add_argument("--reference", help="patient id of the histogram reference (default: first training patient)")
    pp.add_argument("--no-assemble", dest="assemble", action="store_false",
                    help="only process patients; do not write the hemisphere array")
    _add_data_root(pp)
    _add_cluster(pp)
    pp.set_defaults(func=_cmd_preprocess)

    t = sub.add_parser("train", help="train the grid of Table 2 (or part of it) for a profile "
                                     "(cached, resumable; what the Training chapter runs)")
    t.add_argument("--profile", default="quick")
    t.add_argument("--archs", default="2d,3d", help="comma-separated: 2d,3d")
    t.add_argument("--phases", help="comma-separated phases (default: all): genesis,medical,stroke,tss3,tss45,attention")
    t.add_argument("--inits", default="all", help="all, or comma-separated: random,imagenet,genesis,medical,transfer")
    t.add_argument("--seeds", type=int, nargs="+", help="training seeds (default: the profile's)")
    t.add_argument("--cache", type=Path, help="processed cohort (default: the project's results/<profile>/cache/preprocess)")
    t.add_argument("--out", type=Path, help="run folder (default: the project's results/<profile>/runs)")
    t.add_argument("--threads", type=int, default=-1, help="torch CPU threads (-1: torch's default; per task on a cluster)")
    _add_cluster(t)
    t.add_argument("--gpus", action="store_true", help="on a cluster: each run takes one GPU (workers started "
                                                      "with --resources GPU=1)")
    t.set_defaults(func=_cmd_train)

    st = sub.add_parser("study", help="the data-size study: the 2D transfer chain's test AUC against "
                                      "training-set size at two input sizes (cached, resumable)")
    st.add_argument("--profile", default="lowres", help="optimiser settings, early stopping, epoch cap")
    st.add_argument("--cache", type=Path, help="processed cohort (default: the project's results/<profile>/cache/preprocess)")
    st.add_argument("--out", type=Path, help="run folder (default: results/<profile>/study)")
    st.add_argument("--downsample", type=int, nargs="+", help="in-plane poolings (default: the profile's; lowres: 4 2)")
    st.add_argument("--sizes", nargs="+", help="training stroke hemispheres per size, or 'all' "
                                               "(default: the profile's; lowres: 50 100 200 all)")
    which = st.add_mutually_exclusive_group()
    which.add_argument("--no-random", dest="random", action="store_false",
                       help="skip the random-initialisation TSS < 4.5 h run at each size")
    which.add_argument("--only-random", action="store_true",
                       help="train only that run (it needs no other): a second process can train it "
                            "beside the chain's")
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--threads", type=int, default=-1, help="torch CPU threads (-1: torch's default)")
    st.set_defaults(func=_cmd_study)

    au = sub.add_parser("audit", help="where the clock goes: TSS < 4.5 h told from the latent truth, the native "
                                      "images, template space, the model input, frozen features and the trained "
                                      "models (a synthetic cohort; cached)")
    au.add_argument("--profile", default="lowres")
    au.add_argument("--cache", type=Path, help="processed cohort (default: the profile's)")
    au.add_argument("--cohort", type=Path, help="the synthetic cohort folder (default: the profile's)")
    au.add_argument("--probes", action="store_true", help="also probe the frozen features of the networks "
                                                          "whose weights are here (step 5)")
    au.add_argument("--lesion-probes", action="store_true",
                    help="only the 2D networks' layer1/layer3 maps pooled over the true lesion and over the hemisphere "
                         "(step 5; --probes does these too)")
    au.add_argument("--threads", type=int, default=-1, help="torch CPU threads (-1: torch's default)")
    au.add_argument("--n-boot", type=int, default=1000)
    au.set_defaults(func=_cmd_audit)

    cal = sub.add_parser("calibrate", help="a named cohort variant against patients: generated (cached) in "
                                           "data/synthetic-<profile>-<variant>, its lesion ratios measured from its "
                                           "images, the calibration table in results/<profile>/variants/<variant>")
    cal.add_argument("--profile", default="lowres")
    cal.add_argument("--variant", required=True, help="a variant of tss.synth.params.VARIANTS")
    cal.add_argument("--seed", type=int, default=0)
    cal.add_argument("--jobs", type=int, default=-1, help="worker processes (-1: all cores)")
    cal.add_argument("--lee", action="store_true", help="also preprocess it (cached) and run the Lee et al. "
                                                       "baseline on it")
    cal.set_defaults(func=_cmd_calibrate)

    ck = sub.add_parser("clock", help="the TSS phases under other training recipes, one factor at a time "
                                      "(results/<profile>/clock; cached, resumable)")
    ck.add_argument("--profile", default="lowres")
    ck.add_argument("--archs", default="2d", help="comma-separated: 2d,3d")
    ck.add_argument("--recipes", default="all", help="all, or comma-separated recipes (tss.train.config.RECIPES)")
    ck.add_argument("--inits", default="transfer,random", help="transfer, random or both")
    ck.add_argument("--seeds", type=int, nargs="+", default=[0])
    ck.add_argument("--planted", action="store_true", help="train the recipes on the planted cohort instead "
                                                          "(a FLAIR-bright lesion after 4.5 h: the positive control; "
                                                          "results/planted)")
    ck.add_argument("--lesion", choices=("large", "small"), default="large",
                    help="with --planted: a lesion filling a quarter of the hemisphere (8 x 28 x 14, minutes), or "
                         "one of 2-4 pixels at the lowres input size (26 x 56 x 28; results/planted-small)")
    ck.add_argument("--cache", type=Path, help="processed cohort (default: the profile's)")
    ck.add_argument("--threads", type=int, default=-1, help="torch CPU threads (-1: torch's default)")
    ck.add_argument("--n-boot", type=int, default=1000)
    ck.set_defaults(func=_cmd_clock)

    r = sub.add_parser("results", help="Table 2, the gains, the TSS models against their detector and the "
                                       "claims table of a profile's runs, as CSV (what the Results and "
                                       "Reproduction chapters compute; no training)")
    r.add_argument("--profile", default="quick", help="whose runs: results/<profile>/runs")
    r.add_argument("--results-root", type=Path, help="folder holding <profile>/runs (default: the project's results/)")
    r.add_argument("--n-boot", type=int, default=1000, help="bootstrap replicates of every confidence interval")
    r.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    r.set_defaults(func=_cmd_results)

    f = sub.add_parser("findings", help="the findings box of the intro (what held, what did not, what cannot be told) "
                                         "from the result files of the profile the Results pages show")
    f.add_argument("--profile", default="quick", help="the profile make book ran (larger ones with runs are shown first)")
    f.add_argument("--out", type=Path, default=Path("book/generated/findings.md"))
    f.add_argument("--link", default="generated/10_reproduction", help="the Reproduction page, linked from the box")
    f.add_argument("--n-boot", type=int, default=1000)
    f.set_defaults(func=_cmd_findings)

    d = sub.add_parser("default-profile", help="print 'full' when a CUDA GPU is visible, else 'quick'")
    d.set_defaults(func=_cmd_default_profile)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (FileNotFoundError, ValueError) as e:  # a missing, unparsable or unsafe manifest, a bad option
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
