"""Models Genesis self-supervised distortions (Zhou et al. 2019), written from the paper's
description: a sub-volume is distorted and the U-Net learns to restore the original (MSE).

The transforms work on a batch of sub-volumes ``x`` of shape (B, C, D, H, W) with values in
[0, 1], on whatever device ``x`` lives (vectorised: one training batch is a few dozen kernels,
not thousands of small ones), and return ``(y, changed)``: the distorted batch (same shape and
dtype, values in [0, 1]) and the boolean (B, D, H, W) region each cube was allowed to change;
outside ``changed`` y equals x exactly. The same spatial distortion applies to every channel, so
the three sequences of a voxel stay together. Randomness comes from a ``torch.Generator``; results
are reproducible for its seed (a generator on another device than ``x`` seeds one on ``x``'s).

:data:`TRANSFORMS` holds the single-cube forms, (C, D, H, W) -> ``(y, changed (D, H, W))``.
"""

from __future__ import annotations

import torch


def on_device(gen: torch.Generator, device) -> torch.Generator:
    """``gen`` itself when it lives on ``device``, else a generator there seeded from ``gen``."""
    device = torch.device(device)
    if torch.device(gen.device).type == device.type:
        return gen
    seed = int(torch.randint(0, 2**62, (1,), generator=gen))
    return torch.Generator(device=device).manual_seed(seed)


def _rand(gen, shape, device) -> torch.Tensor:
    return torch.rand(shape, generator=gen, device=device)


def _coins(gen, n: int, p: float, device) -> torch.Tensor:
    return _rand(gen, (n,), device) < p


def _boxes(gen, b: int, k: int, shape, lo: float, hi: float, device):
    """``k`` random boxes per cube, each side a random fraction in [lo, hi) of the volume's side
    (at least one voxel), uniformly placed: (start, size), each (b, k, 3) long."""
    n = torch.tensor(shape, device=device)
    size = (n * (lo + (hi - lo) * _rand(gen, (b, k, 3), device))).long().clamp(min=1)
    start = (_rand(gen, (b, k, 3), device) * (n - size + 1)).long().clamp(max=n - size)
    return start, size


def _box_masks(start, size, shape) -> torch.Tensor:
    """(b, k, D, H, W): voxel inside box k of cube b."""
    dev = start.device
    inside = [(ax >= start[..., i, None]) & (ax < (start + size)[..., i, None])
              for i, ax in enumerate(torch.arange(n, device=dev) for n in shape)]
    return inside[0][..., :, None, None] & inside[1][..., None, :, None] & inside[2][..., None, None, :]


def _some_boxes(gen, x, n_boxes: int, lo: float, hi: float) -> torch.Tensor:
    """The union of 1 to ``n_boxes`` random boxes per cube: (B, D, H, W)."""
    b, shape = len(x), x.shape[2:]
    start, size = _boxes(gen, b, n_boxes, shape, lo, hi, x.device)
    count = 1 + (_rand(gen, (b,), x.device) * n_boxes).long().clamp(max=n_boxes - 1)
    used = torch.arange(n_boxes, device=x.device) < count[:, None]
    return (_box_masks(start, size, shape) & used[..., None, None, None]).any(1)


def bezier_curves(gen: torch.Generator, b: int, n: int = 1000, monotone: torch.Tensor | None = None, device="cpu"):
    """``b`` random cubic Bezier intensity mappings from (0, 0) to (1, 1), each with two random
    control points, as knots (xp, fp), each (b, n), sorted by xp. Where ``monotone`` (default: a
    coin flip per curve) fp is sorted as well, so that the mapping keeps the intensity order."""
    p1, p2 = _rand(gen, (b, 2, 2), device).unbind(1)
    t = torch.linspace(0, 1, n, device=device)[None, :, None]
    c = 3 * (1 - t) ** 2 * t * p1[:, None] + 3 * (1 - t) * t ** 2 * p2[:, None] + t ** 3
    xp, order = torch.sort(c[..., 0], dim=1)
    fp = torch.gather(c[..., 1], 1, order)
    if monotone is None:
        monotone = _coins(gen, b, 0.5, device)
    fp = torch.where(monotone[:, None], torch.sort(fp, dim=1).values, fp)
    return xp, fp


