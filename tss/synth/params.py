"""Every parameter of the synthetic cohort generator, with its unit and its source.

The book's Data chapter renders :data:`PARAMS` as a table, and ``generator.json`` stores it with
each cohort. Values are either taken from a source (the paper, MRI physics literature) or are
calibration knobs chosen so that the cohort meets a stated target (Table 1 medians, readers'
Fleiss' kappa, oracle AUC); the ``source`` column says which.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from typing import Any

from tss.template import SHELL_MM

# Bump when a change alters generated images or tables: it invalidates the per-patient cache.
GENERATOR_VERSION = "1.1"


@dataclass(frozen=True)
class Param:
    name: str
    value: Any
    unit: str
    group: str
    source: str


_P = [
    # --- clinical rows (paper Table 1) -----------------------------------------------------
    Param("tss_median", 222.0, "min", "clinical", "paper Table 1: onset to MRI median 222 min"),
    Param("tss_sigma_below", 1.11, "ln-units", "clinical",
          "split log-normal; ln(222/105)/0.674 matches Table 1 Q1 = 105 min"),
    Param("tss_sigma_above", 1.73, "ln-units", "clinical",
          "split log-normal; ln(715/222)/0.674 matches Table 1 Q3 = 715 min"),
    Param("tss_range", (20.0, 10080.0), "min", "clinical", "assumption: 20 min to 7 days"),
    Param("age_quantiles", ((0.0, 22.0), (0.25, 55.0), (0.5, 70.0), (0.75, 80.0), (1.0, 97.0)),
          "(quantile, years)", "clinical",
          "monotone (PCHIP) quantile function through Table 1 median/IQR 70 (55-80); tails assumed"),
    Param("female_fraction", 222 / 422, "", "clinical",
          "Table 1: 176 + 46 = 222 of 422 female (the table's 'all' column prints 56%)"),
    Param("nihss_quantiles", ((0.0, 0.0), (0.25, 4.0), (0.5, 8.0), (0.75, 15.5), (1.0, 36.0)),
          "(quantile, points)", "clinical",
          "quantile function through Table 1 NIHSS 8 (4-15/16); tail assumed"),
    Param("nihss_lesion_correlation", 0.5, "Gaussian-copula rho", "clinical",
          "assumption: NIHSS tied to log lesion volume (moderate correlation reported in literature)"),
    Param("split_fractions", (0.64, 0.16, 0.20), "train/val/test", "clinical",
          "paper 2.1: 64% / 16% / 20%, stratified on TSS < 4.5 h"),
    # --- lesions ----------------------------------------------------------------------------
    Param("territory_probabilities",
          (("MCA", 0.60), ("lacunar", 0.20), ("PCA", 0.10), ("ACA", 0.04), ("embolic", 0.06)),
          "", "lesion", "assumption: MCA-dominant AIS cohort; 'embolic' = bilateral scattered lesions"),
    Param("lesion_volume_lognormal",
          (("MCA", 15.0, 1.2), ("lacunar", 0.8, 0.6), ("PCA", 8.0, 1.0), ("ACA", 6.0, 1.0),
           ("embolic", 3.0, 0.8)),
          "(territory, median mL, sigma)", "lesion", "design card: log-normal, about 0.3-150 mL overall"),
    Param("lesion_volume_range", (0.3, 150.0), "mL", "lesion", "design card"),
    # --- lesion physiology in time ---------------------------------------------------------
    Param("adc_drop_mean", 0.40, "fraction", "physiology",
          "ADC ratio ~0.6 in the acute phase (design card; Schlaug et al. 1997)"),
    Param("adc_drop_sd", 0.05, "fraction", "physiology", "assumption: per-patient spread"),
    Param("adc_fall_tau", 20.0, "min", "physiology", "ADC falls within the first hour (design card)"),
    Param("adc_recovery_tau", 10080.0, "min", "physiology", "pseudo-normalisation over ~1 week"),
    Param("adc_per_t2_increase", 0.0, "ADC ratio per relative T2 change", "physiology",
          "none: the lesion's ADC ignores its vasogenic edema (so its DWI brightens with T2 shine-through)"),
    Param("adc_edema_ceiling", 1.0, "ADC ratio", "physiology",
          "the highest ADC ratio the edema can raise a lesion to"),
    Param("flair_midpoint_median", 240.0, "min", "physiology",
          "calibrated: FLAIR positivity develops around 3-4.5 h (Thomalla 2011); oracle AUC target 0.80-0.95"),
    Param("flair_midpoint_sigma", 0.45, "ln-units", "physiology",
          "calibrated: wide spread (collateral flow); oracle AUC target"),
    Param("flair_width", 60.0, "min", "physiology", "calibrated: sigmoid time scale; oracle AUC target"),
    Param("t2_increase_median", 0.30, "relative T2 change", "physiology",
          "calibrated: late-lesion FLAIR ratio ~1.2-1.5 (Thomalla 2009 report rSI 1.1-1.3 at the 4.5 h border)"),
    Param("t2_increase_sigma", 0.70, "ln-units", "physiology", "calibrated: some late lesions stay FLAIR-faint"),
    Param("pd_per_t2_increase", 0.30, "", "physiology", "assumption: water content rises with vasogenic edema"),
    # --- tissue physics ----------------------------------------------------------------------
    Param("tissues_1p5T",
          (("GM", 0.80, 1100, 100, 0.80e-3), ("WM", 0.69, 650, 80, 0.70e-3),
           ("CSF", 1.00, 4000, 2000, 3.0e-3), ("skull", 0.02, 300, 40, 0.3e-3),
           ("fat", 0.90, 260, 80, 0.01e-3), ("muscle", 0.80, 900, 45, 1.5e-3)),
          "(tissue, PD, T1 ms, T2 ms, ADC mm2/s)", "physics",
          "typical 1.5 T relaxation times; ADC from the design card"),
    Param("tissues_3T",
          (("GM", 0.80, 1820, 99, 0.80e-3), ("WM", 0.69, 1084, 69, 0.70e-3),
           ("CSF", 1.00, 4300, 2000, 3.0e-3), ("skull", 0.02, 350, 40, 0.3e-3),
           ("fat", 0.90, 380, 70, 0.01e-3), ("muscle", 0.80, 1400, 40, 1.5e-3)),
          "(tissue, PD, T1 ms, T2 ms, ADC mm2/s)", "physics", "Stanisz et al. 2005 (3 T)"),
    Param("field_strengths", (1.5, 3.0), "T", "physics", "paper 2.1: 1.5 T or 3 T Siemens"),
    Param("b_value", 1000.0, "s/mm2", "physics", "paper: DWI b1000"),
    Param("epi_fat_suppression", 0.10, "residual fat signal", "physics", "EPI DWI is fat-suppressed"),
    # --- acquisition --------------------------------------------------------------------------
    Param("dwi_inplane_mm", (0.859, 1.850), "mm", "acquisition", "paper 2.1"),
    Param("flair_inplane_mm", (0.688, 0.938), "mm", "acquisition", "paper 2.1"),
    Param("slice_thickness_mm", (6.0, 6.5), "mm", "acquisition", "paper 2.1"),
    Param("dwi_tr_te_ms", ((4000, 9000), (78, 122)), "ms", "acquisition", "paper 2.1"),
    Param("flair_tr_te_ms", ((8000, 9000), (88, 134)), "ms", "acquisition",
          "paper 2.1; TI nulls CSF at the patient's field strength"),
    Param("fov_mm", (220.0, 240.0), "mm", "acquisition", "assumption: typical head FOV"),
    Param("slab_mm", (150.0, 165.0), "mm", "acquisition", "assumption: 23-27 slices, paper resizes to 26"),
    Param("subslices", 3, "samples per slice", "acquisition",
          "slice profile: each 6 mm slice averages 3 planes (partial volume)"),
    Param("head_rotation_deg", (6.0, 6.0, 6.0), "sd about x, y, z (clipped at 15)", "acquisition",
          "assumption: head pose in a head coil, which holds tilt within about 15 degrees"),
    Param("head_translation_mm", 8.0, "sd", "acquisition", "assumption"),
    Param("flair_motion", (3.0, 3.0), "(deg sd, mm sd)", "acquisition",
          "assumption: patient moves between DWI and FLAIR"),
    Param("bias_field_sd", 0.15, "log-amplitude per coefficient", "acquisition",
          "assumption: smooth degree-3 multiplicative field, roughly +-30%"),
    Param("snr_b0", (20.0, 40.0), "WM signal / noise sd", "acquisition", "assumption; Rician noise"),
    Param("snr_flair", (25.0, 45.0), "WM signal / noise sd", "acquisition", "assumption; Rician noise"),
    Param("dwi_trace_averages", 3, "directions", "acquisition", "trace DWI averages 3 directions"),
    Param("storage_orientations", ("RAS", "LAS", "LPS"), "", "acquisition",
          "files are stored in different voxel orders, as converters do (reorientation has work)"),
    # --- anatomy -----------------------------------------------------------------------------
    Param("template", "MNI152 2009a sym, 1 mm (nilearn)", "", "anatomy", "nilearn ships T1, GM, WM, brain mask"),
    Param("shell_mm", SHELL_MM, "(layer, from, to) mm",
          "anatomy", "assumption: scalp/skull shell outside a smoothed brain hull; a neck below"),
    Param("head_scale_sd", 0.04, "relative", "anatomy", "assumption: head size variability"),
    Param("elastic_sd_mm", 2.0, "mm", "anatomy", "assumption: smooth random displacement, 8x8x8 control grid"),
    Param("atrophy_per_year", 0.004, "GM fraction to CSF per year over 50", "anatomy",
          "assumption: ~0.4%/year cortical thinning; capped at 0.2"),
    Param("ventricle_expansion", 0.15, "max radial expansion at full atrophy", "anatomy",
          "assumption: ventricles enlarge with age"),
    # --- readers -----------------------------------------------------------------------------
    Param("readers", (("R1", 0.06, 0.08), ("R2", 0.03, 0.08), ("R3", 0.14, 0.16)),
          "(reader, FLAIR-contrast threshold, perceptual noise sd)", "readers",
          "calibrated: paper Table 2 readers' sensitivity/specificity; Fleiss' kappa 0.35-0.55 (paper 0.46)"),
    Param("reader_shared_noise_sd", 0.10, "contrast units", "readers",
          "calibrated: case difficulty common to all readers (gives moderate agreement)"),
    Param("reader_volume_noise", 0.05, "contrast units x mL^-1/2", "readers",
          "assumption: small lesions are harder to read on 6 mm slices"),
]

PARAMS: dict[str, Param] = {p.name: p for p in _P}

# Named cohorts from the same generator: each variant replaces some parameters (value and source).
# "loud" is the first cohort, whose clock is louder than patients' (tss.synth.calibration): the
# committed results were computed on it, and it is the clock study's positive control.
# "calibrated" changes what calibration needs (tss.synth.calibration; what it meets, measured on its
# lowres cohort's images, is in results/lowres/variants/calibrated/calibration.csv).
VARIANTS: dict[str, dict[str, tuple[Any, str]]] = {
    "loud": {},
    "calibrated": {
        "adc_drop_sd": (0.09, "Nagesh et al. 1998: lesion ADC 627 +- 77 against 843 +- 60 (x 1e-6 mm2/s) "
                              "contralaterally within 10 h, a patient-to-patient SD of about 0.09 in the ratio"),
        "adc_per_t2_increase": (0.5, "calibrated against the DWI ratio's AUC (at most 0.65: Petkova 2010): "
                                     "vasogenic edema raises the lesion's ADC as its T2 rises, which offsets part of "
                                     "the T2 shine-through (Lansberg et al. 2001: the lesion's DWI signal stays flat "
                                     "over the first week while its ADC rises from low values)"),
        "adc_edema_ceiling": (0.85, "Lansberg et al. 2001: lesion ADC stays low during the first week and "
                                    "pseudo-normalises only in the second"),
        "flair_midpoint_median": (160.0, "calibrated: 30-50% of patients under 4.5 h visibly FLAIR-positive "
                                         "(ratio > 1.20; Emeriau 2013, PRE-FLAIR)"),
        "readers": ((("R1", 0.14, 0.08), ("R2", 0.11, 0.08), ("R3", 0.22, 0.16)),
                    "calibrated: aggregate sensitivity 0.52-0.72 and specificity 0.68-0.90 (PRE-FLAIR; paper "
                    "Table 2), Fleiss' kappa 0.35-0.55 (paper 0.46)"),
        "reader_shared_noise_sd": (0.06, "calibrated: Fleiss' kappa 0.35-0.55 (paper 0.46)"),
    },
}
# parameters added after the first cohort, with the value that leaves it unchanged: they stay out of
# its cache keys there, so its rendered patients stay valid
NEUTRAL: dict[str, Any] = {"adc_per_t2_increase": 0.0, "adc_edema_ceiling": 1.0}
_active: dict[str, Param] = {}


def overrides(variant: str) -> dict[str, Param]:
    """The parameters ``variant`` replaces, as :class:`Param` s (ValueError for an unknown variant)."""
    if variant not in VARIANTS:
        raise ValueError(f"unknown cohort variant {variant!r}; expected one of {', '.join(VARIANTS)}")
    unknown = set(VARIANTS[variant]) - set(PARAMS)
    if unknown:
        raise ValueError(f"cohort variant {variant!r} sets unknown parameters {sorted(unknown)}")
    return {k: replace(PARAMS[k], value=v, source=src) for k, (v, src) in VARIANTS[variant].items()}


@contextmanager
def using(variant: str | dict[str, Param]) -> Iterator[None]:
    """Within the block, :func:`param` and :func:`as_records` give the parameters of ``variant``
    (a name of :data:`VARIANTS`, or its :func:`overrides`, which is what worker processes get)."""
    global _active
    before, _active = _active, overrides(variant) if isinstance(variant, str) else dict(variant)
    try:
        yield
    finally:
        _active = before


def param(name: str) -> Any:
    return _active.get(name, PARAMS[name]).value


def as_records() -> list[dict]:
    """All parameters (of the variant in use, :func:`using`) as plain dicts (for JSON and for the
    book's table)."""
    return [asdict(_active.get(p.name, p)) for p in _P]
