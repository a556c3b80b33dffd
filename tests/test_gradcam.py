"""Grad-CAM of both architectures, its overlap with the lesion, the study over trained runs, Fig. 9."""

from __future__ import annotations

import json
import math

import matplotlib
import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tss import gradcam
from tss.models import Attention3DNet, SliceAttentionNet
from tss.preprocess import pipeline
from tss.train import Hemispheres

matplotlib.use("Agg")

S = 26


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _clean(model: nn.Module) -> None:
    """Eval mode, no hook left on any module, no parameter gradient."""
    assert not model.training
    for name, m in model.named_modules():
        for hooks in ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks"):
            assert not getattr(m, hooks), f"{hooks} left on {name or 'the model'}"
    assert all(p.grad is None for p in model.parameters())


@pytest.mark.parametrize("arch", ["2d", "3d"])
def test_cam_shape_range_and_model_left_clean(arch):
    # the quick profile's input sizes: 56 x 28 (2D) and 28 x 14 (3D)
    model, x = ((SliceAttentionNet(n_slices=S), torch.rand(1, 3, S, 56, 28)) if arch == "2d"
                else (Attention3DNet(), torch.rand(2, 3, S, 28, 14)))
    model.train()
    before = x.clone()
    with torch.no_grad():  # a caller's no_grad does not stop it
        c = gradcam.cam(model, x)
    assert c.shape == (len(x), S, *x.shape[-2:]) and c.dtype == np.float32
    assert c.min() >= 0 and np.allclose(c.reshape(len(x), -1).max(1), 1)  # one scale per hemisphere
    _clean(model)
    assert torch.equal(x, before) and not x.requires_grad and x.grad is None


def test_cam_works_when_everything_before_the_target_layer_is_frozen():
    model = Attention3DNet().train_only(["fc"])  # encoder frozen: its output needs no gradient
    c = gradcam.cam(model, torch.rand(1, 3, S, 28, 14))
    assert c.max() == pytest.approx(1)
    _clean(model)
    assert all(not p.requires_grad for p in model.encoder.parameters())  # freezing untouched


