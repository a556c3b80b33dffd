"""What a phase trains on, and how it is scored: one object per kind of task.

:class:`Run` (``tss.train.loop``) owns the loop (optimiser, epochs, early stopping, checkpoints,
resumption); a task owns what differs between the phases:

- :class:`Classify`: one logit per hemisphere against a label of the cohort (stroke, TSS < 3 h,
  TSS < 4.5 h); binary cross-entropy, scored by validation AUC. Its examples are row numbers into
  the resident cohort tensor, so frozen leading stages can be computed once per hemisphere.
- :class:`Restore`: Models Genesis. Random sub-volumes, distorted on the fly; the U-Net restores
  them; mean squared error, scored by its negative. A fresh draw every epoch.
- :class:`Tumour2D` / :class:`Tumour3D`: the medical-domain stand-in. A synthetic tumour added to
  hemispheres: classified (2D) or segmented in a sub-volume (3D, cross-entropy + Dice, scored by Dice),
  from one fixed training set.

``task_for(spec.task, arch)`` picks the object; the phase's task name is what the run's
configuration (and so its cache key) records.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .. import stats
from ..models import SliceAttentionNet, UNet3D, build, genesis
from .data import tumour_examples


def _dice(prob: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    inter = (prob * mask).flatten(1).sum(1)
    return (2 * inter + 1) / (prob.flatten(1).sum(1) + mask.flatten(1).sum(1) + 1)


class Classify:
    """A label of the cohort, one logit per hemisphere."""

    synthetic = False        # examples are the cohort's own hemispheres and labels
    fixed_train_set = False  # (tumour) one training set drawn once
    fresh_each_epoch = False  # (Genesis) a new draw every epoch
    caches_frozen = True     # frozen leading stages may be computed once per hemisphere
    recalibrates_bn = True   # precise BN on training examples before each evaluation

    def __init__(self, label: str):
        self.label = label

    def model(self, arch: str, n_slices: int, aggregate: str = "probability"):
        return build(arch, n_slices=n_slices, aggregate=aggregate)

    def examples(self, run, split: str, n, gen):
        c = run.cohort
        rows = c.rows(split, run.spec.hemispheres)
        y = torch.as_tensor(c.labels(self.label)[rows], dtype=torch.float32, device=run.device)
        return torch.as_tensor(rows, device=run.device), y

    def eval_set(self, x, y, gen):
        return x, y

    def batch(self, xb, yb, gen):
        """The (input, target) of one training step."""
        return xb, yb

    def loss(self, out, target):
        return F.binary_cross_entropy_with_logits(out, target)

    def score(self, out, y) -> tuple[float, float]:
        loss = F.binary_cross_entropy_with_logits(out, y).item()
        auc = stats.auc_or_nan(y.cpu().numpy(), torch.sigmoid(out).cpu().numpy())
        return loss, (auc if not math.isnan(auc) else -loss)


class Restore(Classify):
    """Models Genesis: restore distorted sub-volumes."""

    synthetic, fresh_each_epoch, caches_frozen, recalibrates_bn = True, True, False, False

    def __init__(self):
        super().__init__("restore")

    def model(self, arch, n_slices):
        return UNet3D()

    def examples(self, run, split, n, gen):
        rows = run.cohort.rows(split, run.spec.hemispheres)
        return genesis.random_cubes(run.cohort.x, n, run.mp.genesis_cube, gen, rows=rows), None

    def eval_set(self, x, y, gen):  # (distorted cubes, originals): scores restoration
        return genesis.genesis_batch(x, gen)

    def batch(self, xb, yb, gen):
        return genesis.genesis_batch(xb, gen)

    def loss(self, out, target):
        return F.mse_loss(out, target.float())

    def score(self, out, y):
        mse = F.mse_loss(out, y.float()).item()
        return mse, -mse


class Tumour2D(Classify):
    """The medical stand-in in 2D: does this hemisphere carry the synthetic tumour?"""

    synthetic, fixed_train_set, caches_frozen = True, True, False
    segmentation = False

    def __init__(self):
        super().__init__("tumour")

    def model(self, arch, n_slices):
        return SliceAttentionNet(n_slices=n_slices)

    def examples(self, run, split, n, gen):
        rows = run.cohort.rows(split, run.spec.hemispheres)
        return tumour_examples(run.cohort.x, rows, n, gen, segmentation=self.segmentation, cube=run.mp.genesis_cube)


class Tumour3D(Tumour2D):
    """The medical stand-in in 3D: segment the synthetic tumour in a sub-volume."""

    segmentation = True

    def model(self, arch, n_slices):
        return UNet3D(out_channels=1)

    def loss(self, out, target):
        return F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), target) + (1 - _dice(out, target)).mean()

    def score(self, out, y):
        return F.binary_cross_entropy(out.clamp(1e-6, 1 - 1e-6), y).item(), _dice((out > 0.5).float(), y).mean().item()


def task_for(name: str, arch: str) -> Classify:
    """The task object of a phase's task name (``restore``, ``tumour`` or a cohort label) and architecture."""
    if name == "restore":
        return Restore()
    if name == "tumour":
        return Tumour3D() if arch == "3d" else Tumour2D()
    return Classify(name)
