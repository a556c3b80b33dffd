# %% [markdown]
# # Models: the 2D slice-wise attention network, the 3D attention network and Models Genesis
#
# The paper's section 2.2 and Figure 4 describe two classifiers of one hemisphere (3 channels: DWI
# b1000, b0, FLAIR; 26 slices of 224 x 112), and section 2.3 the self-supervised Models Genesis
# pretraining of the 3D one. This chapter builds both from `tss.models` and prints what they are:
# parameters per part, tensor shapes through each network, the attention maps, and the four Genesis
# distortions on a real slice of our cohort. Nothing here is trained; the Training chapter does that.
#
# **2D: self-weighted slice-wise attention** (`tss.models.SliceAttentionNet`). Every slice runs through
# the four residual stages of torchvision's ResNet-18. A soft grid attention gate (Oktay et al. 2018,
# Schlemper et al. 2019) weights the pixels of the penultimate stage (layer3, 256 channels) with a
# gate computed from the last stage (layer4, 512 channels). The pooled layer4 features (512) and the
# pooled attended map (256) are concatenated, and a linear layer gives one logit z_s per slice. A
# learnable weight per slice w_s = sigmoid(v_s) in [0, 1] combines the slices into one hemisphere
# probability, p = sum_s w_s sigmoid(z_s) / sum_s w_s (computed in log space so that it stays exact
# under bf16).
#
# **3D: attention on a 3D U-Net encoder** (`tss.models.Attention3DNet`). The down path of a 3D U-Net with
# the Models Genesis widths (levels 32-64, 64-128, 128-256, 256-512, max pooling between levels). Two
# grid attention gates sit on the 128- and 256-channel outputs, both gated by the deepest (512-channel)
# features; the globally pooled deepest features and both attended maps (512 + 128 + 256) feed one
# logit. The full U-Net (`tss.models.UNet3D`, the same encoder plus a decoder) is what Models Genesis
# trains to restore distorted sub-volumes; its encoder weights initialise the classifier by name.
#
# **Where we differ from Figure 4, and why.** The caption gives a 512 x 7 x 4 final map and a
# 256-channel attention map of 28 x 14 for a 224 x 112 slice. ResNet-18 halves the grid at every stage,
# so its 256-channel stage (layer3) is 14 x 7; 28 x 14 is the grid of the 128-channel stage (layer2).
# The two numbers of the caption cannot both hold: we keep the 256 channels and the gate from the final
# map, so our attention map is 14 x 7 (the shapes table below). The final map is 512 x 7 x 4, as in the
# caption.

# %% tags=["parameters"]
# Parameters (papermill injects new values below this cell)
profile = "quick"
seed = 0
jobs = -1            # torch threads (-1: torch's default)
cache_dir = None     # None: results/<profile>/cache/preprocess (written by 02_preprocessing)
results_dir = None   # None: results/<profile>/models
bench_dir = None     # None: results/bench, written by `make bench` (benchmarks/bench_models.py)

# %% tags=["hide-input"]
import json
import textwrap
import warnings
from pathlib import Path

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import pandas as pd
import torch
from IPython.display import Markdown, display

from tss import paper, profiles, project, viz
from tss.models import Attention3DNet, SliceAttentionNet, UNet3D, imagenet, parameter_table, shape_table
from tss.preprocess import PreprocessCache

profiles.check(profile)
P = project.paths(profile)  # every folder from the project root, whatever the working directory
cache_dir = Path(cache_dir or P.cache)
results_dir = Path(results_dir or P.stage("models"))
bench_dir = Path(bench_dir or P.bench)
results_dir.mkdir(parents=True, exist_ok=True)
if jobs > 0:
    torch.set_num_threads(jobs)
torch.manual_seed(seed)
FULL = profiles.MODEL["full"].input_shape("2d")
print("input per hemisphere (slices, rows, columns): " + "; ".join(
    f"{p} {a.upper()} {profiles.MODEL[p].input_shape(a)}" for p in ("full", "lowres", "quick") for a in ("2d", "3d")))
print(f"this book's profile: {profile}")


# %% [markdown]
# ## Parameters per part
#
# A *part* is the unit that the training phases freeze or train (`model.parts()`). In phases 2 and 3
# the paper freezes the early layers: for the 2D model conv1 with its batch norm (our *stem*) and the
# conv2_x stage (*layer1*); for the 3D model the first two levels of the down path. Phase 4 trains the
# attention modules only. A frozen part keeps its weights and its batch-norm statistics.

