"""The processed cohort as training tensors, task labels, and the synthetic tumour task.

The whole cohort is one tensor, held on the training device (on a GPU it is resident: batches are
index selections, no per-step host copies).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from .. import precision, preprocess
from ..atomic import content_key
from ..task import Task


def pool_in_plane(x: torch.Tensor, downsample: int) -> torch.Tensor:
    """Average-pool the last two (in-plane) axes of ``x`` by ``downsample``; other axes untouched."""
    if downsample <= 1:
        return x
    *lead, h, w = x.shape
    return F.avg_pool2d(x.reshape(-1, 1, h, w), downsample).reshape(*lead, h // downsample, w // downsample)


class Hemispheres:
    """Hemispheres (N, 3, 26, H, W) at one in-plane downsampling, with their index table."""

    def __init__(self, x: torch.Tensor, index: pd.DataFrame, key: str):
        if len(x) != len(index):
            raise ValueError(f"{len(x)} hemispheres but {len(index)} index rows")
        self.x, self.index, self.key, self.device = x, index.reset_index(drop=True), key, x.device

    @classmethod
    def load(cls, cache_dir, downsample: int = 1, device: str | torch.device = "cpu",
             dtype: torch.dtype | None = None) -> Hemispheres:
        """The preprocessed cohort of ``cache_dir`` (``python -m tss preprocess``), pooled in-plane by
        ``downsample``, as float32 on the CPU or resident on a GPU in its training precision
        (``dtype`` overrides; :func:`tss.precision.for_data`)."""
        store = preprocess.PreprocessCache(cache_dir)
        arr, index = store.load_hemispheres()
        meta = store.cohort_meta()
        device = torch.device(device)
        # resident on a GPU in its autocast dtype (bf16, or fp16 on a T4); fp32 on a CPU (autocast
        # casts each batch where the CPU has bf16: tss.precision)
        dtype = dtype or ((precision.choose(device).dtype or torch.float32) if device.type == "cuda" else torch.float32)
        chunks = []
        for i in range(0, len(arr), 32):  # pool in chunks: the float32 copy of 422 patients is 6 GiB
            x = pool_in_plane(torch.from_numpy(np.asarray(arr[i:i + 32], dtype=np.float32)), downsample)
            chunks.append(x.to(device, dtype))
        key = content_key(f"{meta['key']}:{downsample}:{dtype}")
        return cls(torch.cat(chunks), index, key)

    def within_dwi_lesion(self, z: float = 3.0, dilate: int = 2, chunk: int = 64) -> Hemispheres:
        """The same hemispheres with everything outside their DWI-bright region (:func:`dwi_lesion_mask`)
        set to zero, under their own key: what a model sees when it is shown only where the lesion is."""
        parts = [self.x[i:i + chunk] * dwi_lesion_mask(self.x[i:i + chunk], z, dilate)[:, None].to(self.x.dtype)
                 for i in range(0, len(self.x), chunk)]
        return Hemispheres(torch.cat(parts), self.index, content_key(f"{self.key}:dwi-lesion:{z}:{dilate}"))

    def rows(self, split: str, hemispheres: str = "all") -> np.ndarray:
        sel = self.index["split"] == split
        if hemispheres == "stroke":
            sel &= self.index["label"] == 1
        return np.flatnonzero(sel.to_numpy())

    def labels(self, task: str) -> np.ndarray:
        """Per-hemisphere target of a classification task (float 0/1)."""
        if task == "stroke":
            return self.index["label"].to_numpy(float)
        if task in (Task.TSS3, Task.TSS45):
            return Task(task).label(self.index["onset_to_mri_min"].to_numpy(float)).astype(float)
        raise ValueError(f"no hemisphere labels for task {task!r}")


def dwi_lesion_mask(x: torch.Tensor, z: float = 3.0, dilate: int = 2) -> torch.Tensor:
    """Where a hemisphere (N, C, S, H, W; channel 0 DWI) is bright on DWI: its brain voxels (any
    channel non-zero) whose DWI lies more than ``z`` SDs above the mean of its brain's DWI, grown by
    ``dilate`` pixels in-plane (so the tissue around the lesion, its own reference, stays in view).
    What a reader outlines first, from the image alone: no true mask is used. (N, S, H, W) float 0/1."""
    dwi, brain = x[:, 0].float(), (x != 0).any(1)
    n = brain.flatten(1).sum(1).clamp(min=1)
    mean = (dwi * brain).flatten(1).sum(1) / n
    sd = (((dwi - mean.view(-1, 1, 1, 1)) ** 2 * brain).flatten(1).sum(1) / n).sqrt()
    m = ((dwi > (mean + z * sd).view(-1, 1, 1, 1)) & brain).float()
    if dilate > 0:
        N, S, H, W = m.shape
        m = F.max_pool2d(m.reshape(N * S, 1, H, W), 2 * dilate + 1, stride=1, padding=dilate).reshape(N, S, H, W)
    return m


def augment(x: torch.Tensor, gen: torch.Generator, degrees: float = 5.0, scale: float = 0.05,
            shift: float = 0.03, gain: float = 0.1) -> torch.Tensor:
    """A random small in-plane affine (rotation within +-``degrees``, zoom within +-``scale``, shift
    within +-``shift`` of the slice; the same for every slice of a hemisphere) and one intensity gain
    per hemisphere and channel within 1 +- ``gain``, for a batch (B, C, S, H, W). A gain multiplies a
    whole channel, so the lesion/normal ratios that carry the clock are kept; no flips (hemispheres
    are aligned, midline on one side). Random numbers from ``gen`` on the host."""
    B, C, S, H, W = x.shape
    u = (torch.rand(B, 5, generator=gen) * 2 - 1).to(x.device)
    ang = u[:, 0] * degrees * torch.pi / 180
    zoom = 1 + u[:, 1] * scale
    theta = torch.zeros(B, 2, 3, device=x.device)
    theta[:, 0, 0], theta[:, 0, 1] = torch.cos(ang) / zoom, -torch.sin(ang) / zoom
    theta[:, 1, 0], theta[:, 1, 1] = torch.sin(ang) / zoom, torch.cos(ang) / zoom
    theta[:, :, 2] = u[:, 2:4] * 2 * shift
    grid = F.affine_grid(theta.repeat_interleave(S, 0), (B * S, C, H, W), align_corners=False)
    flat = x.permute(0, 2, 1, 3, 4).reshape(B * S, C, H, W).float()
    moved = F.grid_sample(flat, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    moved = moved.reshape(B, S, C, H, W).permute(0, 2, 1, 3, 4)
    g = 1 + (torch.rand(B, C, generator=gen) * 2 - 1).to(x.device) * gain
    return (moved * g[:, :, None, None, None]).to(x.dtype)


def add_tumour(h: torch.Tensor, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A tumour-like mass in one hemisphere (3, Z, Y, X) in [0, 1]: returns (image, mask (Z, Y, X)).

    The stand-in for the paper's external medical pretraining data, from the same anatomy: an
    ellipsoidal mass pushes the surrounding tissue outwards (mass effect, a radial displacement that
    fades with distance), its necrotic core has free water (dark on DWI, bright on b0 and FLAIR) and
    its rim and vasogenic oedema have a long T2 (bright on b0 and FLAIR, mildly on DWI)."""
    C, Z, Y, X = h.shape
    dev = h.device  # computed where h lives (on a GPU: no host copies); random numbers from gen on the host
    brain = h[1] > 0.02
    pts = torch.nonzero(brain)
    if len(pts) == 0:
        raise ValueError("hemisphere without brain voxels")
    centre = pts[int(torch.randint(len(pts), (1,), generator=gen))].float()
    size = torch.tensor([Z, Y, X], dtype=torch.float32, device=dev)
    # radii as fractions of the hemisphere's extent; slices are 6.5 mm against ~0.9 mm in-plane
    radii = size * torch.tensor([0.12, 0.08, 0.12], device=dev) * (0.6 + 0.8 * torch.rand(3, generator=gen)).to(dev)
    grid = torch.stack(torch.meshgrid(*(torch.arange(n, dtype=torch.float32, device=dev) for n in (Z, Y, X)),
                                      indexing="ij"), -1)
    d = (grid - centre) / radii
    r = d.norm(dim=-1)
    # mass effect: sample each voxel from nearer the centre (tissue pushed out), strongest at the mass
    push = 0.5 * torch.exp(-(r / 1.5) ** 2)
    src = centre + (grid - centre) * (1 - push)[..., None]
    norm = src / (size - 1) * 2 - 1
    moved = F.grid_sample(h[None].float(), norm.flip(-1)[None], align_corners=True, mode="bilinear")[0]
    mass = torch.sigmoid((1 - r) * 8)            # the tumour, soft edge
    core = torch.sigmoid((0.5 - r) * 10)         # necrotic core
    oedema = torch.exp(-((r - 1).clamp(min=0) / 0.6) ** 2) * (1 - core)
    gain = torch.stack([1 + 0.25 * oedema - 0.6 * core,   # DWI b1000
                        1 + 0.7 * oedema + 0.9 * core,    # b0 (T2w)
                        1 + 0.6 * oedema + 0.2 * core])   # FLAIR (free water partly nulled)
    out = (moved * gain).clamp(0, 1) * brain
    return out.to(h.dtype), (mass > 0.5) & brain


