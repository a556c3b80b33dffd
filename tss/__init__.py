"""tss: companion library for time-since-stroke-onset (TSS) classification from MRI.

Modules
-------
manifest  cohort manifest: schema, loading, validation
synth     physics-based synthetic cohort on MNI152 anatomy
stats     small statistics helpers (agreement, reader metrics, ROC)
cli       ``python -m tss ...`` entry point
"""

__version__ = "0.1.0"