# %% tags=["hide-input"]
nets = {"2D slice-wise attention": SliceAttentionNet(n_slices=FULL[0]), "3D attention": Attention3DNet()}
params = parameter_table(nets, UNet3D())
params.to_csv(results_dir / "parameters.csv", index=False)
totals = params.groupby("model", sort=False)["parameters"].sum()
display(Markdown(" ".join(f"**{k}**: {v:,} parameters." for k, v in totals.items())))
params.style.format({"parameters": "{:,}"}).hide(axis="index")


# %% [markdown]
# ## Tensor shapes through the networks
#
# Output shapes of each module for one hemisphere, at the `full` input (the paper's 26 x 224 x 112), at
# the `lowres` input (each slice averaged in-plane 4 x 4 for both models: the input of the committed
# results the Results chapter shows; the 2D model's layer4 is 2 x 1 there) and at the `quick` input (averaged 4 x 4 for the 2D
# model and 8 x 8 for the 3D one, so that CPU training takes minutes). The 2D
# model folds the 26 slices into the batch: its shapes are per slice. The U-Net runs on Models Genesis
# sub-volumes (`genesis_cube` of each profile), not whole hemispheres.

# %% tags=["hide-input"]
shapes = shape_table(("full", "lowres", "quick"))
shapes.to_csv(results_dir / "shapes.csv")
shapes

# %% [markdown]
# ### The attention maps
#
# Each gate returns a one-channel map alpha in [0, 1] on the grid of the features it weights. At the
# full input (untrained weights, so the values are near 0.5 and carry no meaning yet):

# %% tags=["hide-input"]
torch.manual_seed(seed)
x = torch.rand(1, 3, *FULL)
with torch.no_grad():
    _, d2 = SliceAttentionNet(n_slices=FULL[0]).eval()(x, details=True)
    _, d3 = Attention3DNet().eval()(x, details=True)
att = pd.DataFrame([
    {"model": "2D", "gate": "layer3 (256 ch) gated by layer4", "map shape": " x ".join(map(str, d2["attention"].shape[1:])),
     "min": d2["attention"].min().item(), "max": d2["attention"].max().item(),
     "paper (Fig. 4)": "256 ch, 28 x 14 (see above)"},
    {"model": "3D", "gate": "down2 (128 ch) gated by down4", "map shape": " x ".join(map(str, d3["attention1"].shape[2:])),
     "min": d3["attention1"].min().item(), "max": d3["attention1"].max().item(), "paper (Fig. 4)": "128 ch"},
    {"model": "3D", "gate": "down3 (256 ch) gated by down4", "map shape": " x ".join(map(str, d3["attention2"].shape[2:])),
     "min": d3["attention2"].min().item(), "max": d3["attention2"].max().item(), "paper (Fig. 4)": "256 ch"},
])
display(Markdown(f"2D final map: {' x '.join(map(str, d2['final_map']))} (paper: 512 x 7 x 4); "
                 f"2D map shape is slices x rows x columns."))
att.style.format({"min": "{:.3f}", "max": "{:.3f}"}).hide(axis="index")

# %% [markdown]
# ## Models Genesis: the four distortions
#
# Models Genesis (Zhou et al. 2019) pretrains the full 3D U-Net to restore sub-volumes that were
# distorted by four transforms: a **non-linear** intensity mapping through a random Bezier curve,
# **local pixel shuffling** inside small windows (each window refilled with its own voxels in a random
# order, the later window winning where two overlap: texture destroyed, anatomy kept), **in-painting**
# (inner boxes replaced by noise) and **out-painting** (everything outside large boxes replaced by
# noise). Training composes them with the Models Genesis probabilities, decided per cube
# (`genesis.distort_batch`: vectorised over a training batch on the training device). We wrote
# them from the paper's description (`tss.models.genesis`; the official code's licence is
# non-commercial). Below, each transform on one real sub-volume of our cohort: a
# `full`-profile cube (16 x 64 x 64 voxels) cut from a hemisphere with a lesion, middle slice, DWI and
# FLAIR channels; the yellow line bounds the region the transform was allowed to change. The boxes are
# drawn in 3D, so a draw can miss the displayed slice: each column shows the first draw (numbered) whose
# region crosses it. Quick-profile
# training uses the same transforms on smaller cubes of the downsampled hemispheres.

