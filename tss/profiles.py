"""Run profiles. ``quick``: CPU, CI, laptops (80 patients, minutes); ``lowres``: the paper's cohort
(422 patients) and grid at a reduced in-plane input size, trainable on two CPU cores in hours;
``full``: the paper's sizes, on a GPU."""

from __future__ import annotations

from dataclasses import dataclass

PROFILES = ("quick", "lowres", "full")
# the order in which the book looks for results: the largest profile that has them
BY_SIZE = ("full", "lowres", "quick")


# the synthetic cohort variant (tss.synth.params.VARIANTS) every profile generates by default: the first
# cohort, whose committed results are the clock study's positive control
DEFAULT_VARIANT = "loud"

@dataclass(frozen=True)
class CohortProfile:
    n_patients: int
    seed: int = 0


COHORT = {
    # quick: enough patients for every split to hold both TSS classes (test ~16 patients)
    "quick": CohortProfile(n_patients=80),
    # lowres: the paper's cohort size (the same 422 patients as full: same seed)
    "lowres": CohortProfile(n_patients=422),
    # full: the paper's cohort size
    "full": CohortProfile(n_patients=422),
}


ARCHS = ("2d", "3d")  # the paper's two models: slice-wise 2D ResNet-18 and 3D U-Net encoder


@dataclass(frozen=True)
class ModelProfile:
    """Input size of the models. The hemisphere tensors are always 3 x 26 x 224 x 112 on disk;
    ``downsample`` shrinks each slice in-plane (average pooling) before a model sees it."""

    downsample_2d: int
    downsample_3d: int
    genesis_cube: tuple[int, int, int]  # Models Genesis / tumour sub-volume (slices, rows, columns)

    def downsample(self, arch: str) -> int:
        return {"2d": self.downsample_2d, "3d": self.downsample_3d}[arch]

    def input_shape(self, arch: str) -> tuple[int, int, int]:
        d = self.downsample(arch)
        return (26, 224 // d, 112 // d)


MODEL = {
    # quick: measured on 2 CPU cores, a training step at 56 x 28 runs 14 hemispheres/s (2D) and
    # 4.7 (3D); the 3D model goes to 28 x 14 (19/s) so that the whole grid takes minutes
    "quick": ModelProfile(downsample_2d=4, downsample_3d=8, genesis_cube=(16, 16, 8)),
    # full: the paper's input; Models Genesis' cubes are 64 x 64 x 32, our volumes have 26 slices
    # lowres: both models at 56 x 28 (a 1 mL lesion is ~3 pixels across); the data-size study of the
    # Training chapter measures the 2D chain at this size and at twice it (tss.train.study; twice the
    # input detected stroke better and changed no TSS model significantly, so 2D stays here). Measured
    # here, training steps at batch 8 in bf16: 2D 20 hemispheres/s, 3D 7.6
    "lowres": ModelProfile(downsample_2d=4, downsample_3d=4, genesis_cube=(16, 32, 16)),
    "full": ModelProfile(downsample_2d=1, downsample_3d=1, genesis_cube=(16, 64, 64)),
}


@dataclass(frozen=True)
class TrainProfile:
    """Epoch budget of the training phases (the optimiser settings are the paper's in both)."""

    max_epochs: int
    patience: int              # early stopping on the validation AUC
    seeds: tuple[int, ...]
    genesis_cubes: int         # Models Genesis sub-volumes per epoch
    medical_per_epoch: int     # synthetic tumour examples per epoch (a fixed set, drawn once)
    synthetic_eval: int        # fixed validation / test sets of the Genesis and tumour tasks
    precise_bn_batches: int = 8  # batch-norm statistics before each evaluation: from at most this many
    #                              training batches (a random subset each epoch), not the whole epoch again


TRAIN = {
    "quick": TrainProfile(max_epochs=6, patience=3, seeds=(0,), genesis_cubes=64, medical_per_epoch=64,
                          synthetic_eval=32),
    # lowres: the paper's early stopping (patience 10) under an epoch cap two cores can afford
    "lowres": TrainProfile(max_epochs=50, patience=10, seeds=(0,), genesis_cubes=256, medical_per_epoch=256,
                           synthetic_eval=64),
    "full": TrainProfile(max_epochs=100, patience=10, seeds=(0, 1, 2, 3, 4), genesis_cubes=512,
                         medical_per_epoch=512, synthetic_eval=128),
}


@dataclass(frozen=True)
class StudyProfile:
    """The data-size study (tss.train.study): training-set sizes in stroke hemispheres (None: the
    whole training split) and in-plane poolings of the 2D input."""

    sizes: tuple[int | None, ...]
    downsamples: tuple[int, ...]


STUDY = {
    # quick: ~53 training stroke hemispheres; one input size (the CI book builds it from nothing)
    "quick": StudyProfile(sizes=(12, 25, None), downsamples=(4,)),
    # lowres: 283 training stroke hemispheres, the profile's 56 x 28 and twice that
    "lowres": StudyProfile(sizes=(50, 100, 200, None), downsamples=(4, 2)),
    "full": StudyProfile(sizes=(50, 100, 200, None), downsamples=(1, 2)),
}


def default_profile() -> str:
    """'full' when a CUDA GPU is visible, else 'quick'."""
    try:
        import torch

        return "full" if torch.cuda.is_available() else "quick"
    except Exception:  # torch missing or broken: the CPU profile still works
        return "quick"


def check(profile: str) -> str:
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; expected one of {PROFILES}")
    return profile