class _Toy(nn.Module):
    """conv -> ReLU (the target layer) -> mean -> linear, slice-wise (2D) or volumetric (3D).
    ``pool``: a 2x max pooling first, so the target layer sits at half the input's in-plane size."""

    def __init__(self, slicewise: bool, pool: bool = False):
        super().__init__()
        Conv = nn.Conv2d if slicewise else nn.Conv3d
        self.slicewise, self.pool = slicewise, pool
        self.target = nn.Sequential(Conv(3, 4, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(4, 1)

    def cam_target_layers(self):
        return [self.target]

    def forward(self, x):
        B, C, S_, H, W = x.shape
        if self.slicewise:
            x = x.permute(0, 2, 1, 3, 4).reshape(B * S_, C, H, W)
        if self.pool:
            x = F.max_pool2d(x, 2) if self.slicewise else F.max_pool3d(x, (1, 2, 2))
        f = self.target(x)
        pooled = f.view(B, S_, 4, -1).mean((1, 3)) if self.slicewise else f.flatten(2).mean(-1)
        return self.fc(pooled).squeeze(1)


@pytest.mark.parametrize("slicewise", [True, False], ids=["2d", "3d"])
def test_cam_is_gradcam_with_one_channel_weight_per_hemisphere(slicewise):
    """At full resolution (no upsampling) the CAM is relu(sum_c w_c A_c) / max with w_c the mean
    gradient over the whole hemisphere (all slices, for the slice-wise model)."""
    model, x = _Toy(slicewise), torch.rand(2, 3, 6, 8, 4)
    got = gradcam.cam(model, x)
    acts = []
    h = model.target.register_forward_hook(lambda m, i, o: acts.append(o))
    out = model(x)
    h.remove()
    a = acts[0]
    (g,) = torch.autograd.grad(out.sum(), a)
    if slicewise:  # (B*S, C, h, w) -> (B, C, S, h, w)
        a, g = (t.view(2, 6, 4, 8, 4).transpose(1, 2) for t in (a, g))
    ref = F.relu((g.mean((2, 3, 4), keepdim=True) * a).sum(1)).detach()
    ref = ref / ref.flatten(1).max(1).values[:, None, None, None]
    np.testing.assert_allclose(got, ref.numpy(), atol=1e-5)


def _blob_volume(z, y, x, size=(2, 4, 4)):
    vol = 0.3 + 0.05 * torch.rand(1, 3, S, 32, 16)
    mask = np.zeros((S, 32, 16), dtype=np.float32)
    sl = (slice(z, z + size[0]), slice(y, y + size[1]), slice(x, x + size[2]))
    vol[(0, 0) + sl] = 0.9
    mask[sl] = 1
    return vol, mask


@pytest.mark.parametrize("slicewise", [True, False], ids=["2d", "3d"])
def test_cam_follows_a_planted_blob(slicewise):
    """A model that only responds to bright DWI (its target layer is relu(DWI - 0.5) at half the
    in-plane resolution): its CAM, upsampled to the input, lands on the blob and moves with it."""
    model = _Toy(slicewise, pool=True)
    with torch.no_grad():
        conv = model.target[0]
        conv.weight.zero_()
        conv.weight[(slice(None), 0) + (1,) * (conv.weight.dim() - 2)] = 1.0  # the kernel's centre, DWI
        conv.bias.fill_(-0.5)                                                # background 0.3-0.35: silent
        model.fc.weight.fill_(1.0)
    x1, m1 = _blob_volume(5, 4, 2)
    x2, m2 = _blob_volume(18, 22, 10)
    c1, c2 = gradcam.cam(model, torch.cat([x1, x2]))
    # trilinear upsampling of the half-resolution map, aligned with the input (align_corners=False):
    # the 2 x 2 half-resolution block of the blob becomes a 6 x 6 patch with these weights
    edge = np.array([0.25, 0.75, 1, 1, 0.75, 0.25])
    for z in (5, 6):
        np.testing.assert_allclose(c1[z, 3:9, 1:7], np.outer(edge, edge), atol=1e-6)
    assert c1.sum() == pytest.approx(2 * np.outer(edge, edge).sum(), rel=1e-5)
    for c, own, other in ((c1, m1, m2), (c2, m2, m1)):
        assert gradcam.overlap(c, own)["energy_in_lesion"] > 0.5
        assert gradcam.overlap(c, own)["hit"] == 1.0 and gradcam.overlap(c, own)["peak_in_lesion"] == 1.0
        assert gradcam.overlap(c, other)["energy_in_lesion"] < 0.05
        assert gradcam.overlap(c, other)["hit"] == 0.0
    # a blob-free control: nothing lights up, so there is no overlap to speak of
    assert math.isnan(gradcam.overlap(gradcam.cam(model, _blob_volume(0, 0, 0, (0, 0, 0))[0])[0], m1)["energy_in_lesion"])


def test_overlap_exact_numbers():
    mask = np.zeros((2, 5, 5))
    mask[0, 2, 2] = 1                  # dilated in-plane: slice 0, rows and columns 1-3
    cam = np.zeros((2, 5, 5))
    cam[0, 2, 2] = 1.0                 # in the lesion
    cam[0, 1, 1] = 0.6                 # next to it (dilated region), high
    cam[0, 4, 4] = 0.5                 # away from it, high (>= 0.5 counts)
    cam[1, 2, 2] = 0.4                 # the next slice: not dilated across slices, low
    o = gradcam.overlap(cam, mask)
    assert o["energy_in_lesion"] == pytest.approx(1.0 / 2.5)
    assert o["high_in_lesion"] == pytest.approx(2 / 3) and o["hit"] == 1.0 and o["peak_in_lesion"] == 1.0

    cam[0, 2, 2], cam[0, 4, 4], cam[1, 2, 2] = 0.8, 1.0, 0.9  # the peak moves out; slice 1 becomes high
    o = gradcam.overlap(cam, mask)
    assert o["energy_in_lesion"] == pytest.approx(0.8 / 3.3)
    assert o["high_in_lesion"] == pytest.approx(2 / 4) and o["hit"] == 0.0 and o["peak_in_lesion"] == 0.0

    frac = mask * 0.25                      # a pooled mask: energy weighted by the lesion share
    assert gradcam.overlap(cam, frac)["energy_in_lesion"] == pytest.approx(0.25 * 0.8 / 3.3)
    assert gradcam.overlap(cam, frac)["high_in_lesion"] == pytest.approx(2 / 4)

    for empty in (gradcam.overlap(cam, np.zeros_like(mask)), gradcam.overlap(np.zeros_like(cam), mask)):
        assert set(empty) == {"energy_in_lesion", "high_in_lesion", "hit", "peak_in_lesion"}
        assert all(math.isnan(v) for v in empty.values())
    with pytest.raises(ValueError, match="shape"):
        gradcam.overlap(cam, mask[:1])


def test_representative_slice():
    mask, cam = np.zeros((4, 3, 3)), np.zeros((4, 3, 3))
    mask[1, 0, 0] = 1
    mask[2, :2, :2] = 1
    cam[3] = 1
    assert gradcam.representative_slice(mask, cam) == 2
    assert gradcam.representative_slice(np.zeros_like(mask), cam) == 3
    assert gradcam.representative_slice(None, cam) == 3
    with pytest.raises(ValueError):
        gradcam.representative_slice(np.zeros_like(mask), np.zeros_like(cam))


def _write_patient(cache_dir, pid, lesion=None):
    """A cached patient as preprocess writes it, reduced to what lesion_hemispheres reads."""
    (cache_dir / "patients").mkdir(parents=True, exist_ok=True)
    arrays = {"lesion": lesion} if lesion is not None else {"volume": np.zeros((3, 224, 224, S), np.float16)}
    np.savez_compressed(cache_dir / "patients" / f"{pid}.npz", **arrays)
    (cache_dir / "patients" / f"{pid}.json").write_text(json.dumps({"patient_id": pid}))


def _lesion(side: str) -> np.ndarray:
    """A lesion 12 mm from the midline on one side (RAS: x < 112 is the patient's left)."""
    les = np.zeros((224, 224, S), dtype=bool)
    xs = slice(30, 42) if side == "left" else slice(224 - 42, 224 - 30)
    les[xs, 100:108, 12] = True
    return les


def test_lesion_hemispheres_are_mirrored_and_pooled_like_the_cohort(tmp_path):
    _write_patient(tmp_path, "L", _lesion("left"))
    _write_patient(tmp_path, "R", _lesion("right"))
    _write_patient(tmp_path, "none")
    left, right = gradcam.lesion_hemispheres(tmp_path, "L"), gradcam.lesion_hemispheres(tmp_path, "R")
    assert left.shape == (2, S, 224, 112) and left.dtype == np.float32
    assert left[0].sum() == 12 * 8 and left[1].sum() == 0 and right[0].sum() == 0
    assert np.array_equal(left[0], right[1])                      # mirrored onto the same positions
    assert left[0, 12, 100:108, 30:42].all()                      # (slice, y, x from the lateral edge)
    pooled = gradcam.lesion_hemispheres(tmp_path, "L", downsample=4)
    assert pooled.shape == (2, S, 56, 28)
    assert pooled.sum() == pytest.approx(12 * 8 / 16) and pooled.max() == 1.0 and 0 < pooled[pooled > 0].min() < 1
    assert not gradcam.lesion_hemispheres(tmp_path, "none", 8).any()


def _cohort(H, W, pids, key):
    rows = [{"row": 2 * i + h, "patient_id": p, "hemisphere": side, "label": int(side == "left"),
             "label_source": "test", "split": "test", "onset_to_mri_min": 100}
            for i, p in enumerate(pids) for h, side in enumerate(("left", "right"))]
    return Hemispheres(torch.rand(len(rows), 3, S, H, W), pd.DataFrame(rows), key=key)


def test_cam_study_over_saved_runs(tmp_path):
    cache, runs = tmp_path / "cache", tmp_path / "runs"
    for p in ("a", "b"):
        _write_patient(cache, p, _lesion("left"))
    cohorts = {"2d": _cohort(56, 28, ["a", "b"], "k2"), "3d": _cohort(28, 14, ["a", "b"], "k3")}
    for name, model in (("2d-tss45-transfer", SliceAttentionNet(S)), ("3d-tss45-genesis", Attention3DNet())):
        (runs / name).mkdir(parents=True)
        torch.save({"model": model.state_dict(), "epoch": 1}, runs / name / "best.pt")
    (runs / "3d-tss45-genesis" / "config.json").write_text(json.dumps({"data_key": "k3"}))

    df = gradcam.cam_study(runs, ["2d-tss45-transfer", "3d-tss45-genesis"], cohorts, cache, max_patients=1,
                           progress=False)
    assert list(df.columns) == ["patient_id", "hemisphere", "experiment", "energy_in_lesion", "high_in_lesion",
                                "hit", "peak_in_lesion", "prob"]
    assert df[["patient_id", "hemisphere"]].drop_duplicates().values.tolist() == [["a", "left"]]  # stroke only
    assert df["experiment"].tolist() == ["2d-tss45-transfer", "3d-tss45-genesis"]
    assert df["energy_in_lesion"].between(0, 1).all() and df["prob"].between(0, 1).all()
    assert df["hit"].isin([0.0, 1.0]).all()

    with pytest.raises(FileNotFoundError, match="2d-tss3-random"):
        gradcam.cam_study(runs, ["2d-tss3-random"], cohorts, cache, progress=False)
    with pytest.raises(ValueError, match="3d-tss45-genesis"):   # a cohort of other data
        gradcam.cam_study(runs, ["3d-tss45-genesis"], {"3d": _cohort(28, 14, ["a"], "other")}, cache,
                          progress=False)
    with pytest.raises(ValueError, match="not a hemisphere classifier"):
        gradcam.cam_study(runs, ["3d-genesis-random"], cohorts, cache, progress=False)


def test_figure9_draws_dwi_and_flair_with_the_cam(tmp_path):
    import matplotlib.pyplot as plt

    x, mask = _blob_volume(10, 8, 4)
    cam = np.zeros_like(mask)
    cam[9:13, 6:14, 2:10] = 1
    ex = [{"x": x[0].numpy(), "cam": cam, "mask": mask, "title": "2D pretrained"},
          {"x": x[0].numpy(), "cam": cam, "mask": mask * 0.3, "title": "3D scratch", "slice": 4}]
    fig = gradcam.figure9(ex)
    titles = [(ax.get_ylabel(), ax.get_title()) for ax in fig.axes if ax.get_title()]
    assert titles == [("2D pretrained", "DWI b1000, slice 10"), ("", "FLAIR, slice 10"),
                      ("3D scratch", "DWI b1000, slice 4"), ("", "FLAIR, slice 4")]
    fig.savefig(tmp_path / "fig9.png")
    plt.close(fig)


def test_an_external_case_is_normalised_with_the_cohort_landmarks(tmp_path):
    """The real-case path: a patient outside the cohort comes back as [0, 1] hemispheres pooled like
    the cohort, with its lesion in the hemisphere the lesion is in."""
    rng = np.random.default_rng(0)
    vol = np.zeros((3, 224, 224, 26), np.float32)
    brain = np.zeros((224, 224, 26), bool)
    brain[40:184, 30:200, 3:23] = True
    vol[:, brain] = rng.uniform(50, 150, (3, brain.sum()))
    lesion = np.zeros_like(brain)
    lesion[60:80, 100:120, 10:14] = True  # x < 112: the patient's right (RAS), hemisphere index 1
    pats = tmp_path / "ext" / "patients"
    pats.mkdir(parents=True)
    np.savez(pats / "p1.npz", volume=vol.astype(np.float16), brain=brain, lesion=lesion)
    (pats / "p1.json").write_text("{}")
    landmarks = pipeline.learn_landmarks(vol, brain)
    (tmp_path / "cohort" / "cohort").mkdir(parents=True)
    (tmp_path / "cohort" / "cohort" / "cohort.json").write_text(
        json.dumps({"landmarks": {k: v.tolist() for k, v in landmarks.items()}}))
    ext = gradcam.external_hemispheres(tmp_path / "ext", "p1", tmp_path / "cohort", downsample=4)
    assert tuple(ext["x"].shape) == (2, 3, 26, 56, 28) and ext["mask"].shape == (2, 26, 56, 28)
    assert 0 <= ext["x"].min() and ext["x"].max() <= 1 and ext["x"].max() > 0.3
    side = int(ext["mask"].reshape(2, -1).sum(1).argmax())
    assert ext["mask"][1 - side].sum() == 0
    direct = gradcam.lesion_hemispheres(tmp_path / "ext", "p1", 4)
    assert np.array_equal(ext["mask"], direct)


def test_figure9_examples_survive_the_round_trip_through_their_committed_file(tmp_path):
    from tss import gradcam

    rng = np.random.default_rng(0)
    ex = [{"x": rng.random((3, 26, 14, 7), dtype=np.float32), "cam": rng.random((26, 14, 7), dtype=np.float32),
           "mask": rng.random((26, 14, 7)) > 0.8, "title": "2d-attention-transfer (lowres)"},
          {"x": rng.random((3, 26, 7, 4), dtype=np.float32), "cam": rng.random((26, 7, 4), dtype=np.float32),
           "mask": None, "title": "3d", "slice": 5}]
    gradcam.save_examples(tmp_path / "f.npz", ex)
    back = gradcam.load_examples(tmp_path / "f.npz")
    assert [b["title"] for b in back] == [e["title"] for e in ex]
    for b, e in zip(back, ex):
        np.testing.assert_allclose(b["x"], e["x"], atol=1e-3)  # float16: three decimals
        np.testing.assert_allclose(b["cam"], e["cam"], atol=1e-3)
    assert np.array_equal(back[0]["mask"], ex[0]["mask"]) and back[1]["mask"] is None
    assert back[1]["slice"] == 5 and "slice" not in back[0]


def test_results_measured_in_another_session_are_kept_and_remeasured_ones_replaced(tmp_path):
    """A paper-scale grid is trained over several sessions and only its small files survive: the
    overlap table and the stored CAMs of experiments whose checkpoints are gone must stay, those
    measured again must be replaced (not duplicated), in the page's order of experiments."""
    order = ["2d-tss45-random", "2d-attention-transfer", "3d-tss45-random", "3d-attention-transfer"]
    table = tmp_path / "overlap.csv"
    first = pd.DataFrame({"experiment": ["3d-attention-transfer", "3d-tss45-random", "3d-tss45-random"],
                          "patient_id": ["a", "a", "b"], "hit": [1.0, 0.0, 1.0]})
    assert gradcam.merge_table(first, table, order)["experiment"].tolist() == [
        "3d-tss45-random", "3d-tss45-random", "3d-attention-transfer"]  # nothing stored yet
    first.to_csv(table, index=False)
    now = pd.DataFrame({"experiment": ["2d-attention-transfer", "3d-tss45-random"], "patient_id": ["a", "a"],
                        "hit": [0.0, 0.5]})
    got = gradcam.merge_table(now, table, order)
    assert got["experiment"].tolist() == ["2d-attention-transfer", "3d-tss45-random", "3d-attention-transfer"]
    assert got.loc[got["experiment"] == "3d-tss45-random", "hit"].tolist() == [0.5]  # replaced, not added
    assert got.loc[got["experiment"] == "3d-attention-transfer", "hit"].tolist() == [1.0]  # kept

    rng = np.random.default_rng(0)

    def ex(e, v):
        return {"x": np.full((3, 2, 4, 2), v, np.float32), "cam": rng.random((2, 4, 2), dtype=np.float32),
                "mask": None, "title": e, "experiment": e}

    cams = tmp_path / "cams.npz"
    gradcam.save_examples(cams, [ex("3d-attention-transfer", 0.25), ex("2d-tss45-random", 0.5)])
    merged = gradcam.merge_examples([ex("2d-tss45-random", 0.75), ex("3d-tss45-random", 1.0)], cams, order)
    assert [e["experiment"] for e in merged] == ["2d-tss45-random", "3d-tss45-random", "3d-attention-transfer"]
    assert [float(e["x"].flat[0]) for e in merged] == [0.75, 1.0, 0.25]
    gradcam.save_examples(cams, merged)
    assert [e["experiment"] for e in gradcam.load_examples(cams)] == [e["experiment"] for e in merged]


def test_the_hit_rate_has_an_exact_interval_that_does_not_collapse_at_zero():
    from tss.gradcam import hit_rate

    rate, (lo, hi), n = hit_rate([0.0] * 89 + [np.nan] * 3)  # three hemispheres without a lesion
    assert (rate, lo, n) == (0.0, 0.0, 89)
    assert hi == pytest.approx(0.0406, abs=5e-4)  # Clopper-Pearson, 0 of 89
    rate, (lo, hi), n = hit_rate([1, 0, 1, 1])
    assert rate == 0.75 and 0.19 < lo < 0.2 and 0.99 < hi < 1.0


def test_a_run_under_the_logit_reading_is_loaded_with_it(tmp_path):
    """A checkpoint trained with slice logits averaged must be explained as it was trained: the same
    weights read as probabilities give another hemisphere score."""
    m = SliceAttentionNet(n_slices=4)
    for name in ("2d-tss45-transfer+logits", "2d-tss45-transfer"):
        (tmp_path / name).mkdir()
        torch.save({"model": m.state_dict()}, tmp_path / name / "best.pt")
    assert gradcam.load_run_model(tmp_path / "2d-tss45-transfer+logits", 4).aggregate == "logit"
    assert gradcam.load_run_model(tmp_path / "2d-tss45-transfer", 4).aggregate == "probability"
