"""Preprocessing quality control (tss.preprocess.qc): registration error and skull stripping
against the synthetic truth, the summary table."""

from __future__ import annotations

import pandas as pd
from preprocessed import GOOD

from tss.preprocess import qc


def test_registration_and_skull_stripping_against_the_synthetic_truth(processed):
    root, cache = processed
    for pid in GOOD:
        err = qc.registration_error(root, cache, pid)
        strip = qc.skull_strip_dice(root, cache, pid)
        # the smooth anatomical deformation alone leaves ~1.6 mm for the best possible affine
        assert err["dwi_error_mean_mm"] < 2.5 and err["flair_error_mean_mm"] < 3.5, err
        assert strip["brain_dice"] >= 0.95, strip
        assert strip["shell_voxels_in_mask_fraction"] < 0.01, strip


def test_qc_summary_names_the_worst_patient_of_each_measure():
    from tss.preprocess import qc

    rows = [{"patient_id": pid, "dwi_error_mean_mm": e, "flair_error_mean_mm": 1.0, "dwi_error_p95_mm": 2 * e,
             "affine_floor_mm": 1.5, "brain_dice": d, "shell_voxels_in_mask_fraction": 0.0}
            for pid, e, d in [("a", 1.8, 0.97), ("b", 6.1, 0.91), ("c", 2.0, 0.98)]]
    s = qc.summarise(pd.DataFrame(rows))
    assert s.at["b0/b1000 error (mm)", "worst patient"] == "b (6.10)"
    assert s.at["brain Dice", "worst patient"] == "b (0.91)"  # the smallest Dice is the worst
    assert s.at["b0/b1000 error (mm)", "max"] == 6.1 and s.at["brain Dice", "min"] == 0.91
    assert s.at["b0/b1000 error (mm)", "target"] == "< 2"
