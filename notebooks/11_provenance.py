# %% [markdown]
# # Appendix: how these results were made
#
# Every number in this book comes from files under `results/<profile>/`. This page says, for each
# profile that has results here, what made them: the wall time of each stage (notebook) of
# `make book` at its last execution, the machine and software it ran on (Python, processor, threads,
# GPU, the versions of the key packages, the hash of `requirements.lock`, the git commit), and which
# machine trained each training run (recorded in the run's `summary.json` when it was trained; a
# rebuild that reads finished runs back does not change it). `provenance.json` beside the results
# lists every installed package.

# %% tags=["parameters", "remove-cell"]
# Parameters (papermill injects new values below this cell); the page shows every profile
profile = "quick"
seed = 0

# %% tags=["hide-input"]
from IPython.display import Markdown, display

from tss import project, provenance

root = project.paths(profile).results_root
shown = project.profiles_with(("provenance.json", project.FINISHED_RUNS), root)  # largest first
for p in shown:
    display(Markdown(f"## Profile `{p}`"))
    stages = provenance.stages_table(project.under(root, p).results)
    if stages.empty:
        display(Markdown("No stage of `make book` has recorded its provenance for this profile: its results "
                         "were made from the command line (`python -m tss train`, `study`, `clock`), and each "
                         "training run below records its own."))
    else:
        total = stages["seconds"].sum()
        display(Markdown(f"**Stages of `make book`**, last execution of each: {total / 60:.1f} minutes in all "
                         "(a stage that read cached results back is fast)."))
        display(stages.style.format({"seconds": "{:.0f}"}).hide(axis="index")
                .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.8em"}]))
        display(Markdown("**Environment** of those stages (one column per distinct environment):"))
        display(provenance.environment_table(project.under(root, p).results))
    where = project.under(root, p)
    for tree, what in ((where.runs, "Training runs (the grid)"), (where.clock, "The clock study's runs (other recipes)")):
        runs = provenance.runs_table(tree)
        if not runs.empty:
            display(Markdown(f"**{what}** by the machine, precision and threads that trained them: "
                             f"{provenance.runs_said(tree)}"))
            display(runs.style.format({"hours": "{:.2f}"}).hide(axis="index")
                    .set_table_styles([{"selector": "td, th", "props": "padding: 0.1em 0.8em"}]))
if not shown:
    display(Markdown("No profile has results here yet: run `make book`."))
