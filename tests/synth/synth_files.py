"""A generated cohort's files, as the tests of tss.synth and tss.synth.acquire read them."""

from __future__ import annotations

import json

import nibabel as nib

from tss import synth


def _load(root, pid, key):
    return nib.load(str(root / synth.patient_paths(pid)[key]))


def _truth(root, pid):
    return json.loads((root / synth.patient_paths(pid)["truth"]).read_text())