def nonlinear_batch(x: torch.Tensor, gen: torch.Generator, monotone: torch.Tensor | None = None, levels: int = 1024):
    """Non-linear intensity transform through a random Bezier curve per cube (every voxel may change).
    Each curve is tabulated at ``levels`` evenly spaced intensities and interpolated linearly, which
    keeps a monotone curve monotone and maps equal intensities to equal outputs."""
    gen = on_device(gen, x.device)
    b = len(x)
    xp, fp = bezier_curves(gen, b, monotone=monotone, device=x.device)
    # torch has no np.interp: tabulate each curve on an even grid (a few thousand lookups), then
    # interpolate the voxels on that grid with plain arithmetic
    grid = torch.linspace(0, 1, levels, device=x.device).expand(b, levels).contiguous()
    i = torch.searchsorted(xp.contiguous(), grid).clamp(1, xp.shape[1] - 1)
    x0, x1, y0, y1 = (torch.gather(a, 1, j) for a, j in ((xp, i - 1), (xp, i), (fp, i - 1), (fp, i)))
    table = (y0 + (grid - x0) / (x1 - x0).clamp_min(1e-12) * (y1 - y0)).clamp(0, 1)
    v = x.float().reshape(b, -1).clamp(0, 1) * (levels - 1)
    k = v.floor().long().clamp(max=levels - 2)
    lo, hi = torch.gather(table, 1, k), torch.gather(table, 1, k + 1)
    y = lo + (v - k) * (hi - lo)
    changed = torch.ones((b,) + x.shape[2:], dtype=torch.bool, device=x.device)
    return y.reshape(x.shape).to(x.dtype), changed


def local_shuffle_batch(x: torch.Tensor, gen: torch.Generator, n_windows: int = 1000, max_frac: float = 0.1):
    """Local pixel shuffling: ``n_windows`` small random windows per cube (sides 2% to ``max_frac``
    of the volume's), each filled with its own voxels of the original in a random order; where
    windows overlap, the later one wins. Intensities move only within a window, so global anatomy
    survives while local texture is destroyed."""
    gen = on_device(gen, x.device)
    B, C, D, H, W = x.shape
    dev = x.device
    start, size = _boxes(gen, B, n_windows, (D, H, W), 0.02, max_frac, dev)
    vol = size.prod(-1).flatten()                                   # voxels per window, (B * K,)
    win = torch.repeat_interleave(torch.arange(B * n_windows, device=dev), vol)   # window of each element
    first = torch.cumsum(vol, 0) - vol
    j = torch.arange(len(win), device=dev) - first[win]             # element's place in its window
    s, o = size.reshape(-1, 3)[win], start.reshape(-1, 3)[win]
    z, y, xx = o[:, 0] + j // (s[:, 1] * s[:, 2]), o[:, 1] + (j // s[:, 2]) % s[:, 1], o[:, 2] + j % s[:, 2]
    cube = win // n_windows
    voxel = cube * (D * H * W) + (z * H + y) * W + xx               # flat (cube, voxel) index
    # a window's elements in a random order: sort by window, then by a random key within it
    order = torch.argsort(win.double() + _rand(gen, (len(win),), dev).double())
    source = voxel[order]
    # the last window that covers a voxel writes it
    owner = torch.full((B * D * H * W,), -1, dtype=torch.long, device=dev)
    owner.scatter_reduce_(0, voxel, win, reduce="amax")
    keep = owner[voxel] == win
    flat = x.permute(0, 2, 3, 4, 1).reshape(-1, C)
    out = flat.clone()
    out[voxel[keep]] = flat[source[keep]]
    y = out.reshape(B, D, H, W, C).permute(0, 4, 1, 2, 3).contiguous()
    return y, (owner >= 0).reshape(B, D, H, W)


def inpaint_batch(x: torch.Tensor, gen: torch.Generator, n_boxes: int = 5):
    """In-painting: 1 to ``n_boxes`` random inner boxes per cube (sides 1/6 to 1/3) become uniform noise."""
    gen = on_device(gen, x.device)
    changed = _some_boxes(gen, x, n_boxes, 1 / 6, 1 / 3)
    noise = _rand(gen, x.shape, x.device).to(x.dtype)
    return torch.where(changed[:, None], noise, x), changed


