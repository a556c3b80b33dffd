"""The paper's training phases (section 2.3) and the experiment grid of its Table 2."""

from .config import INITS, PHASES, Experiment, Phase, grid
from .data import Hemispheres, add_tumour, patient_predictions
from .loop import NonFinite, Run, SourceMissing, run_grid

__all__ = ["INITS", "PHASES", "Hemispheres", "Experiment", "NonFinite", "Phase", "Run", "SourceMissing", "add_tumour", "grid",
           "patient_predictions", "run_grid"]
