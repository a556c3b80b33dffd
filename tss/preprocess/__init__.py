"""Preprocessing (paper section 2.1): native MRI -> registered template-space volumes ->
hemisphere tensors. See :mod:`tss.preprocess.pipeline` for the data flow and caching."""

from tss.preprocess.cache import PreprocessCache
from tss.preprocess.pipeline import (
    CHANNELS,
    PIPELINE_VERSION,
    CohortRun,
    Outcome,
    assemble,
    hemisphere_labels,
    hemispheres,
    load_hemispheres,
    load_patient,
    preprocess_cohort,
    run_patient,
)
from tss.preprocess.steps import TARGET_SHAPE, PatientError, load_template, target_affine

__all__ = ["CHANNELS", "PIPELINE_VERSION", "CohortRun", "PreprocessCache", "Outcome", "assemble", "hemisphere_labels",
           "hemispheres", "load_hemispheres", "load_patient", "preprocess_cohort", "run_patient", "TARGET_SHAPE", "PatientError",
           "load_template", "target_affine"]
