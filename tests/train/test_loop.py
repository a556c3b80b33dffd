"""The training loop (tss.train.loop): phase transitions, freezing, early stopping, resumption,
precise batch norm, locks, the grid end to end."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch
from tiny import TINY, tiny_cohort

from tss import precision, profiles
from tss.train import Experiment, Hemispheres, NonFinite, Run, SourceMissing, grid, run_grid


def _params(model, part):
    return [t.detach().clone() for m in model.parts()[part] for t in m.parameters()]




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
    c = tiny_cohort()
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


def test_a_tiny_grid_runs_end_to_end_on_the_cpu(tmp_path):
    c = tiny_cohort()
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
    Run(Experiment("2d", "stroke", "random"), tiny_cohort(n_patients=12), tmp_path, "quick", 0, max_epochs=2,
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
    c = tiny_cohort()
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


def test_the_train_command_runs_the_chosen_part_of_the_grid_and_reads_it_back(tmp_path, monkeypatch, capsys):
    from tss import cli

    c = tiny_cohort()
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