def tumour_examples(x: torch.Tensor, rows: np.ndarray, n: int, gen: torch.Generator, segmentation: bool,
                    cube: tuple[int, int, int] | None = None):
    """``n`` examples of the tumour task from the hemispheres ``x[rows]``. Classification: half get
    a tumour, label 1/0. Segmentation: every example has one, cut to ``cube`` around it, with its mask."""
    xs, ys = [], []
    for _ in range(n):
        h = x[int(rows[int(torch.randint(len(rows), (1,), generator=gen))])].float()
        has = segmentation or bool(torch.rand((), generator=gen) < 0.5)
        if has:
            h, mask = add_tumour(h, gen)
        else:
            mask = torch.zeros(h.shape[1:], dtype=torch.bool, device=h.device)
        if segmentation:
            c = torch.nonzero(mask).float().mean(0).cpu() if mask.any() else torch.tensor(h.shape[1:]) / 2
            jitter = (torch.rand(3, generator=gen) - 0.5) * torch.tensor(cube, dtype=torch.float32) / 2
            lo = [int(np.clip(int(ci + ji) - s // 2, 0, n_ - s)) for ci, ji, s, n_ in zip(c, jitter, cube, h.shape[1:])]
            sl = tuple(slice(a, a + s) for a, s in zip(lo, cube))
            xs.append(h[(slice(None),) + sl])
            ys.append(mask[sl].float()[None])
        else:
            xs.append(h)
            ys.append(torch.tensor(float(has)))
    return torch.stack(xs).to(x.device, x.dtype), torch.stack(ys).to(x.device)


def patient_predictions(index: pd.DataFrame, rows: np.ndarray, prob: np.ndarray, target: np.ndarray,
                        task: str) -> pd.DataFrame:
    """Per-patient probability: for TSS from the stroke hemisphere(s) (their mean); for stroke
    detection the larger of the two hemispheres' probabilities (a stroke anywhere)."""
    h = index.iloc[rows].assign(prob=prob, target=target)
    agg = "max" if task == "stroke" else "mean"
    out = h.groupby("patient_id", sort=True).agg(prob=("prob", agg), target=("target", "max"),
                                                  split=("split", "first"),
                                                  onset_to_mri_min=("onset_to_mri_min", "first"),
                                                  n_hemispheres=("prob", "size"))
    return out.reset_index()
