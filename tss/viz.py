"""Figure helpers: load native images for display and draw multi-sequence panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from . import preprocess
from .models import genesis
from .preprocess import steps

SEQUENCES = (("b1000", "DWI b1000"), ("b0", "b0 (T2w)"), ("flair", "FLAIR"))


def load_canonical(path: str | Path):
    """A NIfTI image in RAS+ voxel order (display only; the data are not resampled)."""
    import nibabel as nib

    return nib.as_closest_canonical(nib.load(str(path)))


def _radiological(axial_ras: np.ndarray) -> np.ndarray:
    """An axial RAS+ slice for imshow: anterior up, patient's left on the viewer's right."""
    return np.rot90(axial_ras)[:, ::-1]


def lesion_slice_panel(paths: dict[str, Path]) -> dict[str, np.ndarray]:
    """The axial slice with the largest lesion area, for b1000, b0 and FLAIR (FLAIR resampled
    onto the DWI grid, linear interpolation), plus the lesion mask; arrays oriented for imshow."""
    from nilearn.image import resample_to_img

    dwi = load_canonical(paths["b1000"])
    mask = load_canonical(paths["lesion_mask"]).get_fdata() > 0
    k = int(np.argmax(mask.sum(axis=(0, 1))))
    out = {}
    for key, _ in SEQUENCES:
        img = load_canonical(paths[key])
        if key == "flair":
            img = resample_to_img(img, dwi, interpolation="linear", force_resample=True, copy_header=True)
        out[key] = _radiological(img.get_fdata()[:, :, k])
    out["mask"] = _radiological(mask[:, :, k])
    out["slice"] = k
    return out


def draw_panel(axes, panel: dict[str, np.ndarray], title: str, contour: bool = True) -> None:
    """Draw b1000 / b0 / FLAIR side by side on three axes, each windowed to its 99.5th percentile."""
    for ax, (key, label) in zip(axes, SEQUENCES):
        img = panel[key]
        vmax = np.percentile(img[img > 0], 99.5) if np.any(img > 0) else 1
        ax.imshow(img, cmap="gray", vmin=0, vmax=vmax, interpolation="nearest")
        if contour and panel["mask"].any():
            ax.contour(panel["mask"], levels=[0.5], colors="tab:red", linewidths=0.6, alpha=0.6)
        ax.set_title(f"{label}", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0].set_ylabel(title, fontsize=9)


def lesion_cube(cache_dir, cube_shape, split: str = "train") -> dict:
    """A Models Genesis sub-volume with a lesion in it, for figures: the ``split`` stroke hemisphere
    of the preprocessing cache with the largest lesion, and the ``cube_shape`` (slices, rows, columns)
    cube centred on its deepest lesion voxel (a large lesion's centroid can fall outside it).

    Returns the cube (3, *cube_shape) as a float tensor, ``lesion`` (its mask, same grid), ``k``
    (the cube's slice through that voxel) and ``description`` (patient, hemisphere, lesion volume, where the cube lies)."""
    import torch
    from scipy import ndimage

    hemis, index = preprocess.load_hemispheres(cache_dir)
    best = (0, None, None)
    for _, r in index[(index["label"] == 1) & (index["split"] == split)].iterrows():
        p = preprocess.load_patient(cache_dir, r["patient_id"])
        if "lesion" in p:  # the mask split and flipped like the images
            m = preprocess.pipeline.hemispheres(p["lesion"][None].astype(np.float32))[("left", "right").index(r["hemisphere"]), 0]
            if m.sum() > best[0]:
                best = (m.sum(), r, m)
    _, row, lesion = best
    if row is None:
        raise ValueError(f"no {split} hemisphere with a lesion mask in {cache_dir}")
    h = torch.from_numpy(np.asarray(hemis[row["row"]], dtype=np.float32))  # (3, slices, rows, columns)
    depth = ndimage.distance_transform_edt(lesion > 0.5, sampling=(6.5, 1, 1))
    centre = np.unravel_index(int(np.argmax(depth)), depth.shape)
    z0, y0, x0 = (int(np.clip(c - s // 2, 0, n - s)) for c, s, n in zip(centre, cube_shape, h.shape[1:]))
    cz, cy, cx = cube_shape
    ml = lesion.sum() * np.prod(np.diag(steps.target_affine())[:3]) / 1000
    k = int(centre[0] - z0)
    return {"cube": h[:, z0:z0 + cz, y0:y0 + cy, x0:x0 + cx], "lesion": lesion[z0:z0 + cz, y0:y0 + cy, x0:x0 + cx], "k": k,
            "description": f"patient {row['patient_id']} ({row['hemisphere']} hemisphere, lesion {ml:.0f} mL on the template "
                           f"grid): cube of slices {z0}-{z0 + cz - 1}, rows {y0}-{y0 + cy - 1}, columns {x0}-{x0 + cx - 1}; "
                           f"slice {z0 + k} shown"}


def genesis_figure(cube, k: int, seed: int = 0, max_draws: int = 100):
    """Each Models Genesis transform applied alone to ``cube`` (3, slices, rows, columns), then all
    composed as in training; slice ``k``, DWI and FLAIR rows, the changed region outlined in yellow.
    Boxes are drawn in 3D, so each column shows the first draw (numbered) whose region crosses slice k."""
    import matplotlib.pyplot as plt
    import torch

    panels = [("original", cube, None)]
    for i, (name, fn) in enumerate(genesis.TRANSFORMS.items()):
        for draw in range(max_draws):
            out, changed = fn(cube, torch.Generator().manual_seed(seed * 1000 + 10 * i + draw))
            if 0 < changed[k].float().mean() < 1 or name == "non-linear":
                break
        panels.append((f"{name} (draw {draw})", out, changed))
    panels.append(("composed (training)", genesis.distort(cube, torch.Generator().manual_seed(seed)), None))
    fig, axes = plt.subplots(2, len(panels), figsize=(2.2 * len(panels), 4.9))
    for j, (name, v, changed) in enumerate(panels):
        for i, (ch, label) in enumerate([(0, "DWI b1000"), (2, "FLAIR")]):
            ax = axes[i, j]
            ax.imshow(v[ch, k].numpy()[::-1], cmap="gray", vmin=0, vmax=1)
            if changed is not None and not changed[k].all():
                ax.contour(changed[k].numpy()[::-1].astype(float), [0.5], colors="yellow", linewidths=0.8)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(name, fontsize=9)
            if j == 0:
                ax.set_ylabel(label)
    return fig
