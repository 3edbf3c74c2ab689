"""End to end at the smoke profile: every sieving method trains on exactly its active set each epoch,
writes its record block, and spfde_circular resumes after a kill with identical results."""

from __future__ import annotations

import csv

import pytest
import torch

from spfde_core import records
from spfde_core.cli import load_config
from spfde_core.train.run import run_training

pytestmark = pytest.mark.smoke
N = 256  # synthetic training samples (half the smoke profile's, to keep these runs short)
SMALL = [f"data.synthetic.num_train={N}", "data.synthetic.num_test=64"]


class ActiveSetProbe:
    """Per epoch: the loader's active-set size and the samples actually presented."""

    def __init__(self) -> None:
        self.sizes: list[int] = []
        self.presented: list[torch.Tensor] = []
        self.active: list[torch.Tensor] = []
        self._seen: list[torch.Tensor] = []

    def on_epoch_start(self, state) -> None:
        loader = state.train_loader
        self.sizes.append(loader.num_samples)
        self.active.append(torch.arange(N) if loader._active is None else loader._active.clone())
        self._seen = []

    def after_step(self, state, step) -> None:
        self._seen.append(step.indices.cpu())

    def on_epoch_end(self, state) -> None:
        self.presented.append(torch.cat(self._seen).sort().values)

    def check_presented_is_active(self) -> None:
        for epoch, (seen, active) in enumerate(zip(self.presented, self.active, strict=True)):
            assert torch.equal(seen, active), f"epoch {epoch}: presented samples differ from the active set"


def _run(overrides: list[str], *extra):
    probe = ActiveSetProbe()
    record = run_training(load_config([*overrides, *SMALL]), extra_callbacks=[probe, *extra])
    probe.check_presented_is_active()
    assert record["sieving"]["method"] == record["config"]["sieving"]["name"]
    return record, probe


def _changed(probe: ActiveSetProbe) -> list[int]:
    return [0] + [
        len(set(b.tolist()) - set(a.tolist())) for a, b in zip(probe.presented, probe.presented[1:], strict=False)
    ]


CIRCULAR = [
    "sieving=spfde_circular",
    "sieving.remove_fraction=0.25",
    "sieving.update_every_epochs=2",
    "sieving.swap_fraction=0.2",
    "train.epochs=5",
]


class Kill(Exception):
    pass


class KillInEpoch:
    """Dies like a killed process in the middle of ``epoch`` (after the previous epoch's checkpoint)."""

    def __init__(self, epoch: int) -> None:
        self.epoch, self.batches = epoch, 0

    def on_batch_start(self, state, batch) -> None:
        if state.epoch == self.epoch:
            self.batches += 1
            if self.batches == 5:
                raise Kill


def _curve(results_dir) -> list[dict]:
    with open(results_dir / "test" / "smoke" / "seed0" / "curve.csv") as f:
        return [{k: v for k, v in row.items() if not records.is_measurement_column(k)} for row in csv.DictReader(f)]


def test_circular_run_swaps_at_interval_starts_and_resumes_exactly(smoke_overrides, tmp_path) -> None:
    overrides = [*smoke_overrides, *CIRCULAR, *SMALL]
    whole, probe = _run([*overrides, f"run.results_dir={tmp_path / 'whole'}", f"run.checkpoint_dir={tmp_path / 'ckw'}"])
    assert probe.sizes == [192] * 5  # |R| = 0.25 * 256 = 64
    assert _changed(probe) == [0, 0, 38, 0, 38]  # 0.2 * 192 = 38.4 -> 38 swaps at epochs 2 and 4
    block = whole["sieving"]
    assert (block["num_updates"], block["swap_count"], block["active_size"]) == (2, 38, 192)
    assert block["choices"]["swap_fraction_of"] == "partial"
    assert block["cycled_at_epoch"] == 4 and block["samples_ever_used"] == N  # 76 >= 64 retrieved
    assert (tmp_path / "whole" / "test" / "smoke" / "seed0" / block["updates_file"]).exists()
    curve = _curve(tmp_path / "whole")
    assert [int(r["sieving_active"]) for r in curve] == [192] * 5
    assert [int(r["sieving_swaps"]) for r in curve] == [0, 0, 38, 0, 38]

    cfg = load_config(overrides)
    with pytest.raises(Kill):
        run_training(cfg, extra_callbacks=[KillInEpoch(3)])
    resumed = run_training(cfg)
    assert resumed["run"]["resumed_from_epoch"] == [3]
    assert resumed["results"] == whole["results"]
    assert resumed["sieving"] == whole["sieving"]
    assert _curve(tmp_path / "runs") == curve


def test_mest_forgetting_run_removes_once_at_epoch_e(smoke_overrides) -> None:
    extra = ["sieving=mest_forgetting", "sieving.remove_n=50", "sieving.remove_epoch=2", "train.epochs=4"]
    record, probe = _run([*smoke_overrides, *extra])
    assert probe.sizes == [N, N, N - 50, N - 50]
    assert torch.equal(probe.presented[2], probe.presented[3])
    block = record["sieving"]
    assert (block["remove_n"], block["remove_epoch"], block["active_size"]) == (50, 2, N - 50)
    assert block["mean_presentations"] == 2.0  # every sample seen once per epoch before E


def test_random_fixed_run(smoke_overrides) -> None:
    record, probe = _run([*smoke_overrides, "sieving=random_fixed", "train.epochs=2"])
    assert probe.sizes == [205, 205]  # 0.2 * 256 = 51.2 -> 51 removed
    assert torch.equal(probe.presented[0], probe.presented[1])
    assert record["sieving"]["num_draws"] == 1


def test_random_redraw_run(smoke_overrides) -> None:
    overrides = [*smoke_overrides, "sieving=random_redraw", "sieving.redraw_every_epochs=1", "train.epochs=2"]
    record, probe = _run(overrides)
    assert probe.sizes == [205] * 2
    assert _changed(probe)[1] > 0
    assert record["sieving"]["num_draws"] == 2
