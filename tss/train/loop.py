"""One experiment of the grid: build, initialise, freeze, train with early stopping, predict.

Each run writes ``OUT/<experiment>/``: ``config.json``, ``epochs.csv`` (one row per epoch),
``last.pt`` (every epoch: a killed run resumes from it), ``best.pt`` (the best validation epoch),
``predictions.csv`` (per hemisphere) and ``patients.csv`` (per patient) on validation and test, and
``summary.json`` (metrics, wall time, throughput). A run whose ``summary.json`` holds the same
configuration key (experiment, profile, seed, data, and the key of its weight source) is not
repeated.
"""

from __future__ import annotations

import json
import math
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from tqdm.auto import tqdm

from .. import precision, profiles, provenance, stats
from ..atomic import atomic_path, cached, content_key, exclusive, write_text
from ..models import WeightsUnavailable, load_imagenet, load_matching
from .config import Experiment
from .data import Hemispheres, augment, patient_predictions
from .tasks import task_for

TRAIN_VERSION = "5"  # 2: batch-norm statistics recomputed before each evaluation; 3: vectorised Genesis
# distortions, Genesis validated on restoring fixed distorted cubes (it scored clean ones); 4: convolutions
# over inputs smaller than their kernel in float32 on a CPU under bf16 (tss.models.lowp), precise BN from
# a bounded number of batches, precision by device capability (tss.precision), frozen stages cached;
# 5: the 3D models in channels_last_3d on a CPU


class SourceMissing(RuntimeError):
    pass


class NonFinite(FloatingPointError):
    """A NaN or infinite loss or model output: the run stops before anything of that epoch is kept."""


def _key(obj) -> str:
    return content_key(obj)


def _adabound(params, lr: float, final_lr: float, weight_decay: float = 0.0):
    import adabound

    return adabound.AdaBound(params, lr=lr, final_lr=final_lr, weight_decay=weight_decay)


def _quiet_step(opt, scaler: torch.amp.GradScaler) -> None:
    # adabound calls torch's deprecated add_(scalar, tensor) overloads: silence them here, without
    # editing the installed package and without hiding anyone else's warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="This overload of add", category=UserWarning)
        scaler.step(opt)  # a plain opt.step() unless fp16 (which unscales first, skips on overflow)
    scaler.update()


