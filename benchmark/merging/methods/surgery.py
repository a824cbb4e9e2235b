"""Representation Surgery on top of task arithmetic."""

from __future__ import annotations

import math

import torch
from torch import nn

from benchmark.merging.context import MergeContext, MergeOutput
from benchmark.merging.methods._models import dev_images
from benchmark.merging.methods.averaging import task_arithmetic
from benchmark.merging.registry import register_merge


class SurgeryAdapter(nn.Module):
    """f̂ = f − up(relu(down(f))), bias-free, `up` initialised to zero (so it starts as the identity)."""

    def __init__(self, dim: int, rank: int, generator: torch.Generator | None = None):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)
        nn.init.kaiming_uniform_(self.down.weight, a=math.sqrt(5), generator=generator)
        nn.init.zeros_(self.up.weight)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features - self.up(torch.relu(self.down(features)))

    @classmethod
    def from_state(cls, state: dict[str, torch.Tensor]) -> SurgeryAdapter:
        """The frozen eval-mode adapter holding `state` (its `state_dict()`); dims from the weight shapes. Built
        on the meta device, so no initialisation runs and no random number is drawn."""
        rank, dim = state["down.weight"].shape
        with torch.device("meta"):
            adapter = cls(dim, rank)
        adapter.load_state_dict(state, assign=True)
        return adapter.eval().requires_grad_(False)


@torch.no_grad()
def _features(model: nn.Module, batches: object) -> torch.Tensor:
    return torch.cat([model.features(x) for x in batches])


def train_adapter(
    merged: torch.Tensor,
    target: torch.Tensor,
    *,
    rank: int,
    steps: int,
    lr: float,
    batch_size: int,
    generator: torch.Generator,
) -> SurgeryAdapter:
    """Fit a `SurgeryAdapter` so that adapter(merged features) ≈ target features in L1 (mean absolute error),
    with Adam on random mini-batches of the cached features."""
    adapter = SurgeryAdapter(merged.shape[-1], min(rank, merged.shape[-1]), generator).to(merged.device)
    optimizer = torch.optim.Adam(adapter.parameters(), lr=lr)
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(len(merged), (min(batch_size, len(merged)),), generator=generator)
            loss = nn.functional.l1_loss(adapter(merged[idx.to(merged.device)]), target[idx.to(merged.device)])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return adapter.eval().requires_grad_(False)


@register_merge(
    "surgery_task_arithmetic",
    needs=("unlabelled_dev", "classifier_factory"),
    hparams={"scaling_coef": 0.3, "rank": 16, "steps": 1000, "lr": 1e-3, "batch_size": 16},
    paper="Representation Surgery (Yang et al., ICML 2024)",
    citation="Yang et al. Representation surgery for multi-task model merging. ICML 2024. arXiv:2402.02705",
    load_adapter=SurgeryAdapter.from_state,
)
def surgery_task_arithmetic(
    ctx: MergeContext, scaling_coef: float, rank: int, steps: int, lr: float, batch_size: int
) -> MergeOutput:
    """Task arithmetic (λ = `scaling_coef`), then one `SurgeryAdapter` per task on the merged encoder's
    features, trained on that task's unlabelled dev images to minimise the L1 distance to the fine-tuned
    encoder's features (the representation bias). Published setting: rank 16, Adam lr 1e-3, 500 iterations
    of 2 batches of 16 per task, i.e. 1000 Adam steps per task (the defaults). Deviation: features are
    computed once on the whole dev set and mini-batches are drawn from that cache (equivalent, since both
    encoders are frozen). Seeded by `ctx.seed`."""
    merged = task_arithmetic(ctx.pretrained, ctx.finetuned, scaling_coef)
    generator = torch.Generator().manual_seed(ctx.seed)
    adapters: list[nn.Module | None] = []
    for k, finetuned in enumerate(ctx.finetuned):
        source = _features(ctx.classifier_factory(merged, k), dev_images(ctx, k, batch_size=64))
        target = _features(ctx.classifier_factory(finetuned, k), dev_images(ctx, k, batch_size=64))
        adapters.append(
            train_adapter(source, target, rank=rank, steps=steps, lr=lr, batch_size=batch_size, generator=generator)
        )
    return MergeOutput(merged, adapters)
