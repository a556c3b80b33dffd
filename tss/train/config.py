"""The paper's training phases and the experiment grid of its Table 2, as data.

A :class:`Phase` says what is learned (task and label), from which hemispheres, with which optimiser
settings; an :class:`Experiment` is one architecture trained in one phase from one initialisation.
:func:`grid` lists the experiments of Table 2 in an order where every weight source runs first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..profiles import ARCHS


@dataclass(frozen=True)
class Phase:
    name: str
    task: str             # stroke | tss_lt_3h | tss_lt_4_5h | restore (Genesis) | tumour (medical)
    title: str
    hemispheres: str      # all | stroke: which hemispheres are examples
    lr: float             # AdaBound initial and final learning rate (paper section 2.3)
    final_lr: float
    batch_size: int
    monitor: str = "val_auc"   # what early stopping watches (higher is better)


PHASES = {
    "genesis": Phase("genesis", "restore", "Models Genesis self-supervised restoration (3D)", "all",
                     1e-3, 1e-1, 8, monitor="val_neg_mse"),
    "medical": Phase("medical", "tumour", "synthetic tumour task (stands in for medical pretraining)", "all",
                     5e-4, 1e-2, 16, monitor="val_score"),
    "stroke": Phase("stroke", "stroke", "Phase 1: stroke detection", "all", 5e-4, 1e-2, 16),
    "tss3": Phase("tss3", "tss_lt_3h", "Phase 2: TSS < 3 h", "stroke", 1e-5, 1e-3, 8),
    "tss45": Phase("tss45", "tss_lt_4_5h", "Phase 3: TSS < 4.5 h", "stroke", 1e-5, 1e-3, 8),
    "attention": Phase("attention", "tss_lt_4_5h", "Phase 4: attention fine-tuning, TSS < 4.5 h", "stroke",
                       1e-5, 1e-3, 8),
}

INITS = ("random", "imagenet", "genesis", "medical", "transfer")
# where "transfer" takes its weights from: the previous phase of the paper's chain
PREVIOUS = {"tss3": "stroke", "tss45": "tss3", "attention": "tss45"}


@dataclass(frozen=True)
class Experiment:
    arch: str    # 2d | 3d
    phase: str   # a key of PHASES
    init: str    # one of INITS

    @classmethod
    def parse(cls, name: str) -> Experiment:
        """The experiment a run folder is named after, e.g. ``"2d-tss45-transfer"``; raises
        ``ValueError`` on any other name."""
        parts = name.split("-")
        if len(parts) != 3 or parts[0] not in ARCHS or parts[1] not in PHASES or parts[2] not in INITS:
            raise ValueError(f"{name!r} is not an experiment name like '2d-tss45-transfer' "
                             f"(architecture {'/'.join(ARCHS)}, a phase of {', '.join(PHASES)}, an init of {', '.join(INITS)})")
        return cls(*parts)

    @property
    def name(self) -> str:
        return f"{self.arch}-{self.phase}-{self.init}"

    @property
    def spec(self) -> Phase:
        return PHASES[self.phase]

    def source(self) -> str | None:
        """The experiment whose best checkpoint initialises this one (None: random or ImageNet)."""
        if self.init in ("random", "imagenet"):
            return None
        if self.init == "genesis":
            return Experiment("3d", "genesis", "random").name
        if self.init == "medical":
            return Experiment(self.arch, "medical", "random").name
        prev = PREVIOUS[self.phase]
        return Experiment(self.arch, prev, stroke_init(self.arch) if prev == "stroke" else "transfer").name

    def frozen(self) -> str:
        """none | early | all-but-attention: the paper freezes the early layers when it fine-tunes
        pretrained weights for TSS (phases 2-3) and trains only the attention in phase 4. Random
        initialisation trains everything (freezing random filters would only cripple it)."""
        if self.phase == "attention":
            return "all-but-attention"
        if self.phase in ("tss3", "tss45") and self.init != "random":
            return "early"
        return "none"

    def to_dict(self) -> dict:
        return {"arch": self.arch, "phase": self.phase, "init": self.init, "name": self.name,
                "source": self.source(), "frozen": self.frozen(), **{f"phase_{k}": v for k, v in asdict(self.spec).items()}}


def stroke_init(arch: str) -> str:
    """Phase 1 starts from random weights (2D) or from Models Genesis (3D)."""
    return "genesis" if arch == "3d" else "random"


def grid(archs=("2d", "3d"), phases=None, imagenet: bool = True) -> list[Experiment]:
    """Every experiment of Table 2 (plus the pretraining runs they need), sources first."""
    out = []
    for arch in archs:
        if arch == "3d":
            out.append(Experiment(arch, "genesis", "random"))
        out.append(Experiment(arch, "medical", "random"))
        out.append(Experiment(arch, "stroke", stroke_init(arch)))
        baselines = ["random"] + (["imagenet"] if arch == "2d" and imagenet else []) + ["medical", "transfer"]
        for ph in ("tss3", "tss45"):
            out += [Experiment(arch, ph, init) for init in baselines]
        out.append(Experiment(arch, "attention", "transfer"))
    if phases is not None:
        out = [e for e in out if e.phase in phases]
    return out