class Run:
    """Everything one experiment needs; :meth:`fit` trains (or resumes, or reuses) it.

    A run is cached by a key of its configuration, its data and its weight source: a finished run
    is read back, an interrupted one resumes from its last epoch, a changed one starts again.

    Args:
        exp: the experiment (architecture, phase, initialisation).
        cohort: the hemisphere tensors at the architecture's input size (:class:`Hemispheres`).
        out_root: the seed's run folder; the run writes ``<out_root>/<experiment>/``.
        profile: the profile whose epoch budget, patience and input size apply.
        seed: the training seed.
        max_epochs: overrides the profile's epoch cap.
        progress: show a progress bar per epoch.
        train_profile, model_profile: override the profile's training and input settings.
        cache_frozen: compute frozen leading stages once per hemisphere instead of every step.

    Raises:
        SourceMissing: the weight source (e.g. phase 1 for a transfer run) has not run, or its
            checkpoint is gone.
    """

    def __init__(self, exp: Experiment, cohort: Hemispheres, out_root, profile: str, seed: int,
                 max_epochs: int | None = None, progress: bool = True,
                 train_profile: profiles.TrainProfile | None = None, cache_frozen: bool = True,
                 model_profile: profiles.ModelProfile | None = None):
        self.exp, self.cohort, self.profile, self.seed = exp, cohort, profiles.check(profile), seed
        self.spec = exp.spec
        self.recipe = exp.training  # the paper's, or a variant of the TSS phases (tss.train.config.RECIPES)
        self.task = task_for(self.spec.task, exp.arch)  # what differs between phases: data, model, loss, score
        self.tp, self.mp = train_profile or profiles.TRAIN[profile], model_profile or profiles.MODEL[profile]
        self.max_epochs = max_epochs or self.tp.max_epochs
        self.patience = self.recipe.patience or self.tp.patience
        self.root = Path(out_root)
        self.dir = self.root / exp.name
        self.device = cohort.device
        # by the device's capability (tss.precision), or the dtype the cohort is held in
        self.precision = precision.for_data(cohort.x)
        self.progress = progress
        # frozen leading stages run once per hemisphere, not every step (same numbers: tested)
        # (not under augmentation: the frozen stages then see a new input every step)
        self.cache_frozen, self._enc, self._pos = cache_frozen and not self.recipe.augment, None, None
        src = exp.source()
        self.source_dir = self.root / src if src else None
        source_key = None
        if self.source_dir is not None:
            s = self.source_dir / "summary.json"
            if not s.exists():
                raise SourceMissing(f"{exp.name} starts from {src}, which has not run yet (no {s})")
            source_key = json.loads(s.read_text())["key"]
        self.config = {"experiment": exp.to_dict(), "profile": profile, "seed": seed, "max_epochs": self.max_epochs,
                       "train_profile": asdict(self.tp), "downsample": self.mp.downsample(exp.arch),
                       "genesis_cube": self.mp.genesis_cube, "data_key": cohort.key, "source_key": source_key,
                       "precision": self.precision.name, "train_version": TRAIN_VERSION}
        self.key = _key(self.config)

    # -- model ------------------------------------------------------------------------------
    def _model(self):
        torch.manual_seed(self.seed)
        m = (self.task.model(self.exp.arch, self.cohort.x.shape[2], self.recipe.aggregate)
             if self.recipe.aggregate != "probability" else self.task.model(self.exp.arch, self.cohort.x.shape[2]))
        report = None
        if self.exp.init == "imagenet":
            report = load_imagenet(m)  # raises WeightsUnavailable with where to put the file
        elif self.source_dir is not None:
            if not (self.source_dir / "best.pt").exists():  # a finished run whose checkpoints were not kept
                raise SourceMissing(f"{self.exp.name} starts from {self.source_dir.name}, which finished but whose "
                                    f"weights are not here (no best.pt: only its result files were kept); delete "
                                    f"{self.source_dir} and run again to retrain it")
            # phase 4 continues the same task, and LP-FT its linear probe: keep the source's output layer;
            # other phases learn a new head
            keep_head = self.exp.phase == "attention" or self.recipe.start_from is not None
            report = load_matching(m, self.source_dir / "best.pt", skip=() if keep_head else None)
            if not report.loaded:
                raise RuntimeError(f"{self.exp.name}: nothing loaded from {self.source_dir.name}: {report}")
        frozen = self.exp.frozen()
        if frozen == "early":
            m.freeze(m.EARLY)
        elif frozen == "all-but-attention":
            m.train_only(m.ATTENTION)
        elif frozen == "all-but-head":  # a linear probe of the source's features
            m.train_only(m.PROBE)
        m = m.to(self.device)
        if self.exp.arch == "3d" and self.device.type == "cpu":
            # measured on this CPU family (benchmarks/bench_channels_last.py): 3D training steps x1.16
            # in channels_last_3d; the 2D model gained x1.06, within the noise, and stays as it is
            m = m.to(memory_format=torch.channels_last_3d)
        return m, report

    # -- data -------------------------------------------------------------------------------
    def _examples(self, split: str, n: int | None = None, gen: torch.Generator | None = None):
        """(x, y) of a split for the phase's task; y is None for Genesis (the target is x)."""
        return self.task.examples(self, split, n, gen)

    def _eval_set(self, split: str, seed: int):
        """A fixed evaluation set: the split's examples, or for the synthetic tasks ``n`` drawn from
        ``seed``; for Genesis (distorted cubes, originals), so that it scores restoration."""
        gen = torch.Generator().manual_seed(seed)
        x, y = self._examples(split, self.tp.synthetic_eval, gen)
        return self.task.eval_set(x, y, gen)

    def _autocast(self):
        dtype = self.precision.dtype
        return torch.autocast(self.device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None)

    def _batch_x(self, x):
        # classification examples are row numbers into the resident cohort tensor, or into the
        # frozen stages' outputs of those hemispheres
        if x.dtype != torch.long:
            return x
        if self._enc is not None:
            at = self._pos[x]
            return {k: v[at] for k, v in self._enc.items()}
        return self.cohort.x[x]

    @torch.no_grad()
    def _encode_frozen(self, model, chunk: int = 32) -> None:
        """Run the model's frozen leading stages once over every hemisphere this phase uses (they
        are a fixed function of the input: frozen weights, batch norms in eval mode, no
        augmentation); the training steps and evaluations then start after them."""
        self._enc = self._pos = None
        if not self.cache_frozen or not self.task.caches_frozen or not model.frozen_stages():
            return
        rows = np.concatenate([self.cohort.rows(s, self.spec.hemispheres) for s in ("train", "val", "test")])
        rows = torch.as_tensor(rows, device=self.device)
        parts = []
        for i in range(0, len(rows), chunk):
            with self._autocast():
                parts.append(model.encode(self.cohort.x[rows[i:i + chunk]]))
        self._enc = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
        self._pos = torch.full((len(self.cohort.x),), -1, dtype=torch.long, device=self.device)
        self._pos[rows] = torch.arange(len(rows), device=self.device)

    def _loss(self, model, xb, yb, gen=None) -> tuple[torch.Tensor, torch.Tensor]:
        """(loss, whether every output is finite); both stay on the device (no sync per step)."""
        xb, target = self.task.batch(xb, yb, gen)
        if self.recipe.augment and isinstance(xb, torch.Tensor):
            xb = augment(xb, gen)
        with self._autocast():
            out = model(xb)
        out = out.float()
        return self.task.loss(out, target), torch.isfinite(out).all()

    def _check_finite(self, ok: torch.Tensor, epoch: int, where: str) -> None:
        """Raise :class:`NonFinite` naming the experiment, epoch and step when ``ok`` (one flag per
        step or chunk) is not all true; one host sync per call."""
        if bool(ok.all()):
            return
        first = int(torch.nonzero(~ok)[0]) + 1
        raise NonFinite(f"{self.exp.name} (seed {self.seed}): non-finite loss or output at epoch {epoch}, "
                        f"{where} {first} of {len(ok)}; the run stops, keeps nothing of this epoch "
                        f"and writes no summary.json")

    @torch.no_grad()
    def _predict(self, model, x, chunk: int = 32, epoch: int = 0, split: str = "evaluation") -> torch.Tensor:
        model.eval()
        outs = []
        for i in range(0, len(x), chunk):
            with self._autocast():
                outs.append(model(self._batch_x(x[i:i + chunk])).float())
        self._check_finite(torch.stack([torch.isfinite(o).all() for o in outs]), epoch, f"{split} chunk")
        return torch.cat(outs)

    @torch.no_grad()
    def _precise_bn(self, model, x) -> None:
        """Recompute the batch-norm statistics of the trained layers on training examples ``x`` (at
        most ``precise_bn_batches`` batches of this epoch's, in its random order) before evaluating
        ("precise BN", Wu & Johnson 2021). The running averages lag behind
        weights that move fast (a few dozen AdaBound steps per epoch in the quick profile): without
        this, evaluation-mode outputs collapsed to one class (validation loss rising while the
        training loss fell) although the ranking learnt in training mode was good."""
        # torch.optim.swa_utils.update_bn would also reset the frozen layers' statistics: ours keeps them
        bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.training]
        if not bns:
            return
        momenta = [m.momentum for m in bns]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None  # a cumulative average over the batches below
        for i in range(0, len(x), self.spec.batch_size):
            with self._autocast():
                model(self._batch_x(x[i:i + self.spec.batch_size]))
        for m, mom in zip(bns, momenta):
            m.momentum = mom

    def _score(self, model, data, epoch: int = 0, split: str = "validation") -> tuple[float, float]:
        """(loss, score) on a fixed evaluation set; early stopping maximises the score."""
        x, y = data
        return self.task.score(self._predict(model, x, epoch=epoch, split=split), y)

    # -- the run ----------------------------------------------------------------------------
    def done(self) -> bool:
        return cached(self.dir / "summary.json", self.key) is not None

    def fit(self, stop_after: int | None = None) -> dict:
        """Train to early stopping (or ``max_epochs``), resuming from ``last.pt`` when it belongs
        to this configuration. ``stop_after``: raise after that many epochs (tests of resumption).
        One process trains a run folder at a time: another that reaches it (a second study lane, a
        rerun while the first still trains) waits, then reads the finished run back."""
        if not self.done():  # a finished run is read back without touching its folder
            self.dir.mkdir(parents=True, exist_ok=True)
            with training_lock(self.dir):
                if not self.done():
                    return self._fit(stop_after)
        return json.loads((self.dir / "summary.json").read_text())

    def _fit(self, stop_after: int | None) -> dict:
        write_text(self.dir / "config.json", json.dumps({**self.config, "key": self.key}, indent=1, default=str))
        model, report = self._model()
        trainable = [p for p in model.parameters() if p.requires_grad]
        r = self.recipe
        opt = _adabound(trainable, self.spec.lr * r.lr_scale, self.spec.final_lr * r.lr_scale, r.weight_decay)
        scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision.scaler)
        gen = torch.Generator().manual_seed(self.seed)
        # fixed synthetic evaluation sets, and a fixed tumour training set, from their own seeds
        synthetic = self.task.synthetic
        val = self._eval_set("val", 10_000 + self.seed)
        train_fixed = (self._examples("train", self.tp.medical_per_epoch, torch.Generator().manual_seed(20_000 + self.seed))
                       if self.task.fixed_train_set else None)
        state = self._resume(model, opt, scaler, gen)
        self._encode_frozen(model)
        bar = tqdm(total=self.max_epochs, initial=state["epoch"], desc=self.exp.name, unit="epoch",
                   disable=not self.progress, leave=False)
        while state["epoch"] < self.max_epochs and state["bad"] < self.patience:
            t0 = time.perf_counter()
            if self.task.fresh_each_epoch:  # Genesis: a new draw of sub-volumes every epoch
                x, y = self._examples("train", self.tp.genesis_cubes, gen)
            else:
                x, y = train_fixed if train_fixed is not None else self._examples("train")
            epoch = state["epoch"] + 1
            perm, mean_loss, n = self._train_epoch(model, opt, scaler, gen, x, y, epoch)
            train_s = time.perf_counter() - t0
            if self.task.recalibrates_bn:  # not Genesis: a fresh draw each epoch, validation MSE = training MSE
                self._precise_bn(model, x[perm[:self.tp.precise_bn_batches * self.spec.batch_size]])
            val_loss, score = self._score(model, val, epoch)
            state["epoch"] = epoch
            # early stopping watches the validation score (AUC), or under a recipe its loss
            improved = self._keep_if_best(model, state, -val_loss if self.recipe.stop_on == "loss" else score)
            state["seconds"] += time.perf_counter() - t0
            state["log"].append({"epoch": state["epoch"], "train_loss": mean_loss,
                                 "val_loss": val_loss, self.spec.monitor: score, "train_seconds": train_s,
                                 "examples_per_s": n / train_s, "best": improved})
            with atomic_path(self.dir / "last.pt") as tmp:
                torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "scaler": scaler.state_dict(),
                            "gen": gen.get_state(), "state": state, "key": self.key}, tmp)
            self._write_log(state)
            bar.update(1)
            bar.set_postfix(loss=f"{state['log'][-1]['train_loss']:.3f}", val=f"{score:.3f}")
            if stop_after is not None and state["epoch"] >= stop_after and state["epoch"] < self.max_epochs:
                bar.close()
                raise KeyboardInterrupt(f"stopped after epoch {state['epoch']} (stop_after)")
        bar.close()
        self._write_log(state)  # again: a kill between the last checkpoint and its log row is repaired here
        summary = self._finish(model, state, report, synthetic, trainable)
        write_text(self.dir / "summary.json", json.dumps(summary, indent=1, default=str))
        (self.dir / "skipped.json").unlink(missing_ok=True)
        return summary

    def _resume(self, model, opt, scaler, gen) -> dict:
        """The training state: from ``last.pt`` when it belongs to this configuration (model, optimiser,
        scaler and generator restored in place), else a fresh one."""
        state = {"epoch": 0, "best": -math.inf, "best_epoch": 0, "bad": 0, "log": [], "seconds": 0.0}
        last = self.dir / "last.pt"
        if last.exists():
            ck = torch.load(last, map_location=self.device, weights_only=False)
            if ck.get("key") == self.key:
                model.load_state_dict(ck["model"])
                opt.load_state_dict(ck["opt"])
                scaler.load_state_dict(ck["scaler"])
                gen.set_state(ck["gen"])
                state = ck["state"]
        return state

    def _train_epoch(self, model, opt, scaler, gen, x, y, epoch: int) -> tuple[torch.Tensor, float, int]:
        """One pass over ``x`` in a random order drawn from ``gen``; returns that order, the mean
        training loss and the number of examples seen. Raises :class:`NonFinite` on a non-finite step."""
        model.train()
        perm = torch.randperm(len(x), generator=gen).to(self.device)
        total, n, ok = torch.zeros((), device=self.device), 0, []
        for i in range(0, len(x), self.spec.batch_size):
            b = perm[i:i + self.spec.batch_size]
            if len(b) < 2 and i > 0:
                continue  # batch norm needs two examples; the last one waits for the next epoch
            loss, finite = self._loss(model, self._batch_x(x[b]), None if y is None else y[b], gen)
            ok.append(finite & torch.isfinite(loss))
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            _quiet_step(opt, scaler)
            total += loss.detach() * len(b)
            n += len(b)
        self._check_finite(torch.stack(ok), epoch, "step")  # also the GPU's synchronisation point
        return perm, (total / max(n, 1)).item(), n

    def _keep_if_best(self, model, state: dict, score: float) -> bool:
        """Early stopping's bookkeeping: a better score saves ``best.pt`` and resets the patience."""
        if score > state["best"] + 1e-9:
            state.update(best=score, best_epoch=state["epoch"], bad=0)
            with atomic_path(self.dir / "best.pt") as tmp:
                torch.save({"model": model.state_dict(), "epoch": state["epoch"], "key": self.key}, tmp)
            return True
        state["bad"] += 1
        return False

    def _best_score(self, state) -> float:
        """The monitored validation score at the best epoch (under a recipe that stops on the
        validation loss, the best epoch's AUC, not the loss that chose it)."""
        if self.recipe.stop_on != "loss":
            return state["best"]
        row = next(r for r in state["log"] if r["epoch"] == state["best_epoch"])
        return row[self.spec.monitor]

    def _write_log(self, state) -> None:
        """``epochs.csv`` from the checkpointed log, atomically."""
        with atomic_path(self.dir / "epochs.csv") as tmp:
            pd.DataFrame(state["log"]).to_csv(tmp, index=False)

    def _finish(self, model, state, report, synthetic, trainable) -> dict:
        best = torch.load(self.dir / "best.pt", map_location=self.device, weights_only=True)
        model.load_state_dict(best["model"])
        out = {"key": self.key, "experiment": self.exp.name, "arch": self.exp.arch, "phase": self.exp.phase,
               "init": self.exp.init, "task": self.spec.task, "seed": self.seed, "profile": self.profile,
               "epochs": state["epoch"], "best_epoch": state["best_epoch"],
               self.spec.monitor: self._best_score(state), "recipe": self.exp.recipe,
               "wall_seconds": state["seconds"],
               "examples_per_s": float(np.median([r["examples_per_s"] for r in state["log"]])),
               "device": str(self.device), "precision": self.precision.name,
               "transfer": str(report) if report else None,
               "frozen": list(model.frozen), "trainable_parameters": sum(p.numel() for p in trainable),
               "provenance": provenance.brief()}
        if synthetic:
            test = self._eval_set("test", 30_000 + self.seed)
            loss, score = self._score(model, test, state["best_epoch"], "test")
            out.update(test_loss=loss, test_score=score)
            return out
        frames = []
        for split in ("val", "test"):
            rows, y = self._examples(split)
            prob = torch.sigmoid(self._predict(model, rows, epoch=state["best_epoch"], split=split)).cpu().numpy()
            rows, y = rows.cpu().numpy(), y.cpu().numpy()
            frames.append(self.cohort.index.iloc[rows][["patient_id", "hemisphere", "split", "label", "onset_to_mri_min"]]
                          .assign(target=y, prob=prob))
            out[f"{split}_auc_hemisphere"] = stats.auc_or_nan(y, prob)
            pat = patient_predictions(self.cohort.index, rows, prob, y, self.spec.task)
            out[f"{split}_auc_patient"] = stats.auc_or_nan(pat["target"].to_numpy(), pat["prob"].to_numpy())
            out[f"{split}_patients"] = len(pat)
            mode = "w" if split == "val" else "a"
            pat.to_csv(self.dir / "patients.csv", index=False, mode=mode, header=split == "val")
        pd.concat(frames).to_csv(self.dir / "predictions.csv", index=False)
        return out


