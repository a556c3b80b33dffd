"""The experiment grid, synthesis and preprocessing on a Dask cluster (``dask.distributed``).

Without a cluster everything runs in this process, as before. With one, each (seed, experiment) of
the grid is one task that waits for the task of its weight source (a transfer run for its phase 1
detector, a medical run for the tumour model, 3D stroke detection for Models Genesis), so runs that
do not depend on each other, and all seeds, train at the same time, one per worker; on GPU workers
started with ``--resources GPU=1`` each task takes one GPU. Workers share the filesystem: a task
reads the preprocessing cache and writes its run folder exactly as an in-process run does, so a
task retried after its worker died resumes from the run's ``last.pt`` and nothing is lost.

Synthesis and preprocessing go through the same cluster with joblib's Dask backend: one patient per
task, the per-patient cache unchanged (:func:`patients_on`).

    from distributed import Client
    client = Client("tcp://scheduler:8786")          # or engine.local_cluster(4)
    engine.train_grid(client, grid(("2d", "3d")), seeds=[0, 1, 2],
                      source=engine.CohortSource("results/full/cache/preprocess", "full"),
                      out_root="results/full/runs", profile="full")
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

from tss import profiles
from tss.runtree import RunTree
from tss.train import Experiment, Hemispheres, run_grid


@dataclass(frozen=True)
class CohortSource:
    """How a worker gets one architecture's processed cohort: from the preprocessing cache on the
    filesystem the workers share (loaded once per worker process and reused by its next tasks)."""

    cache: str
    profile: str

    def __call__(self, arch: str, device: str):
        return Hemispheres.load(Path(self.cache), profiles.MODEL[self.profile].downsample(arch), device)


_LOADED: dict = {}  # in each worker process: the cohort its last task used


def _cohort(source, arch: str, device: str):
    key = (source, arch, device)
    if key not in _LOADED:
        _LOADED.clear()  # one cohort at a time: at the full size it is gigabytes
        _LOADED[key] = source(arch, device)
    return _LOADED[key]


def train_task(experiment: str, seed: int, source, out_root: str, profile: str, threads: int = 0,
               run_kwargs: dict | None = None, *after) -> dict:
    """One run of the grid on a worker: its summary (or its ``skipped`` record). ``after``: the
    results of the tasks it waits for (its weight source), unused; Dask passes them once they exist."""
    import torch

    if threads > 0:
        torch.set_num_threads(threads)
    exp = Experiment.parse(experiment)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    cohort = _cohort(source, exp.arch, device)
    return run_grid([exp], cohort, RunTree(out_root).seed_dir(seed), profile, seed, progress=False,
                    **(run_kwargs or {}))[0]


def submit_grid(client, experiments, seeds, source, out_root, profile: str, threads: int = 0,
                gpus: bool = False, retries: int = 2, **run_kwargs) -> dict:
    """Submit every (seed, experiment) as a task that depends on its weight source's task; returns
    ``{(seed, experiment name): future}``. A source outside ``experiments`` must have finished
    already (its run folder is read as in-process). ``gpus``: each task takes one ``GPU`` resource."""
    futures: dict = {}
    for seed in seeds:
        for exp in experiments:  # grid() lists sources before their users
            src = exp.source()
            deps = [futures[(seed, src)]] if (seed, src) in futures else []
            futures[(seed, exp.name)] = client.submit(
                train_task, exp.name, seed, source, str(out_root), profile, threads, run_kwargs, *deps,
                key=f"train-{profile}-seed{seed}-{exp.name}", retries=retries, pure=False,
                resources={"GPU": 1} if gpus else None)
    return futures


def train_grid(client, experiments, seeds, source, out_root, profile: str, progress: bool = True,
               **kwargs) -> list[dict]:
    """Run the grid on the cluster and wait for it; one result per (seed, experiment), in grid order.
    A task that failed (after its retries), or whose source failed, gives ``{"experiment", "seed",
    "failed": why}`` and the others go on."""
    from distributed import as_completed
    from tqdm import tqdm

    futures = submit_grid(client, list(experiments), list(seeds), source, out_root, profile, **kwargs)
    for _ in tqdm(as_completed(futures.values(), raise_errors=False), total=len(futures), unit="run",
                  desc="grid", disable=not progress):
        pass
    out = []
    for (seed, name), fut in futures.items():
        try:
            out.append(fut.result())
        except Exception as e:  # a run that failed is reported, not allowed to hide the others
            out.append({"experiment": name, "seed": seed, "failed": f"{type(e).__name__}: {e}"})
    return out


def local_cluster(workers: int, threads_per_worker: int = 1):
    """A :class:`distributed.Client` on a cluster of ``workers`` processes on this machine."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
                           dashboard_address=None)
    return Client(cluster)


def connect(scheduler: str | None = None, workers: int = 0):
    """A client of the scheduler at ``scheduler`` (``tcp://host:8786``), or of a local cluster of
    ``workers`` processes; None when neither is asked for (run in this process)."""
    if scheduler:
        from distributed import Client

        return Client(scheduler)
    if workers > 0:
        return local_cluster(workers)
    return None


@contextlib.contextmanager
def patients_on(client):
    """Within this block, :func:`tss.parallel.map_patients` (synthesis, preprocessing, the Lee
    baseline) sends one task per patient to ``client``'s cluster through joblib's Dask backend;
    with ``client`` None it changes nothing."""
    if client is None:
        yield
        return
    from joblib import parallel_config

    with parallel_config(backend="dask", n_jobs=-1):
        yield
