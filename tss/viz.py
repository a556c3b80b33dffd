"""Figure helpers: load native images for display and draw multi-sequence panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
