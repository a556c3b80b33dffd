"""Cohort-level draws: clinical rows, lesion plans, latent FLAIR evolution, split, readers, oracle.

Everything here is vectorised over patients and driven by one ``numpy`` generator seeded with the
cohort seed, so the table is identical whatever the number of worker processes.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.interpolate import PchipInterpolator
from scipy.special import expit
from scipy.stats import norm, rankdata
from sklearn.model_selection import train_test_split

from tss.synth.params import param
from tss.task import Task

TERRITORY_BOXES = {
    # hemisphere-relative MNI boxes (|x|, y, z ranges in mm) where a lesion centre may fall
    "MCA": ((30, 52), (-60, 30), (0, 45)),
    "lacunar": ((15, 28), (-20, 15), (-5, 20)),
    "PCA": ((8, 30), (-95, -65), (-5, 20)),
    "ACA": ((4, 12), (-30, 40), (35, 65)),
}


def quantile_function(anchors) -> PchipInterpolator:
    """Monotone inverse CDF through (probability, value) anchors, e.g. Table 1's median and IQR."""
    p, v = np.asarray(anchors, dtype=float).T
    return PchipInterpolator(p, v)


def exact_quantiles(z: np.ndarray) -> np.ndarray:
    """Replace normal draws by the normal quantiles of their ranks: the cohort then has exactly
    the target distribution's quantiles (its median is Table 1's median at any n), while the
    order of patients, and so any rank correlation between variables, is kept."""
    return norm.ppf((rankdata(z) - 0.5) / len(z))


def sample_tss(rng: np.random.Generator, n: int, exact: bool = False) -> np.ndarray:
    """Split log-normal onset-to-MRI times matching Table 1's median and quartiles."""
    z = rng.standard_normal(n)
    if exact:
        z = exact_quantiles(z)
    sigma = np.where(z < 0, param("tss_sigma_below"), param("tss_sigma_above"))
    lo, hi = param("tss_range")
    return np.clip(param("tss_median") * np.exp(sigma * z), lo, hi)


def flair_latent(t, midpoint, width, amplitude) -> np.ndarray:
    """Relative T2 elongation of the lesion at time t: amplitude * sigmoid((t - midpoint) / width)."""
    return amplitude * expit((np.asarray(t) - midpoint) / width)


def adc_ratio(t, drop, t2_increase=0.0) -> np.ndarray:
    """Lesion/healthy ADC: falls within the first hour, pseudo-normalises over about a week, and rises
    with the lesion's vasogenic edema (its relative T2 change) by ``adc_per_t2_increase``, but not
    past ``adc_edema_ceiling`` (nor lower than it would be without the edema)."""
    t = np.asarray(t, dtype=float)
    fall = 1 - np.exp(-t / param("adc_fall_tau"))
    cyto = 1 - drop * fall * np.exp(-t / param("adc_recovery_tau"))
    edema = cyto + param("adc_per_t2_increase") * np.asarray(t2_increase, dtype=float)
    return np.minimum(edema, np.maximum(cyto, param("adc_edema_ceiling")))


def _sample_flair_dynamics(rng, n):
    mid = param("flair_midpoint_median") * np.exp(param("flair_midpoint_sigma") * rng.standard_normal(n))
    amp = param("t2_increase_median") * np.exp(param("t2_increase_sigma") * rng.standard_normal(n))
    return mid, np.full(n, param("flair_width")), amp


