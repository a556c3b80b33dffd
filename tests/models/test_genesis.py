"""Models Genesis (tss.models.genesis): the distortions, random cubes, batches."""

from __future__ import annotations

import pytest
import torch

from tss.models import genesis


def _cube(seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((3, 16, 32, 32), generator=g)


@pytest.mark.parametrize("name", list(genesis.TRANSFORMS))
def test_genesis_transforms_keep_shape_and_range_and_touch_only_their_region(name):
    x = _cube()
    y, changed = genesis.TRANSFORMS[name](x, torch.Generator().manual_seed(1))
    assert y.shape == x.shape and y.dtype == x.dtype
    assert 0 <= y.min() and y.max() <= 1
    assert torch.equal(y[:, ~changed], x[:, ~changed])
    frac = changed.float().mean().item()
    assert 0 < frac <= 1
    inside = (y != x)[:, changed].float().mean().item()
    # a shuffled voxel can draw its own place back; the others replace their whole region
    least = 0.5 if name == "local shuffling" else 0.9
    assert inside > least, f"{name} left {1 - inside:.0%} of its region unchanged"
    # repeatable for a seed
    y2, _ = genesis.TRANSFORMS[name](x, torch.Generator().manual_seed(1))
    assert torch.equal(y, y2)


def test_one_shuffle_window_permutes_its_voxels_and_nothing_else():
    x = _cube()
    y, changed = genesis.local_shuffle(x, torch.Generator().manual_seed(2), n_windows=1, max_frac=0.5)
    assert changed.sum() > 1 and torch.equal(y[:, ~changed], x[:, ~changed])
    # voxels move together across channels, and only within the window
    def pairs(t):
        return sorted(map(tuple, t[:, changed].T.tolist()))

    assert pairs(y) == pairs(x) and not torch.equal(y, x)


def test_local_shuffle_moves_voxels_only_locally():
    # each voxel's channels encode its own position: the output says where every value came from
    D, H, W = 16, 32, 32
    z, r, c = torch.meshgrid(torch.arange(D), torch.arange(H), torch.arange(W), indexing="ij")
    x = torch.stack([z / (D - 1), r / (H - 1), c / (W - 1)]).float()
    y, changed = genesis.local_shuffle(x, torch.Generator().manual_seed(5))
    src = torch.stack([(y[0] * (D - 1)).round(), (y[1] * (H - 1)).round(), (y[2] * (W - 1)).round()])
    moved = (src - torch.stack([z, r, c])).abs()
    assert (moved[:, changed].sum(0) > 0).float().mean() > 0.3   # most shuffled voxels did move
    # no further than a window's side (10% of each axis, at least one voxel)
    for axis, n in enumerate((D, H, W)):
        assert moved[axis].max() < max(1, int(0.1 * n)), (axis, moved[axis].max())
    assert moved[:, ~changed].sum() == 0


def test_batched_distortions_differ_per_cube_and_respect_their_probabilities():
    x = _cube().expand(6, -1, -1, -1, -1).contiguous()
    g = torch.Generator().manual_seed(7)
    assert torch.equal(genesis.distort_batch(x, g, p_shuffle=0, p_nonlinear=0, p_paint=0), x)
    y = genesis.distort_batch(x, g, p_shuffle=0, p_nonlinear=0, p_paint=1, p_outpaint=1)
    assert all(((y[i] != x[i]).any(0).float().mean() > 0.4) for i in range(6))  # out-painting everywhere
    y, changed = genesis.inpaint_batch(x, torch.Generator().manual_seed(8))
    assert len({tuple(changed[i].flatten().nonzero().flatten()[:5].tolist()) for i in range(6)}) > 1
    a = genesis.distort_batch(x, torch.Generator().manual_seed(9))
    assert torch.equal(a, genesis.distort_batch(x, torch.Generator().manual_seed(9)))
    assert genesis.distort_batch(x.bfloat16(), torch.Generator().manual_seed(9)).dtype == torch.bfloat16


def test_nonlinear_is_a_function_of_intensity_and_monotone_keeps_order():
    x = _cube()
    x[1] = x[0]  # equal intensities must map to equal outputs
    y, _ = genesis.nonlinear(x, torch.Generator().manual_seed(3), monotone=True)
    assert torch.equal(y[0], y[1])
    order = torch.argsort(x[0].flatten())
    assert torch.all(torch.diff(y[0].flatten()[order]) >= -1e-6)


def test_paintings_are_complementary_in_what_they_keep():
    x = _cube()
    _, c_in = genesis.inpaint(x, torch.Generator().manual_seed(4))
    _, c_out = genesis.outpaint(x, torch.Generator().manual_seed(4))
    assert c_in.float().mean() < 0.5 < c_out.float().mean()  # inner boxes vs everything outside boxes


def test_random_cubes_and_batch():
    vols = torch.rand(3, 3, 26, 56, 28)
    g = torch.Generator().manual_seed(0)
    cubes = genesis.random_cubes(vols, 5, (16, 32, 16), g)
    assert cubes.shape == (5, 3, 16, 32, 16)
    distorted, target = genesis.genesis_batch(cubes, g)
    assert distorted.shape == target.shape and torch.equal(target, cubes)
    with pytest.raises(ValueError, match="larger"):
        genesis.random_cubes(vols, 1, (32, 32, 16), g)
    # cubes of the chosen volumes only (the other volumes are zero here)
    vols[1] = 0
    picked = genesis.random_cubes(vols, 20, (16, 32, 16), g, rows=[0, 2])
    assert (picked.flatten(1).amax(1) > 0).all()
