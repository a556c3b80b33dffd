"""The preprocessing cache (tss.preprocess.cache): where patients and the assembled cohort live."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tss import preprocess


def test_the_cache_store_reads_patients_and_the_assembled_cohort_where_preprocessing_writes_them(tmp_path):
    store = preprocess.PreprocessCache(tmp_path)
    assert store.patient_ids() == [] and not store.assembled() and not store.has_patient("sub-0001")
    store.patients_dir.mkdir()
    np.savez(store.patient_file("sub-0002", ".npz"), volume=np.ones((3, 4, 4, 2), np.float16), brain=np.ones((4, 4, 2), bool))
    store.patient_file("sub-0002", ".json").write_text('{"label_left": 1}')
    np.savez(store.patient_file("sub-0001", ".npz"), volume=np.zeros((3, 4, 4, 2), np.float16))  # no .json yet
    assert store.patient_ids() == ["sub-0001", "sub-0002"]
    assert store.has_patient("sub-0002") and not store.has_patient("sub-0001")
    p = store.load_patient("sub-0002")
    assert p["meta"] == {"label_left": 1} and p["volume"].shape == (3, 4, 4, 2) and p["brain"].all()
    assert preprocess.load_patient(tmp_path, "sub-0002")["meta"] == p["meta"]   # the module function reads the same
    with pytest.raises(ValueError):
        store.patient_file("../outside", ".npz")
    store.cohort_dir.mkdir()
    np.save(store.hemispheres_npy, np.zeros((2, 3, 26, 8, 4), np.float16))
    pd.DataFrame({"row": [0, 1], "patient_id": ["sub-0002"] * 2}).to_csv(store.index_csv, index=False)
    store.cohort_json.write_text('{"key": "k"}')
    arr, index = preprocess.load_hemispheres(tmp_path)
    assert store.assembled() and arr.shape == (2, 3, 26, 8, 4) and list(index["row"]) == [0, 1]
    assert store.cohort_meta() == {"key": "k"}