def sample_patients(n: int, seed: int) -> pd.DataFrame:
    """Clinical rows and the generator's latent truth for ``n`` patients."""
    if n < 10:
        raise ValueError(f"need at least 10 patients to fill train/val/test splits, got n={n}")
    rng = np.random.default_rng([seed, 0])
    ids = [f"sub-{i + 1:04d}" for i in range(n)]

    tss = sample_tss(rng, n, exact=True)
    age = quantile_function(param("age_quantiles"))(norm.cdf(exact_quantiles(rng.standard_normal(n))))
    sex = np.where(rng.random(n) < param("female_fraction"), "F", "M")

    names, probs = zip(*param("territory_probabilities"))
    territory = rng.choice(names, size=n, p=np.array(probs) / np.sum(probs))
    vol_params = {t: (m, s) for t, m, s in param("lesion_volume_lognormal")}
    z_vol = rng.standard_normal(n)
    med = np.array([vol_params[t][0] for t in territory])
    sig = np.array([vol_params[t][1] for t in territory])
    vmin, vmax = param("lesion_volume_range")
    volume = np.clip(med * np.exp(sig * z_vol), vmin, vmax)
    side = np.where(territory == "embolic", "both", np.where(rng.random(n) < 0.5, "left", "right"))

    rho = param("nihss_lesion_correlation")
    z_log_vol = (np.log(volume) - np.log(volume).mean()) / max(np.log(volume).std(), 1e-9)
    z_nihss = rho * z_log_vol + np.sqrt(1 - rho**2) * rng.standard_normal(n)
    nihss = np.round(quantile_function(param("nihss_quantiles"))(norm.cdf(exact_quantiles(z_nihss)))).astype(int)

    mid, width, amp = _sample_flair_dynamics(rng, n)
    drop = np.clip(param("adc_drop_mean") + param("adc_drop_sd") * rng.standard_normal(n), 0.2, 0.6)
    field = rng.choice(param("field_strengths"), size=n)
    latent = flair_latent(tss, mid, width, amp)

    df = pd.DataFrame({
        "patient_id": ids,
        "onset_to_mri_min": np.round(tss, 1),
        "age": np.round(age).astype(int),
        "sex": sex,
        "nihss": nihss,
        "territory": territory,
        "stroke_side": side,
        "lesion_ml_planned": np.round(volume, 3),
        "flair_midpoint_min": mid,
        "flair_width_min": width,
        "t2_increase_max": amp,
        "adc_drop": drop,
        "field_T": field,
        "latent_t2_increase": latent,
        "latent_adc_ratio": adc_ratio(tss, drop, latent),
    })
    df["split"] = assign_split(df["onset_to_mri_min"].to_numpy(), seed)
    return df


def assign_split(tss: np.ndarray, seed: int) -> np.ndarray:
    """64/16/20 train/val/test by patient, stratified on TSS < 4.5 h, fixed by the seed."""
    tr, va, te = param("split_fractions")
    idx = np.arange(len(tss))
    y = Task.TSS45.label(tss).astype(bool)
    rest, test = train_test_split(idx, test_size=te, stratify=y, random_state=seed)
    train, val = train_test_split(rest, test_size=va / (tr + va), stratify=y[rest], random_state=seed)
    split = np.empty(len(tss), dtype=object)
    split[train], split[val], split[test] = "train", "val", "test"
    return split


def oracle_scores(df: pd.DataFrame) -> np.ndarray:
    """Score of an oracle that sees the true latent FLAIR change: less change, earlier onset."""
    return -df["latent_t2_increase"].to_numpy()


def population_oracle_auc(n: int = 200_000, seed: int = 12345) -> float:
    """The oracle's AUC for TSS < 4.5 h over the generator's population (Monte Carlo)."""
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(seed)
    t = sample_tss(rng, n)
    mid, width, amp = _sample_flair_dynamics(rng, n)
    return float(roc_auc_score(Task.TSS45.label(t), -flair_latent(t, mid, width, amp)))


def simulate_readers(df: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Three readers call DWI-FLAIR mismatch (1 = predicts TSS < 4.5 h) from the visible contrast.

    The visible contrast is the lesion's measured FLAIR signal ratio minus one, on the patient's
    own FLAIR (partial volume and noise included). Each reader perceives it with a case
    difficulty shared by all readers, a term that grows for small lesions, and their own noise,
    and calls mismatch when the perceived contrast is below their threshold.
    """
    rng = np.random.default_rng([seed, 1])
    n = len(df)
    contrast = df["flair_ratio"].to_numpy() - 1.0
    vol = np.maximum(df["lesion_ml"].to_numpy(), 0.05)
    shared = param("reader_shared_noise_sd") * rng.standard_normal(n)
    small = param("reader_volume_noise") / np.sqrt(vol) * rng.standard_normal(n)
    out = {}
    for name, threshold, sd in param("readers"):
        perceived = contrast + shared + small + sd * rng.standard_normal(n)
        out[f"reader{name[1:]}"] = (perceived < threshold).astype(int)
    return pd.DataFrame(out, index=df.index)
