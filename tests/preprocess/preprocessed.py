"""The patients of the small cohort that the ``processed`` fixture (conftest.py) preprocesses: the
qc and pipeline tests read them."""

GOOD = ["sub-0001", "sub-0002"]
