"""Training phases: transitions, freezing, early stopping, resumption, the grid end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from tss import precision, profiles
from tss.train import Experiment, Hemispheres, NonFinite, Run, SourceMissing, add_tumour, grid, run_grid
from tss.train.config import PREVIOUS


def _cohort(n_patients=12, seed=0) -> Hemispheres:
    """A tiny cohort at 26 x 28 x 14 whose stroke hemispheres carry a bright DWI blob and whose
    FLAIR is brighter late: enough signal to learn something in a few steps."""
    g = torch.Generator().manual_seed(seed)
    rows, xs = [], []
    minutes = [60, 400, 120, 500, 150, 300, 90, 600, 200, 700, 100, 350][:n_patients]
    splits = (["train"] * 8 + ["val"] * 2 + ["test"] * 2)[:n_patients]
    for i in range(n_patients):
        for h, side in enumerate(("left", "right")):
            x = 0.3 + 0.05 * torch.rand((3, 26, 28, 14), generator=g)
            stroke = h == i % 2
            if stroke:
                x[0, 10:16, 8:16, 3:9] += 0.5
                x[2, 10:16, 8:16, 3:9] += 0.4 * (minutes[i] > 270)
            xs.append(x.clamp(0, 1))
            rows.append({"row": 2 * i + h, "patient_id": f"p{i:02d}", "hemisphere": side, "label": int(stroke),
                         "label_source": "test", "split": splits[i], "onset_to_mri_min": minutes[i]})
    return Hemispheres(torch.stack(xs), pd.DataFrame(rows), key=f"tiny{seed}")


# the quick profile's epoch budget, with small synthetic task sets so each test takes seconds
TINY = profiles.TrainProfile(max_epochs=6, patience=3, seeds=(0,), genesis_cubes=8, medical_per_epoch=8,
                             synthetic_eval=8)


@pytest.fixture(scope="module")
def cohort():
    return _cohort()


def _params(model, part):
    return [t.detach().clone() for m in model.parts()[part] for t in m.parameters()]


def test_grid_lists_sources_before_their_users_and_imagenet_only_in_2d():
    exps = grid()
    names = [e.name for e in exps]
    for i, e in enumerate(exps):
        if e.source():
            assert e.source() in names[:i], f"{e.name} runs before its source {e.source()}"
    assert {e.arch for e in exps if e.init == "imagenet"} == {"2d"}
    assert Experiment("3d", "stroke", "genesis").source() == "3d-genesis-random"
    assert Experiment("2d", "tss45", "transfer").source() == "2d-tss3-transfer"
    assert Experiment("2d", "attention", "transfer").source() == "2d-tss45-transfer"
    assert set(PREVIOUS) == {"tss3", "tss45", "attention"}
    assert not [e for e in grid(imagenet=False) if e.init == "imagenet"]


def test_a_phase_refuses_to_start_without_its_source(cohort, tmp_path):
    with pytest.raises(SourceMissing, match="2d-stroke-random"):
        Run(Experiment("2d", "tss3", "transfer"), cohort, tmp_path, "quick", 0)


def test_a_phase_whose_finished_source_has_no_weights_says_so_and_how_to_retrain_it(cohort, tmp_path):
    """A clone holds finished runs without checkpoints: a later phase must not start from nothing."""
    Run(Experiment("2d", "stroke", "random"), cohort, tmp_path, "quick", 0, max_epochs=1, progress=False,
        train_profile=TINY).fit()
    (tmp_path / "2d-stroke-random" / "best.pt").unlink()
    run = Run(Experiment("2d", "tss3", "transfer"), cohort, tmp_path, "quick", 0, max_epochs=1, progress=False,
              train_profile=TINY)
    with pytest.raises(SourceMissing, match="2d-stroke-random, which finished but whose weights are not here.*delete"):
        run.fit()
    assert not (tmp_path / "2d-tss3-transfer" / "summary.json").exists()


def test_phase_transitions_load_the_right_weights_and_freeze_the_right_parts(cohort, tmp_path):
    Run(Experiment("2d", "stroke", "random"), cohort, tmp_path, "quick", 0, max_epochs=1, progress=False,
        train_profile=TINY).fit()
    src = torch.load(tmp_path / "2d-stroke-random" / "best.pt", weights_only=True)["model"]

    run = Run(Experiment("2d", "tss3", "transfer"), cohort, tmp_path, "quick", 0, max_epochs=2, progress=False,
              train_profile=TINY)
    model, rep = run._model()
    assert model.frozen == ("stem", "layer1")
    assert torch.equal(model.state_dict()["layer3.0.conv1.weight"], src["layer3.0.conv1.weight"])
    assert not torch.equal(model.state_dict()["fc.weight"], src["fc.weight"])  # a new head for a new task
    assert rep.skipped_head == ["fc.weight", "fc.bias"]
    summary = run.fit()
    after = torch.load(tmp_path / "2d-tss3-transfer" / "best.pt", weights_only=True)["model"]
    for k in src:
        if k.startswith(("conv1.", "bn1.", "layer1.")):
            assert torch.equal(after[k], src[k]), f"frozen {k} moved"
    assert not torch.equal(after["layer4.1.conv2.weight"], src["layer4.1.conv2.weight"])
    assert summary["frozen"] == ["stem", "layer1"]

    Run(Experiment("2d", "tss45", "transfer"), cohort, tmp_path, "quick", 0, max_epochs=1, progress=False,
        train_profile=TINY).fit()
    p3 = torch.load(tmp_path / "2d-tss45-transfer" / "best.pt", weights_only=True)["model"]
    run4 = Run(Experiment("2d", "attention", "transfer"), cohort, tmp_path, "quick", 0, max_epochs=2, progress=False,
               train_profile=TINY)
    m4, rep4 = run4._model()
    assert set(m4.frozen) == set(m4.parts()) - {"attention"}
    assert torch.equal(m4.state_dict()["fc.weight"], p3["fc.weight"])  # same task: the head is kept
    run4.fit()
    p4 = torch.load(tmp_path / "2d-attention-transfer" / "best.pt", weights_only=True)["model"]
    changed = {k.split(".")[0] for k in p4 if p4[k].is_floating_point() and not torch.equal(p4[k], p3[k])}
    assert changed <= {"attention"}


def test_genesis_encoder_starts_the_3d_stroke_phase(tmp_path):
    c = _cohort()
    Run(Experiment("3d", "genesis", "random"), c, tmp_path, "quick", 0, max_epochs=1, progress=False, train_profile=TINY).fit()
    unet = torch.load(tmp_path / "3d-genesis-random" / "best.pt", weights_only=True)["model"]
    model, rep = Run(Experiment("3d", "stroke", "genesis"), c, tmp_path, "quick", 0, progress=False, train_profile=TINY)._model()
    assert rep.loaded and all(k.startswith("encoder.") for k in rep.loaded)
    assert torch.equal(model.state_dict()["encoder.down3.0.0.weight"], unet["encoder.down3.0.0.weight"])
    assert model.frozen == ()


def test_caching_the_frozen_stages_changes_no_number(cohort, tmp_path):
    exps = [Experiment("2d", "stroke", "random"), Experiment("2d", "tss3", "transfer"),
            Experiment("2d", "tss45", "transfer"), Experiment("2d", "attention", "transfer")]
    for cache in (True, False):
        for e in exps:
            run = Run(e, cohort, tmp_path / str(cache), "quick", 0, max_epochs=2, progress=False, train_profile=TINY,
                      cache_frozen=cache)
            run.fit()
            if e.phase != "stroke":
                assert (run._enc is not None) == cache  # phases 2-4 freeze leading stages
    for e in exps[1:]:
        a, b = (tmp_path / str(c) / e.name for c in (True, False))
        pd.testing.assert_frame_equal(pd.read_csv(a / "predictions.csv"), pd.read_csv(b / "predictions.csv"))
        cols = ["epoch", "train_loss", "val_loss", "val_auc"]
        pd.testing.assert_frame_equal(pd.read_csv(a / "epochs.csv")[cols], pd.read_csv(b / "epochs.csv")[cols])


def test_early_stopping_fires_on_a_plateau(cohort, tmp_path, monkeypatch):
    monkeypatch.setattr(Run, "_score", lambda self, model, data, *args: (0.5, 0.7))  # never improves after epoch 1
    run = Run(Experiment("2d", "stroke", "random"), cohort, tmp_path, "quick", 0, max_epochs=50, progress=False,
              train_profile=TINY)
    s = run.fit()
    assert s["epochs"] == run.tp.patience + 1 and s["best_epoch"] == 1


def test_a_killed_run_resumes_to_the_same_numbers(cohort, tmp_path):
    exp = Experiment("2d", "stroke", "random")
    whole = Run(exp, cohort, tmp_path / "a", "quick", 3, max_epochs=3, progress=False, train_profile=TINY).fit()
    with pytest.raises(KeyboardInterrupt):
        Run(exp, cohort, tmp_path / "b", "quick", 3, max_epochs=3, progress=False, train_profile=TINY).fit(stop_after=1)
    killed = pd.read_csv(tmp_path / "b" / exp.name / "epochs.csv")
    assert len(killed) == 1
    resumed = Run(exp, cohort, tmp_path / "b", "quick", 3, max_epochs=3, progress=False, train_profile=TINY).fit()
    # epoch 1 was not trained again: its row (with its own timing) survives
    assert pd.read_csv(tmp_path / "b" / exp.name / "epochs.csv")["train_seconds"][0] == killed["train_seconds"][0]
    cols = ["epoch", "train_loss", "val_loss", "val_auc", "best"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / exp.name / "epochs.csv")[cols],
                                  pd.read_csv(tmp_path / "b" / exp.name / "epochs.csv")[cols])
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "a" / exp.name / "predictions.csv"),
                                  pd.read_csv(tmp_path / "b" / exp.name / "predictions.csv"))
    assert whole["val_auc"] == resumed["val_auc"]


@pytest.mark.parametrize("where", ["training step", "validation"])
def test_a_nan_stops_the_run_naming_experiment_epoch_and_step_and_keeps_nothing_of_that_epoch(cohort, tmp_path,
                                                                                               monkeypatch, where):
    exp = Experiment("2d", "stroke", "random")
    # 16 training hemispheres, batch 16: each epoch runs the model in training mode twice (one
    # step, one precise-BN batch), then in evaluation mode on validation
    assert len(cohort.rows("train")) == exp.spec.batch_size
    calls = {"train": 0}
    build_model = Run._model

    def poisoned(self):
        m, rep = build_model(self)

        def hook(mod, inp, out):
            calls["train"] += mod.training
            epoch2 = calls["train"] >= 3
            if epoch2 and (mod.training if where == "training step" else not mod.training):
                return out * float("nan")
            return out
        m.register_forward_hook(hook)
        return m, rep
    monkeypatch.setattr(Run, "_model", poisoned)
    run = Run(exp, cohort, tmp_path, "quick", 0, max_epochs=4, progress=False, train_profile=TINY)
    with pytest.raises(NonFinite) as e:
        run.fit()
    msg = str(e.value)
    assert exp.name in msg and "epoch 2" in msg
    assert ("step 1 of 1" in msg) if where == "training step" else ("validation chunk 1 of 1" in msg)
    d = tmp_path / exp.name
    assert not (d / "summary.json").exists()
    assert len(pd.read_csv(d / "epochs.csv")) == 1  # epoch 2 left no row ...
    assert torch.load(d / "last.pt", weights_only=False)["state"]["epoch"] == 1  # ... and no checkpoint


def test_a_finished_run_is_read_back_not_retrained(cohort, tmp_path, monkeypatch):
    exp = Experiment("2d", "stroke", "random")
    first = Run(exp, cohort, tmp_path, "quick", 0, max_epochs=1, progress=False, train_profile=TINY).fit()
    monkeypatch.setattr(Run, "_model", lambda self: pytest.fail("retrained a finished run"))
    again = Run(exp, cohort, tmp_path, "quick", 0, max_epochs=1, progress=False, train_profile=TINY).fit()
    assert json.dumps(again, sort_keys=True) == json.dumps(first, sort_keys=True)
    # another seed is another run
    monkeypatch.undo()
    assert Run(exp, cohort, tmp_path, "quick", 1, max_epochs=1, progress=False, train_profile=TINY).key != first["key"]


def test_tumour_is_bright_on_flair_with_a_mask_inside_the_brain():
    x = torch.zeros(3, 26, 56, 28)
    x[:, 3:23, 5:51, 3:25] = 0.4
    y, mask = add_tumour(x, torch.Generator().manual_seed(0))
    assert y.shape == x.shape and 0 <= y.min() and y.max() <= 1
    assert mask.any() and not (mask & (x[1] == 0)).any()
    assert y[2][mask].mean() > x[2][mask].mean() + 0.05  # FLAIR
    assert y[1][mask].mean() > x[1][mask].mean() + 0.05  # b0


def test_a_tiny_grid_runs_end_to_end_on_the_cpu(tmp_path):
    c = _cohort()
    exps = grid(("2d", "3d"), imagenet=False)
    results = run_grid(exps, c, tmp_path, "quick", 0, progress=False, max_epochs=1)
    assert [r["experiment"] for r in results] == [e.name for e in exps]
    for e in exps:
        d = tmp_path / e.name
        s = json.loads((d / "summary.json").read_text())
        assert s["epochs"] == 1 and s["key"]
        assert s["provenance"]["torch"] == torch.__version__  # the machine that trained it
        if e.phase in ("stroke", "tss3", "tss45", "attention"):
            pred = pd.read_csv(d / "predictions.csv")
            assert set(pred["split"]) == {"val", "test"} and pred["prob"].between(0, 1).all()
            if e.phase != "stroke":
                assert (pred["label"] == 1).all()  # TSS phases use stroke hemispheres only
            pat = pd.read_csv(d / "patients.csv")
            assert pat["patient_id"].is_unique and np.isfinite(pat["prob"]).all()


def test_imagenet_rows_without_weights_are_skipped_with_the_reason(cohort, tmp_path, monkeypatch):
    monkeypatch.setenv("TSS_IMAGENET_WEIGHTS", str(tmp_path / "absent.pth"))
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    res = run_grid([Experiment("2d", "tss3", "imagenet")], cohort, tmp_path, "quick", 0, progress=False, max_epochs=1)
    assert "Nothing is downloaded" in res[0]["skipped"]
    assert "Nothing is downloaded" in json.loads((tmp_path / "2d-tss3-imagenet" / "skipped.json").read_text())["skipped"]


def test_precise_bn_makes_evaluation_match_training_statistics_and_spares_frozen_layers(cohort, tmp_path):
    run = Run(Experiment("2d", "tss3", "random"), cohort, tmp_path, "quick", 0, progress=False, train_profile=TINY)
    model, _ = run._model()
    model.freeze(model.EARLY)
    frozen_bn = {k: v.clone() for k, v in model.state_dict().items() if k.startswith("bn1.running")}
    with torch.no_grad():  # stale running statistics, as after fast-moving training
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d) and m.training:
                m.running_mean.add_(3.0)
    rows = torch.as_tensor(cohort.rows("train")[:8])  # one batch (tss3 batch size 8)
    model.train()
    run._precise_bn(model, rows)
    with torch.no_grad():
        train_mode = model(cohort.x[rows])
        model.eval()
        eval_mode = model(cohort.x[rows])
    # one batch: the recomputed statistics are that batch's (up to the unbiased variance)
    assert torch.allclose(eval_mode, train_mode, atol=0.05 * train_mode.abs().max().item() + 1e-3)
    for k, v in frozen_bn.items():
        assert torch.equal(model.state_dict()[k], v), f"frozen {k} recomputed"


def test_precise_bn_from_a_bounded_number_of_batches_still_undoes_stale_statistics(cohort, tmp_path, monkeypatch):
    # the bound: before each evaluation precise BN sees at most precise_bn_batches batches of the epoch
    seen = []
    monkeypatch.setattr(Run, "_precise_bn", lambda self, model, x: seen.append(len(x)))
    one = dataclasses.replace(TINY, precise_bn_batches=1)
    Run(Experiment("2d", "stroke", "random"), _cohort(n_patients=12), tmp_path, "quick", 0, max_epochs=2,
        progress=False, train_profile=one).fit()
    assert seen == [16, 16]  # one batch of 16 (of 16 training hemispheres) ...
    monkeypatch.undo()
    # ... and one batch of 8 out of 16 still undoes stale statistics for every example: evaluation
    # mode had collapsed (outputs nearly constant)
    run = Run(Experiment("2d", "tss3", "random"), cohort, tmp_path / "b", "quick", 0, progress=False, train_profile=one)
    model, _ = run._model()
    rows = torch.as_tensor(cohort.rows("train"))
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]

    def evaluate(stats_rows):
        with torch.no_grad():
            if stats_rows is not None:
                model.train()
                run._precise_bn(model, stats_rows)
            else:  # stale running statistics, as after fast-moving training
                for m in bns:
                    m.running_var.mul_(400.0)
            model.eval()
            return model(cohort.x[rows])

    full = evaluate(rows)
    stale = evaluate(None)
    some = evaluate(rows[torch.randperm(len(rows), generator=torch.Generator().manual_seed(0))[:8]])
    assert stale.std() < 0.2 * full.std()  # collapsed
    # the spread is back (the ranking of an untrained net on 8 examples' statistics is noisy:
    # the statistics of the batch it saw are exact, test_precise_bn_makes_evaluation_match_...)
    assert 0.5 < some.std() / full.std() < 2


def test_the_gpu_precision_path_bf16_cohort_and_autocast_runs_the_grid_on_the_cpu(tmp_path, monkeypatch):
    # on a GPU the cohort is resident in bf16 and every forward runs under bf16 autocast; the same
    # code path runs here on the CPU, so a dtype mismatch shows up in CI, not on the GPU machine
    c = _cohort()
    c = Hemispheres(c.x.bfloat16(), c.index, key="tiny-bf16")
    seen = set()
    build_model = Run._model

    def model_with_probe(self):
        m, rep = build_model(self)
        first = next(mod for mod in m.modules() if isinstance(mod, (torch.nn.Conv2d, torch.nn.Conv3d)))
        first.register_forward_hook(lambda mod, inp, out: seen.add((self.exp.arch, out.dtype)))
        return m, rep
    monkeypatch.setattr(Run, "_model", model_with_probe)
    # one run of every code path (each task, frozen stages cached, attention only). Where the CPU has no
    # native bf16 (AMD EPYC here: no avx512_bf16) torch emulates it, and one epoch of the 3D U-Net on 8
    # tiny cubes takes minutes: there the 3D part is left to CPUs with bf16 and to GPUs
    keep = {"2d-medical-random", "2d-stroke-random", "2d-tss3-transfer", "2d-tss45-transfer", "2d-attention-transfer"}
    archs = ("2d", "3d") if precision.cpu_has_bf16() else ("2d",)
    if "3d" in archs:
        keep |= {"3d-genesis-random", "3d-medical-random", "3d-stroke-genesis", "3d-tss3-transfer"}
    exps = [e for e in grid(archs, imagenet=False) if e.name in keep]
    assert len(exps) == len(keep)
    results = run_grid(exps, c, tmp_path, "quick", 0, progress=False, max_epochs=1, train_profile=TINY)
    assert [r["experiment"] for r in results] == [e.name for e in exps]
    assert seen == {(a, torch.bfloat16) for a in archs}
    for e in exps:
        s = json.loads((tmp_path / e.name / "summary.json").read_text())
        assert all(np.isfinite(v) for k, v in s.items() if k.endswith(("_auc", "_score", "_loss", "neg_mse")))
        if e.phase in ("stroke", "tss45"):
            assert pd.read_csv(tmp_path / e.name / "predictions.csv")["prob"].between(0, 1).all()


def test_genesis_is_validated_on_restoring_fixed_distorted_cubes(cohort, tmp_path):
    run = Run(Experiment("3d", "genesis", "random"), cohort, tmp_path, "quick", 0, progress=False, train_profile=TINY)
    x, y = run._eval_set("val", 123)
    assert x.shape == y.shape == (TINY.synthetic_eval, 3, *profiles.MODEL["quick"].genesis_cube)
    assert not torch.equal(x, y)  # the input is distorted, the target is the original
    x2, y2 = run._eval_set("val", 123)
    assert torch.equal(x, x2) and torch.equal(y, y2)  # the same set every epoch
    # the originals come from validation hemispheres only
    val = cohort.x[cohort.rows("val")]
    assert all(any(_contains(v, cube) for v in val) for cube in y)


def _contains(volume, cube) -> bool:
    D, H, W = cube.shape[1:]
    for z in range(volume.shape[1] - D + 1):
        for r in range(volume.shape[2] - H + 1):
            for c in range(volume.shape[3] - W + 1):
                if torch.equal(volume[:, z:z + D, r:r + H, c:c + W], cube):
                    return True
    return False


def test_throughput_compares_only_full_size_gpu_hemisphere_runs_with_the_ceiling():
    from tss import paper
    from tss.train import report

    rows = []
    for seed in range(5):
        rows += [{"experiment": "2d-stroke-random", "arch": "2d", "phase": "stroke", "task": "stroke", "seed": seed,
                  "device": "cuda:0", "profile": "full", "wall_seconds": 30.0, "epochs": 20, "examples_per_s": 300.0},
                 {"experiment": "3d-genesis-random", "arch": "3d", "phase": "genesis", "task": "restore", "seed": seed,
                  "device": "cuda:0", "profile": "full", "wall_seconds": 60.0, "epochs": 40, "examples_per_s": 2000.0}]
    df = pd.DataFrame(rows)
    t = report.throughput(df).set_index("phase")
    assert t.loc["stroke", "of_ceiling"] == pytest.approx(300 / paper.H100_CEILING_BF16_BATCH8["2d"]["hemis_per_s"])
    assert np.isnan(t.loc["genesis", "of_ceiling"])  # sub-volumes: another input, no ceiling
    assert t.loc["stroke", "wall_minutes"] == pytest.approx(2.5) and t.loc["stroke", "seeds"] == 5
    assert "within" in report.grid_verdict(df) and "meets" in report.grid_verdict(df)  # 7.5 min, 81%
    slow = df.assign(examples_per_s=200.0, wall_seconds=df["wall_seconds"] * 3)
    assert "outside" in report.grid_verdict(slow) and "misses" in report.grid_verdict(slow)
    cpu = df.assign(device="cpu", profile="quick")
    assert report.throughput(cpu)["of_ceiling"].isna().all()
    assert "not been run" in report.grid_verdict(cpu)


def test_the_train_command_runs_the_chosen_part_of_the_grid_and_reads_it_back(tmp_path, monkeypatch, capsys):
    from tss import cli

    c = _cohort()
    monkeypatch.setattr(Hemispheres, "load", classmethod(lambda cls, cache, downsample, device: c))
    monkeypatch.setitem(profiles.TRAIN, "quick", dataclasses.replace(TINY, max_epochs=1))
    argv = ["train", "--profile", "quick", "--archs", "2d", "--phases", "stroke,tss3", "--inits", "random,transfer",
            "--out", str(tmp_path)]
    assert cli.main(argv) == 0
    done = sorted(p.parent.name for p in tmp_path.glob("seed0/*/summary.json"))
    assert done == ["2d-stroke-random", "2d-tss3-random", "2d-tss3-transfer"]
    assert "2d-tss3-transfer" in capsys.readouterr().out  # the table of what ran
    stamp = (tmp_path / "seed0" / "2d-tss3-transfer" / "summary.json").stat().st_mtime_ns
    assert cli.main(argv) == 0  # read back, not retrained
    assert (tmp_path / "seed0" / "2d-tss3-transfer" / "summary.json").stat().st_mtime_ns == stamp
    capsys.readouterr()
    for option, typo in (("--inits", "random,trasnfer"), ("--phases", "tss4"), ("--archs", "2D")):
        bad = [typo if a == argv[argv.index(option) + 1] else a for a in argv]
        assert cli.main(bad) == 2  # an error that lists the valid names, not a selection of nothing
        assert "expected 'all' or some of" in capsys.readouterr().err


def test_3d_models_train_in_channels_last_3d_on_the_cpu_with_the_same_outputs(cohort, tmp_path):
    run = Run(Experiment("3d", "stroke", "random"), cohort, tmp_path, "quick", 0, progress=False, train_profile=TINY)
    model, _ = run._model()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv3d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last_3d)
    plain = Run(Experiment("3d", "stroke", "random"), cohort, tmp_path, "quick", 0, progress=False,
                train_profile=TINY)._model()[0].to(memory_format=torch.contiguous_format)
    model.eval(), plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(cohort.x[:4]), plain(cohort.x[:4]), rtol=1e-4, atol=1e-5)
    two, _ = Run(Experiment("2d", "stroke", "random"), cohort, tmp_path, "quick", 0, progress=False,
                 train_profile=TINY)._model()
    assert next(m for m in two.modules() if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous()


def test_the_training_chapter_reads_the_cpu_ratios_make_bench_wrote(tmp_path):
    from tss.train import report

    assert report.cpu_speedups(tmp_path).empty
    (tmp_path / "loop-cpu.json").write_text(json.dumps({"experiment": "2d-stroke-random", "train_hemispheres": 240,
                                                        "precision": "bf16", "loop_over_bare": 0.87, "target": 0.8}))
    (tmp_path / "quickgrid-cpu.json").write_text(json.dumps({"patients": 80, "epochs": 2, "after_precision": "bf16",
                                                             "total_seconds": {"before": 240, "after": 169},
                                                             "speedup": 240 / 169, "target": 3.0}))
    (tmp_path / "lanes-cpu.json").write_text(json.dumps({"threads": 2, "results": [
        {"arch": "2d", "shape": [26, 56, 28], "lanes": 2, "precision": "bf16", "lanes_over_one": 1.31},
        {"arch": "3d", "shape": [26, 56, 28], "lanes": 2, "precision": "bf16", "lanes_over_one": 0.95}]}))
    t = report.cpu_speedups(tmp_path)
    assert t["ratio"].round(2).tolist() == [0.87, 1.42, 1.31, 0.95] and t["met"].tolist() == [True, False, True, False]
    assert "240 s -> 169 s" in t["measure"].iloc[1]
    assert "2D training steps at 56x28, 2 one-thread runs side by side / one 2-thread run" in t["measure"].iloc[2]


def test_training_pages_show_the_larger_profiles_first_and_this_builds_runs_last(tmp_path):
    from tss.train import report

    assert list(report.views(tmp_path, "quick")) == ["quick"]
    d = tmp_path / "lowres" / "runs" / "seed0" / "2d-stroke-random"
    d.mkdir(parents=True)
    (d / "summary.json").write_text("{}")
    v = report.views(tmp_path, "quick", tmp_path / "elsewhere")
    assert list(v) == ["lowres", "quick"] and v["quick"] == tmp_path / "elsewhere"
    assert list(report.views(tmp_path, "lowres")) == ["lowres"]


def _epochs_csv(root, name, seed=0, auc=(0.5, 0.6), loss=(0.7, 0.6)):
    d = root / f"seed{seed}" / name
    d.mkdir(parents=True)
    pd.DataFrame({"epoch": range(1, len(auc) + 1), "train_loss": loss, "val_loss": [v + 0.05 for v in loss],
                  Experiment.parse(name).spec.monitor: auc, "best": [a == max(auc) for a in auc]}
                 ).to_csv(d / "epochs.csv", index=False)


def test_learning_curves_of_a_grid_whose_first_run_is_missing_draw_without_a_warning(tmp_path):
    # a warning printed on a page carries the build machine's path, which the book must not show
    import warnings

    from tss.train import report

    _epochs_csv(tmp_path, "2d-tss3-transfer")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fig = report.plot_curves(tmp_path, ["2d-tss3-random", "2d-tss3-transfer"])
    assert [ax.get_title() for ax in fig.axes if ax.get_title()] == ["2d-tss3-transfer"]  # no empty "not run" panel
    assert "not run: 2d-tss3-random" in fig._suptitle.get_text()
    assert all(ax.get_legend() is None for ax in fig.axes) and len(fig.legends) == 1  # one legend, off the curves


def test_learning_curves_share_the_auc_range_mark_chance_and_colour_each_seed_alike(tmp_path):
    from tss.train import report

    _epochs_csv(tmp_path, "2d-tss3-transfer", 0, auc=(0.44, 0.46, 0.45), loss=(0.6931, 0.6925, 0.6928))
    _epochs_csv(tmp_path, "2d-tss3-transfer", 1, auc=(0.5, 0.7, 0.65), loss=(0.7, 0.6, 0.55))
    _epochs_csv(tmp_path, "2d-tss3-random", 0, auc=(0.55, 0.9, 0.8), loss=(0.7, 0.5, 0.4))
    fig = report.plot_curves(tmp_path, ["2d-tss3-transfer", "2d-tss3-random"])
    loss_t, auc_t, auc_r = fig.axes[0], fig.axes[2], fig.axes[3]
    assert auc_t.get_ylim() == auc_r.get_ylim() and auc_t.get_ylim()[1] == 1.0 and auc_t.get_ylim()[0] <= 0.42
    assert any(list(ln.get_ydata()) == [0.5, 0.5] for ln in auc_t.get_lines())  # the chance line
    lo, hi = loss_t.get_ylim()
    assert hi - lo >= report.MIN_LOSS_SPAN  # a 0.0006 wobble stays flat
    # seed 0 has one colour in every panel, seed 1 another
    c0 = {ln.get_color() for ax in (auc_t, auc_r) for ln in ax.get_lines()[:1]}
    assert len(c0) == 1 and auc_t.get_lines()[2].get_color() != auc_t.get_lines()[0].get_color()


def test_an_experiment_is_parsed_from_its_name_and_nothing_else_is():
    assert Experiment.parse("3d-tss45-transfer") == Experiment("3d", "tss45", "transfer")
    assert all(Experiment.parse(e.name) == e for e in grid())
    for bad in ("2d-tss45", "4d-tss45-random", "2d-tss4-random", "2d-tss45-pretrained", "lee-et-al-2020"):
        with pytest.raises(ValueError, match="not an experiment name"):
            Experiment.parse(bad)


def test_learning_curves_of_many_runs_wrap_into_rows_that_stay_readable(tmp_path):
    from tss.train import report

    names = [e.name for e in grid(("2d",), imagenet=False)][:7]
    for n in names:
        _epochs_csv(tmp_path, n)
    fig = report.plot_curves(tmp_path, names)
    axes = np.array(fig.axes).reshape(4, report.PANELS_PER_ROW)  # two rows of runs: loss above score
    assert [ax.get_title() for ax in axes[0]] == names[:4]
    assert [ax.get_title() for ax in axes[2, :3]] == names[4:]
    assert not axes[2, 3].axison and not axes[3, 3].axison  # the short last row leaves no empty frame
    assert fig.get_size_inches()[0] <= 3.2 * report.PANELS_PER_ROW


def test_the_runs_table_leaves_out_columns_that_no_shown_run_has():
    from tss.train import report

    df = pd.DataFrame({"experiment": ["2d-stroke-random", "2d-tss3-transfer"], "seed": [0, 0], "epochs": [3, 4],
                       "val_auc": [0.7, 0.6], "val_neg_mse": [np.nan, np.nan], "wall_seconds": [10.0, 5.0]})
    t = report.table(df)
    assert "val_neg_mse" not in t and list(t.columns) == ["seeds", "epochs", "val_auc", "wall_seconds"]


def test_the_runs_table_for_a_page_puts_each_mean_beside_its_seeds_sd_in_one_cell():
    from tss.train import report

    df = pd.DataFrame({"experiment": ["2d-tss3-random", "2d-tss3-random", "3d-tss3-random"], "seed": [0, 1, 0],
                       "epochs": [12, 16, 44], "best_epoch": [2, 6, 34], "val_auc_patient": [0.5, 0.6, np.nan],
                       "test_auc_patient": [0.51, 0.52, 0.62], "wall_seconds": [517.0, 657.0, 3137.0]})
    t = report.table(df)
    assert "epochs sd" in t  # two seeds of one experiment: table() adds the sd columns
    r = report.readable(t)
    assert list(r.columns) == ["experiment", "seeds", "epochs", "best epoch", "val auc patient",
                               "test auc patient", "wall seconds"]
    two, one = r.iloc[0], r.iloc[1]
    assert two["experiment"] == "2d-tss3-random" and two["seeds"] == 2
    assert two["epochs"] == "14.0 ± 2.8" and two["test auc patient"] == "0.52 ± 0.01"
    assert one["test auc patient"] == "0.62" and one["val auc patient"] == "-" and one["wall seconds"] == "3137"


def test_a_second_process_waits_for_the_run_folder_it_shares_then_reads_the_finished_run(cohort, tmp_path, capsys):
    import threading

    from tss.atomic import exclusive

    run = Run(Experiment("2d", "stroke", "random"), cohort, tmp_path, "quick", 0, max_epochs=1, progress=False,
              train_profile=TINY)
    run.dir.mkdir(parents=True)
    got = []
    with exclusive(run.dir / ".lock"):  # another process is training this folder
        t = threading.Thread(target=lambda: got.append(run.fit()), daemon=True)
        t.start()
        t.join(timeout=3)
        assert t.is_alive() and not (run.dir / "config.json").exists()  # it waits; it trains nothing
        assert "another process is training it" in capsys.readouterr().out
    t.join(timeout=300)
    assert not t.is_alive() and got[0]["experiment"] == "2d-stroke-random" and run.done()


def test_a_filesystem_without_flock_warns_and_goes_on_unlocked(tmp_path, monkeypatch):
    import errno
    import fcntl

    from tss.atomic import exclusive

    def no_lock(f, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_lock)
    ran = []
    with pytest.warns(UserWarning, match="no lock on this filesystem"):
        with exclusive(tmp_path / ".lock"):
            ran.append(True)
    assert ran == [True]