def outpaint_batch(x: torch.Tensor, gen: torch.Generator, n_boxes: int = 5):
    """Out-painting: everything outside 1 to ``n_boxes`` random large boxes (sides 3/7 to 4/7) becomes uniform noise."""
    gen = on_device(gen, x.device)
    keep = _some_boxes(gen, x, n_boxes, 3 / 7, 4 / 7)
    noise = _rand(gen, x.shape, x.device).to(x.dtype)
    return torch.where(keep[:, None], x, noise), ~keep


def _single(batch_fn):
    def one(x: torch.Tensor, gen: torch.Generator, **kw):
        y, changed = batch_fn(x[None], gen, **kw)
        return y[0], changed[0]
    one.__doc__ = f"{batch_fn.__doc__}\n\n    One cube (C, D, H, W)."
    one.__name__ = batch_fn.__name__.removesuffix("_batch")
    return one


local_shuffle = _single(local_shuffle_batch)
inpaint = _single(inpaint_batch)
outpaint = _single(outpaint_batch)


def nonlinear(x: torch.Tensor, gen: torch.Generator, monotone: bool | None = None):
    """Non-linear intensity transform of one cube (C, D, H, W) through a random Bezier curve;
    ``monotone`` (default: a coin flip) keeps the intensity order."""
    flag = None if monotone is None else torch.tensor([monotone], device=x.device)
    y, changed = nonlinear_batch(x[None], gen, monotone=flag)
    return y[0], changed[0]


TRANSFORMS = {"non-linear": nonlinear, "local shuffling": local_shuffle,
              "in-painting": inpaint, "out-painting": outpaint}


def distort_batch(x: torch.Tensor, gen: torch.Generator, p_shuffle: float = 0.5, p_nonlinear: float = 0.9,
                  p_paint: float = 0.9, p_outpaint: float = 0.2) -> torch.Tensor:
    """Models Genesis' composition on each cube of a batch: local shuffling, then the non-linear
    transform, then in- or out-painting, each applied with its probability (the Models Genesis
    defaults), decided per cube. Each transform runs on the cubes it applies to only."""
    # the coins are drawn on the host so that choosing the cubes needs no device synchronisation
    coins = torch.rand((4, len(x)), generator=gen, device=gen.device).cpu()
    shuffle, nonlin, paint, out = (c < p for c, p in zip(coins, (p_shuffle, p_nonlinear, p_paint, p_outpaint)))
    gen = on_device(gen, x.device)
    x = x.clone()
    for use, fn in ((shuffle, local_shuffle_batch), (nonlin, nonlinear_batch),
                    (paint & out, outpaint_batch), (paint & ~out, inpaint_batch)):
        if use.any():
            idx = torch.nonzero(use).flatten().to(x.device)
            x[idx] = fn(x[idx], gen)[0]
    return x


def distort(x: torch.Tensor, gen: torch.Generator, **probabilities) -> torch.Tensor:
    """:func:`distort_batch` of one cube (C, D, H, W)."""
    return distort_batch(x[None], gen, **probabilities)[0]


def random_cubes(volumes: torch.Tensor, n: int, size: tuple[int, int, int], gen: torch.Generator,
                 rows=None) -> torch.Tensor:
    """``n`` random sub-volumes of ``size`` (D, H, W) from a stack of volumes (N, C, D, H, W), or
    from its volumes ``rows`` only (no copy of the others); same dtype and device as ``volumes``."""
    N, C, D, H, W = volumes.shape
    if any(s > v for s, v in zip(size, (D, H, W))):
        raise ValueError(f"sub-volume {size} larger than the volumes {(D, H, W)}")
    rows = torch.arange(N) if rows is None else torch.as_tensor(rows).cpu()
    pick = rows[torch.randint(0, len(rows), (n,), generator=gen)]
    corner = (torch.rand((n, 3), generator=gen) * torch.tensor([D - size[0] + 1, H - size[1] + 1, W - size[2] + 1])).long()
    return torch.stack([volumes[i, :, z:z + size[0], y:y + size[1], x:x + size[2]]
                        for i, (z, y, x) in zip(pick.tolist(), corner.tolist())])


def genesis_batch(cubes: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(distorted input, original target) for a batch of sub-volumes (B, C, D, H, W)."""
    return distort_batch(cubes, gen), cubes
