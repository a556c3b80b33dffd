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
import textwrap
import warnings

from tqdm import TqdmWarning

warnings.filterwarnings("ignore", category=TqdmWarning)  # headless runs have no ipywidgets

import torch
from IPython.display import Markdown, display

from tss import profiles, project, stages

profiles.check(profile)
if jobs > 0:
    torch.set_num_threads(jobs)
# every table, figure and file of this page, by its stage (tss.stages)
page = stages.models_chapter(profile, seed=seed, cache_dir=cache_dir, results_dir=results_dir, bench_dir=bench_dir)
T, said = page.tables, page.said
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
display(Markdown(" ".join(f"**{k}**: {v:,} parameters." for k, v in said["totals"].items())))
T["parameters"].style.format({"parameters": "{:,}"}).hide(axis="index")


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
T["shapes"]

# %% [markdown]
# ### The attention maps
#
# Each gate returns a one-channel map alpha in [0, 1] on the grid of the features it weights. At the
# full input (untrained weights, so the values are near 0.5 and carry no meaning yet):

# %% tags=["hide-input"]
display(Markdown(f"2D final map: {' x '.join(map(str, said['final_map']))} (paper: 512 x 7 x 4); "
                 f"2D map shape is slices x rows x columns."))
T["attention"].style.format({"min": "{:.3f}", "max": "{:.3f}"}).hide(axis="index")

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
if "genesis_transforms" in page.figures:
    display(page.figures["genesis_transforms"])
else:
    print(f"No hemisphere tensors in {project.shown(said['cache_dir'])}: run the Preprocessing chapter first.")

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
print(textwrap.fill(said["imagenet"], 88))  # one long line would scroll out of the page

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
if "bench" in T:
    b = T["bench"]
    display(Markdown("*H100*: the ceiling of the same bare steps on one H100 (bf16, batch 8); *paper GB*: the "
                     "paper's reported GPU memory at batch 8."))
    display(b.style.format({"s/step": "{:.2f}", "hemis/s": "{:.1f}", "GiB": "{:.2f}", "H100 GiB": "{:.1f}",
                            "paper GB": "{:.0f}"}).hide(axis="index"))
    if not (b["device"] != "cpu").any():
        display(Markdown("No GPU row yet: these numbers come from a CPU. `make bench` on a machine with a CUDA "
                         "GPU adds `models-cuda.json`."))
else:
    print(f"No benchmark results in {project.shown(said['bench_dir'])}: run `make bench`.")

# %% tags=["remove-cell"]
said["summary"]
