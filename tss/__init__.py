"""tss: companion library for time-since-stroke-onset (TSS) classification from MRI.

Modules, in the order the data flows through them
-------------------------------------------------
profiles    run profiles (quick, lowres, full): cohort size, input size, epoch budget
project     the project's folders (cohort, caches, runs, results) from its root, from any working directory
paths       paths from untrusted values (manifest cells, patient ids) that stay in their folder
manifest    cohort manifest: schema, loading, validation
task        the tasks (stroke detection, TSS < 3 h, TSS < 4.5 h): name, threshold, label rule, title
template    the MNI152 head (brain tissues, CSF, skull, scalp, neck): preprocessing's target, synth's anatomy
synth       physics-based synthetic cohort on MNI152 anatomy
preprocess  the paper's pipeline: N4, registration to MNI, normalisation, hemisphere tensors;
            PreprocessCache: the one place that spells the cache's layout
models      the 2D and 3D attention networks, Models Genesis, weight transfer and freezing
precision   training precision by device capability (bf16, fp16 with a scaler, fp32)
train       the paper's phases and the grid of Table 2, the training loop, the data-size study, training
            recipes of the TSS phases and the planted-signal cohort (clock, planted)
runtree     the run tree results/<profile>/runs/seed<k>/<experiment>/: the one place that spells it
baselines   the radiomics baseline of Lee et al. 2020
audit       where the clock goes: TSS < 4.5 h told at each step from the latent truth to the trained models
gradcam     Grad-CAM of both models and its overlap with the lesion
stats       AUC, operating points, bootstrap and exact intervals, DeLong, Fleiss' kappa
results     Table 2, the gains of Figures 6-7, Figure 8, what the TSS models learnt from phase 1
reproduction  the claims table of the Reproduction page: each claim, its evidence, ours, a verdict
stages      one function per chapter: computes and writes what its page shows, and returns it
paper       the paper's own numbers (its Tables 1 and 2), never ours
tables      tables computed from a cohort (Table 1)
viz         figure helpers for native images
provenance  how a result was made: machine, software, commit, wall time
atomic      atomic file writes and the content key of every cached step
parallel    one parallel map over patients (joblib): ordered results, a failure never stops the rest
engine      the grid, synthesis and preprocessing on a Dask cluster: runs wait for their weight source
cli         ``python -m tss ...`` entry point
"""

__version__ = "0.1.0"
