"""Models Genesis self-supervised distortions (Zhou et al. 2019), written from the paper's
description: a sub-volume is distorted and the U-Net learns to restore the original (MSE).

Every transform takes a sub-volume ``x`` of shape (C, D, H, W) with values in [0, 1] and a
``torch.Generator`` (results are reproducible for a seed), and returns ``(y, changed)``: the
distorted sub-volume (same shape, values in [0, 1]) and the boolean (D, H, W) region it was
allowed to change; outside ``changed`` y equals x exactly. The same spatial distortion applies to
every channel, so the three sequences of a voxel stay together.
"""

from __future__ import annotations

import torch


def _rand(gen, *shape, device="cpu") -> torch.Tensor:
    return torch.rand(shape, generator=gen).to(device)


def _randint(gen, low: int, high: int) -> int:
    return int(torch.randint(low, max(high, low + 1), (1,), generator=gen))


def _interp(x: torch.Tensor, xp: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    # torch has no np.interp: piecewise-linear lookup on the sorted knots xp
    i = torch.searchsorted(xp, x.clamp(xp[0], xp[-1]).contiguous()).clamp(1, len(xp) - 1)
    x0, x1, y0, y1 = xp[i - 1], xp[i], fp[i - 1], fp[i]
    t = (x - x0) / (x1 - x0).clamp_min(1e-12)
    return y0 + t * (y1 - y0)


def bezier_curve(gen: torch.Generator, n: int = 1000, monotone: bool | None = None):
    """A random cubic Bezier intensity mapping from (0, 0) to (1, 1) with two random control
    points, as knots (xp, fp) sorted by xp. ``monotone`` (default: a coin flip) sorts fp as well,
    so that the mapping keeps the intensity order."""
    p = torch.cat([torch.zeros(1, 2), torch.rand((2, 2), generator=gen), torch.ones(1, 2)])
    t = torch.linspace(0, 1, n).unsqueeze(1)
    c = (1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2] + t ** 3 * p[3]
    xp, order = torch.sort(c[:, 0])
    fp = c[order, 1]
    if monotone is None:
        monotone = bool(torch.rand((), generator=gen) < 0.5)
    if monotone:
        fp = torch.sort(fp).values
    return xp, fp


def nonlinear(x: torch.Tensor, gen: torch.Generator, monotone: bool | None = None):
    """Non-linear intensity transform through a random Bezier curve (every voxel may change)."""
    xp, fp = bezier_curve(gen, monotone=monotone)
    y = _interp(x.float(), xp.to(x.device), fp.to(x.device)).clamp(0, 1).to(x.dtype)
    return y, torch.ones(x.shape[1:], dtype=torch.bool, device=x.device)


def _box(gen, shape, lo: float, hi: float):
    """A random box with each side a random fraction in [lo, hi) of the volume's side."""
    sl = []
    for n in shape:
        size = max(1, int(n * (lo + (hi - lo) * float(torch.rand((), generator=gen)))))
        start = _randint(gen, 0, n - size + 1)
        sl.append(slice(start, start + size))
    return tuple(sl)


def local_shuffle(x: torch.Tensor, gen: torch.Generator, n_windows: int = 1000, max_frac: float = 0.1):
    """Local pixel shuffling: the voxels inside each of ``n_windows`` small random windows (sides
    up to ``max_frac`` of the volume's) are permuted. Intensities move only within a window, so
    the histogram is kept and global anatomy survives while local texture is destroyed."""
    y = x.clone()
    changed = torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
    for _ in range(n_windows):
        box = _box(gen, x.shape[1:], 0.02, max_frac)
        block = y[(slice(None),) + box]
        flat = block.reshape(x.shape[0], -1)
        perm = torch.randperm(flat.shape[1], generator=gen).to(x.device)
        y[(slice(None),) + box] = flat[:, perm].reshape(block.shape)
        changed[box] = True
    return y, changed


def inpaint(x: torch.Tensor, gen: torch.Generator, n_boxes: int = 5):
    """In-painting: up to ``n_boxes`` random inner boxes are replaced by uniform noise."""
    changed = torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
    for _ in range(_randint(gen, 1, n_boxes + 1)):
        changed[_box(gen, x.shape[1:], 1 / 6, 1 / 3)] = True
    noise = _rand(gen, *x.shape, device=x.device).to(x.dtype)
    return torch.where(changed, noise, x), changed


def outpaint(x: torch.Tensor, gen: torch.Generator, n_boxes: int = 5):
    """Out-painting: everything outside up to ``n_boxes`` random large boxes becomes uniform noise."""
    keep = torch.zeros(x.shape[1:], dtype=torch.bool, device=x.device)
    for _ in range(_randint(gen, 1, n_boxes + 1)):
        keep[_box(gen, x.shape[1:], 3 / 7, 4 / 7)] = True
    noise = _rand(gen, *x.shape, device=x.device).to(x.dtype)
    return torch.where(keep, x, noise), ~keep


TRANSFORMS = {"non-linear": nonlinear, "local shuffling": local_shuffle,
              "in-painting": inpaint, "out-painting": outpaint}


def distort(x: torch.Tensor, gen: torch.Generator, p_shuffle: float = 0.5, p_nonlinear: float = 0.9,
            p_paint: float = 0.9, p_outpaint: float = 0.2) -> torch.Tensor:
    """Models Genesis' composition: local shuffling, then the non-linear transform, then in- or
    out-painting, each applied with its probability (the Models Genesis defaults)."""
    def coin(p):
        return bool(torch.rand((), generator=gen) < p)
    if coin(p_shuffle):
        x, _ = local_shuffle(x, gen)
    if coin(p_nonlinear):
        x, _ = nonlinear(x, gen)
    if coin(p_paint):
        x, _ = (outpaint if coin(p_outpaint) else inpaint)(x, gen)
    return x


def random_cubes(volumes: torch.Tensor, n: int, size: tuple[int, int, int], gen: torch.Generator) -> torch.Tensor:
    """``n`` random sub-volumes of ``size`` (D, H, W) from a stack of volumes (N, C, D, H, W)."""
    N, C, D, H, W = volumes.shape
    if any(s > v for s, v in zip(size, (D, H, W))):
        raise ValueError(f"sub-volume {size} larger than the volumes {(D, H, W)}")
    out = []
    for _ in range(n):
        i = _randint(gen, 0, N)
        z, y, x = (_randint(gen, 0, v - s + 1) for s, v in zip(size, (D, H, W)))
        out.append(volumes[i, :, z:z + size[0], y:y + size[1], x:x + size[2]])
    return torch.stack(out).float()


def genesis_batch(cubes: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(distorted input, original target) for a batch of sub-volumes (B, C, D, H, W)."""
    return torch.stack([distort(c, gen) for c in cubes]), cubes
