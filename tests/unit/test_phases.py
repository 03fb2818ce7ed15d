"""The three-phase schedule: which rows train what, and DDP without hangs or stray gradients."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from tests.factories import random_batch, tiny_config
from tests.services import free_port
from vavl.model import VAVL
from vavl.objectives import TaskObjective
from vavl.phases import phase_losses


def _setup(*overrides: str):
    cfg = tiny_config(*overrides)
    torch.manual_seed(0)
    model = VAVL(cfg.model, num_outputs=cfg.task.num_outputs, residual_weight=1.0)
    return cfg, model, TaskObjective.from_config(cfg.task)


def test_rows_are_split_by_modality_presence() -> None:
    cfg, model, objective = _setup()
    batch = random_batch([True, True, False, True], [True, False, True, True])
    losses = phase_losses(model, batch, objective, cfg.loss.reconstruction_weight)
    assert losses.rows == {"visual": 3, "audio": 3, "fusion": 2}
    assert torch.isfinite(losses.total)
    assert losses.logs["train/visual/loss"] == pytest.approx(
        losses.logs["train/visual/prediction"]
        + cfg.loss.reconstruction_weight * losses.logs["train/visual/reconstruction"],
        rel=1e-5,
    )


def test_fusion_step_trains_only_the_fusion_head() -> None:
    cfg, model, objective = _setup()
    batch = random_batch([True] * 4, [True] * 4)
    losses = phase_losses(model, batch, objective, cfg.loss.reconstruction_weight)
    losses.fusion.backward()
    groups = model.parameter_groups()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in groups["fusion"])
    for name in ("audio_only", "visual_only", "shared"):
        assert all(p.grad is None or p.grad.abs().sum() == 0 for p in groups[name]), name


def test_missing_modality_keeps_its_parameters_in_the_graph_with_zero_grad() -> None:
    cfg, model, objective = _setup()
    batch = random_batch([True] * 3, [False] * 3)  # audio only: no visual or fusion rows
    losses = phase_losses(model, batch, objective, cfg.loss.reconstruction_weight)
    losses.total.backward()
    groups = model.parameter_groups()
    for p in groups["visual_only"] + groups["fusion"]:
        assert p.grad is not None and p.grad.abs().sum() == 0
    assert all(p.grad is not None for p in groups["audio_only"] + groups["shared"])
    assert sum(float(p.grad.abs().sum()) for p in groups["audio_only"]) > 0


def test_attribute_task_uses_ccc() -> None:
    cfg, model, objective = _setup("task.kind=attributes")
    batch = random_batch([True] * 5, [True] * 5, attributes=3)
    losses = phase_losses(model, batch, objective, cfg.loss.reconstruction_weight)
    assert 0.0 <= losses.logs["train/fusion/prediction"] <= 2.0  # 1 - CCC lies in [0, 2]


def _ddp_worker(rank: int, world: int, port: int, results: Path) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    cfg, model, objective = _setup()
    ddp = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
    optimizer = torch.optim.Adam(ddp.parameters(), lr=1e-2)
    # Rank 1's batches never have visual frames, so it never runs the visual or fusion phase.
    for step in range(3):
        has_visual = [True, True, False] if rank == 0 else [False, False, False]
        batch = random_batch([True, False, True], has_visual, seed=10 * rank + step)
        optimizer.zero_grad()
        phase_losses(ddp, batch, objective, cfg.loss.reconstruction_weight).total.backward()
        optimizer.step()
    torch.save(
        torch.cat([p.detach().flatten() for p in model.parameters()]), results / f"{rank}.pt"
    )
    dist.destroy_process_group()


def test_ddp_ranks_stay_identical_when_one_rank_lacks_a_modality(tmp_path: Path) -> None:
    port = free_port()
    # The ranks hand their weights back through files, not a `multiprocessing.Manager`: a Manager
    # forks this process, which in the full suite is a Ray driver (the session's `ray_cluster`),
    # and gRPC does not survive a fork of a process whose threads use it (ray-project/ray#22909
    # names a fork-context Manager in a driver). CI's pytest once ended with status 1 and no
    # report at this test.
    mp.spawn(_ddp_worker, args=(2, port, tmp_path), nprocs=2, join=True)
    weights = [torch.load(tmp_path / f"{rank}.pt") for rank in range(2)]
    initial = _setup()[1]
    assert torch.equal(weights[0], weights[1])
    moved = torch.cat([p.detach().flatten() for p in initial.parameters()])
    assert not torch.equal(weights[0], moved)  # the steps did update the weights