LOCK = ".lock"  # in each run folder; never committed (.gitignore)


def training_lock(run_dir: Path):
    """The run folder's lock (:func:`tss.atomic.exclusive`): held while a process trains or fills it."""
    return exclusive(Path(run_dir) / LOCK, f"{run_dir}: another process is training it; waiting for it")


def run_grid(experiments, cohort: Hemispheres, out_root, profile: str, seed: int, progress: bool = True,
             max_epochs: int | None = None, train_profile: profiles.TrainProfile | None = None,
             model_profile: profiles.ModelProfile | None = None):
    """Run experiments in order; an ImageNet run without weights is recorded as skipped with why."""
    results = []
    for exp in tqdm(experiments, desc=f"seed {seed}", unit="run", disable=not progress):
        try:
            results.append(Run(exp, cohort, out_root, profile, seed, max_epochs=max_epochs, progress=progress,
                               train_profile=train_profile, model_profile=model_profile).fit())
        except WeightsUnavailable as e:
            skip = {"experiment": exp.name, "arch": exp.arch, "phase": exp.phase, "init": exp.init,
                    "seed": seed, "profile": profile, "skipped": str(e)}
            (Path(out_root) / exp.name).mkdir(parents=True, exist_ok=True)
            write_text(Path(out_root) / exp.name / "skipped.json", json.dumps(skip, indent=1))
            results.append(skip)
    return results