# %% tags=["hide-input"]
if PreprocessCache(cache_dir).assembled():
    c = viz.lesion_cube(cache_dir, profiles.MODEL["full"].genesis_cube)
    fig = viz.genesis_figure(c["cube"], c["k"], seed)
    fig.suptitle(f"Models Genesis distortions on {c['description']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(results_dir / "genesis_transforms.png", dpi=120)
else:
    print(f"No hemisphere tensors in {project.shown(cache_dir)}: run the Preprocessing chapter first.")

# %% [markdown] tags=["caption=fig-genesis"]
# The Models Genesis transforms on one sub-volume of our cohort (DWI and FLAIR, middle slice); the
# yellow line bounds the region each transform was allowed to change.

# %% [markdown]
# ## ImageNet weights
#
# The paper's ImageNet baseline initialises the 2D trunk with ImageNet ResNet-18 weights.
# `tss.models.load_imagenet` reads torchvision's `resnet18-f37072fd.pth` from `$TSS_IMAGENET_WEIGHTS`
# or torch's hub cache. Nothing is downloaded unless you opt in: with a network (Colab, say), set
# the environment variable `TSS_IMAGENET_DOWNLOAD=1` (in a notebook: `os.environ["TSS_IMAGENET_DOWNLOAD"] = "1"`
# before this cell) and torchvision downloads its file into that cache. Without the file, it says
# where to put it, and the ImageNet rows of the Training and Results chapters are skipped with that message.

# %% tags=["hide-input"]
try:
    path = imagenet.find_weights()
    report = imagenet.load_imagenet(SliceAttentionNet(n_slices=FULL[0]), path)
    print(f"ImageNet weights found ({path.name}): {report}")
except imagenet.WeightsUnavailable as e:
    print(textwrap.fill(str(e), 88))  # one long line would scroll out of the page

# %% [markdown]
# ## Training-step throughput and memory
#
# `make bench` (`benchmarks/bench_models.py`) times bare training steps (forward, binary
# cross-entropy, backward, AdaBound step) on random hemispheres at the full input size, each
# configuration in a fresh process, and records the peak memory: resident memory above the
# model and batch on the CPU, `torch.cuda.max_memory_allocated` on a GPU (bf16 autocast, the paper's
# batch 8). Beside it, the ceiling measured on an H100 for the same bare models
# (`../shared/gpu/README.md`, bf16 autocast, batch 8) and the paper's reported GPU memory at batch 8.

# %% tags=["hide-input"]
rows = []
for f in sorted(Path(bench_dir).glob("models-*.json")):
    rows += json.loads(f.read_text())
if rows:
    b = pd.DataFrame(rows)
    b["H100 hemis/s"] = b["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["hemis_per_s"])
    b["H100 GiB"] = b["arch"].map(lambda a: paper.H100_CEILING_BF16_BATCH8[a]["peak_gib"])
    b["paper GB"] = b["arch"].map(paper.GPU_MEMORY_GB_BATCH8)
    b = b[["arch", "device", "precision", "batch", "threads", "seconds_per_step", "hemis_per_s", "peak_gib",
           "H100 hemis/s", "H100 GiB", "paper GB"]].rename(columns={"seconds_per_step": "s/step",
                                                                    "hemis_per_s": "hemis/s", "peak_gib": "GiB"})
    display(Markdown("*H100*: the ceiling of the same bare steps on one H100 (bf16, batch 8); *paper GB*: the "
                     "paper's reported GPU memory at batch 8."))
    display(b.style.format({"s/step": "{:.2f}", "hemis/s": "{:.1f}", "GiB": "{:.2f}", "H100 GiB": "{:.1f}",
                            "paper GB": "{:.0f}"}).hide(axis="index"))
    if not (b["device"] != "cpu").any():
        display(Markdown("No GPU row yet: these numbers come from a CPU. `make bench` on a machine with a CUDA "
                         "GPU adds `models-cuda.json`."))
else:
    print(f"No benchmark results in {project.shown(bench_dir)}: run `make bench`.")

# %% tags=["remove-cell"]
summary = {"profile": profile,
           "inputs": {p: {a: profiles.MODEL[p].input_shape(a) for a in ("2d", "3d")} for p in ("full", "quick")},
           "parameters": {k: int(v) for k, v in totals.items()},
           "imagenet_weights": imagenet.available()}
(results_dir / "models_summary.json").write_text(json.dumps(summary, indent=1))
summary
