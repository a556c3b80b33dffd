"""The paper's training phases and the experiment grid of its Table 2, as data.

A :class:`Phase` says what is learned (task and label), from which hemispheres, with which optimiser
settings; an :class:`Experiment` is one architecture trained in one phase from one initialisation.
:func:`grid` lists the experiments of Table 2 in an order where every weight source runs first.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from ..profiles import ARCHS
from ..task import Task


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
    "stroke": Phase("stroke", Task.STROKE, "Phase 1: stroke detection", "all", 5e-4, 1e-2, 16),
    "tss3": Phase("tss3", Task.TSS3, f"Phase 2: {Task.TSS3.title}", "stroke", 1e-5, 1e-3, 8),
    "tss45": Phase("tss45", Task.TSS45, f"Phase 3: {Task.TSS45.title}", "stroke", 1e-5, 1e-3, 8),
    "attention": Phase("attention", Task.TSS45, f"Phase 4: attention fine-tuning, {Task.TSS45.title}", "stroke",
                       1e-5, 1e-3, 8),
}

INITS = ("random", "imagenet", "genesis", "medical", "transfer")
TSS_PHASES = ("tss3", "tss45", "attention")  # the phases a training recipe other than the paper's changes


@dataclass(frozen=True)
class Recipe:
    """How a TSS phase is optimised, when not as the paper says (section 2.4: AdaBound 1e-5 -> 1e-3,
    batch 8, the early layers frozen after transfer, early stopping on validation AUC, patience 10).

    A recipe other than ``paper`` is part of an experiment's name (``2d-tss45-transfer+lr100``) and of
    its configuration, so its runs are cached and keyed apart from the paper's. Phase 1 and the
    pretraining phases always follow the paper: a recipe changes only the TSS phases.
    """

    name: str
    what: str                       # one line for the book's variants table
    lr_scale: float = 1.0           # multiplies AdaBound's initial and final learning rate
    freeze: str | None = None       # None: the paper's rule (Experiment.frozen); "none"; "all-but-head"
    stop_on: str = "auc"            # early stopping on validation "auc" (the paper's) or "loss"
    patience: int | None = None     # None: the profile's
    weight_decay: float = 0.0       # AdaBound's L2 penalty
    augment: bool = False           # small affine + whole-hemisphere intensity scaling (keeps lesion/normal ratios)
    start_from: str | None = None   # LP-FT: start from this recipe's run of the same experiment, head included
    aggregate: str = "probability"  # 2D: slice outputs combined as probabilities (ours) or logits (SliceAttentionNet)
    input: str = "hemisphere"       # "dwi-lesion": the hemisphere outside its DWI-bright region zeroed (a diagnostic)

    def to_dict(self) -> dict:
        d = asdict(self)
        for k, default in (("aggregate", "probability"), ("input", "hemisphere")):
            if d[k] == default:  # fields added later: the runs keyed before them keep their keys
                del d[k]
        return d


RECIPES = {r.name: r for r in (
    Recipe("paper", "the paper's: AdaBound 1e-5 -> 1e-3, early layers frozen, stop on val. AUC, patience 10"),
    Recipe("lr10", "learning rate x10 (1e-4 -> 1e-2)", lr_scale=10),
    Recipe("lr100", "learning rate x100 (1e-3 -> 1e-1)", lr_scale=100),
    Recipe("probe", "linear probe: only the head (output layer and slice weights) trains, at lr x100",
           freeze="all-but-head", lr_scale=100),
    Recipe("lpft", "head first (LP-FT): from the linear probe, head included, then the paper's recipe",
           start_from="probe"),
    Recipe("unfrozen", "nothing frozen", freeze="none"),
    Recipe("stoploss", "early stopping on validation loss", stop_on="loss"),
    Recipe("patience20", "early stopping patience 20", patience=20),
    Recipe("wd", "weight decay 1e-4", weight_decay=1e-4),
    Recipe("augment", "augmentation: small affine, whole-hemisphere intensity scaling", augment=True),
    Recipe("logits", "2D: slice outputs combined as a weighted mean of logits, not of probabilities",
           aggregate="logit"),
    Recipe("lesion", "a diagnostic, not the paper's input: only the DWI-bright region (z > 3, grown by 2 pixels) "
                     "is shown, the rest of the hemisphere zeroed", input="dwi-lesion"),
)}
# where "transfer" takes its weights from: the previous phase of the paper's chain
PREVIOUS = {"tss3": "stroke", "tss45": "tss3", "attention": "tss45"}


@dataclass(frozen=True)
class Experiment:
    arch: str    # 2d | 3d
    phase: str   # a key of PHASES
    init: str    # one of INITS
    recipe: str = field(default="paper")  # a key of RECIPES (TSS phases only)

    def __post_init__(self):
        if self.recipe not in RECIPES:
            raise ValueError(f"unknown recipe {self.recipe!r}; expected one of {', '.join(RECIPES)}")
        if self.training.aggregate != "probability" and self.arch != "2d":
            raise ValueError(f"recipe {self.recipe!r} changes how the 2D model combines its slices; "
                             f"the {self.arch} model has no slices to combine")
        if self.recipe != "paper" and self.phase not in TSS_PHASES:
            raise ValueError(f"recipe {self.recipe!r} applies to the TSS phases ({', '.join(TSS_PHASES)}), "
                             f"not to {self.phase!r}")

    @classmethod
    def parse(cls, name: str) -> Experiment:
        """The experiment a run folder is named after, e.g. ``"2d-tss45-transfer"`` or, with a recipe
        other than the paper's, ``"2d-tss45-transfer+lr100"``; raises ``ValueError`` on any other name."""
        base, plus, recipe = name.partition("+")
        parts = base.split("-")
        if (len(parts) != 3 or parts[0] not in ARCHS or parts[1] not in PHASES or parts[2] not in INITS
                or (plus and (recipe == "paper" or recipe not in RECIPES))):
            raise ValueError(f"{name!r} is not an experiment name like '2d-tss45-transfer' or "
                             f"'2d-tss45-transfer+lr100' (architecture {'/'.join(ARCHS)}, a phase of "
                             f"{', '.join(PHASES)}, an init of {', '.join(INITS)}, optionally + a recipe of "
                             f"{', '.join(r for r in RECIPES if r != 'paper')})")
        return cls(*parts, recipe=recipe or "paper")

    @property
    def name(self) -> str:
        base = f"{self.arch}-{self.phase}-{self.init}"
        return base if self.recipe == "paper" else f"{base}+{self.recipe}"

    @property
    def training(self) -> Recipe:
        """The recipe's settings (:data:`RECIPES`)."""
        return RECIPES[self.recipe]

    @property
    def spec(self) -> Phase:
        return PHASES[self.phase]

    def source(self) -> str | None:
        """The experiment whose best checkpoint initialises this one (None: random or ImageNet). A
        transfer under a recipe continues that recipe's previous TSS phase (phase 1 is the paper's);
        an LP-FT recipe starts from its linear probe of the same experiment."""
        if self.training.start_from:
            return Experiment(self.arch, self.phase, self.init, self.training.start_from).name
        if self.init in ("random", "imagenet"):
            return None
        if self.init == "genesis":
            return Experiment("3d", "genesis", "random").name
        if self.init == "medical":
            return Experiment(self.arch, "medical", "random").name
        prev = PREVIOUS[self.phase]
        if prev == "stroke":
            return Experiment(self.arch, prev, stroke_init(self.arch)).name
        return Experiment(self.arch, prev, "transfer", self.recipe).name

    def frozen(self) -> str:
        """none | early | all-but-attention | all-but-head: the paper freezes the early layers when it fine-tunes
        pretrained weights for TSS (phases 2-3) and trains only the attention in phase 4. Random
        initialisation trains everything (freezing random filters would only cripple it). A recipe may
        say otherwise: "none", or "all-but-head" (a linear probe of the source's features)."""
        if self.training.freeze is not None:
            return self.training.freeze
        if self.phase == "attention":
            return "all-but-attention"
        if self.phase in ("tss3", "tss45") and self.init != "random":
            return "early"
        return "none"

    def to_dict(self) -> dict:
        d = {"arch": self.arch, "phase": self.phase, "init": self.init, "name": self.name,
             "source": self.source(), "frozen": self.frozen(), **{f"phase_{k}": v for k, v in asdict(self.spec).items()}}
        if self.recipe != "paper":  # the paper's runs keep the configuration (and so the key) they always had
            d["recipe"] = self.training.to_dict()
        return d


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
