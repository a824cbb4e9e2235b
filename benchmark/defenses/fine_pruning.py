"""Fine-pruning (Liu, Dolan-Gavitt & Garg, "Fine-Pruning: Defending Against Backdooring Attacks on Deep
Neural Networks", RAID 2018), the classic post-training backdoor defense, applied to the merged model.

1. Pruning: record the mean activation of the hidden units of the last MLP block of the encoder on clean
   dev images (all merged tasks); remove the `prune_ratio` fraction least active on clean data (backdoor
   behaviour tends to live in units that clean inputs leave dormant) by zeroing their input weights, bias
   and output weights.
2. Fine-tuning: a short fine-tune of the pruned merged encoder on the labelled dev data of every merged
   task (each through its own frozen head and, if the method made one, adapter), the pruned units kept at
   zero.

Adaptations: the paper prunes the last convolutional layer's channels of a CNN until clean accuracy drops
by 4%; mergesec prunes the hidden units of the last transformer MLP of the ViT by a fixed ratio, and
fine-tunes on the merged tasks' dev splits (the data a data-dependent merge may also use).
"""

from __future__ import annotations

import itertools

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader

from benchmark.defenses.api import DefenseInputs
from benchmark.defenses.registry import DefenseError, register_defense
from benchmark.merging import MergeOutput
from benchmark.zoo.train import FOREACH

FP_HPARAMS = {"prune_ratio": 0.3, "epochs": 2, "lr": 1e-4, "batch_size": 64, "seed": 0}


def last_mlp(encoder: nn.Module) -> tuple[str, nn.Linear, nn.Linear, nn.Module]:
    """(name, fc-in, activation, fc-out) of the last transformer MLP: open_clip's `...mlp.c_fc`,
    `...mlp.gelu` (GELU, or QuickGELU on the OpenAI CLIP weights) and `...mlp.c_proj`."""
    found = [(n[: -len(".c_fc")], m) for n, m in encoder.named_modules() if n.endswith("mlp.c_fc")]
    if not found:
        raise DefenseError("fine_pruning needs an encoder with transformer MLP blocks (`mlp.c_fc`/`mlp.c_proj`)")
    name, fc = found[-1]
    try:
        act = encoder.get_submodule(name + ".gelu")
    except AttributeError:
        act = nn.GELU()
    return name, fc, act, encoder.get_submodule(name + ".c_proj")


@torch.no_grad()
def dormant_units(model: nn.Module, fc: nn.Linear, images: list[torch.Tensor], ratio: float,
                  activation: nn.Module | None = None) -> torch.Tensor:
    """Indices of the `ratio` fraction of `fc`'s output units with the lowest mean activation after
    `activation` (the MLP's own: the units are ranked on what the next layer sees; default GELU)."""
    act = activation if activation is not None else nn.GELU()
    acts: list[torch.Tensor] = []
    hook = fc.register_forward_hook(lambda _m, _i, out: acts.append(act(out).reshape(-1, out.shape[-1]).mean(0)))
    try:
        model.eval()
        for x in images:
            model(x)
    finally:
        hook.remove()
    mean = torch.stack(acts).mean(0)
    k = round(ratio * mean.numel())
    return torch.argsort(mean)[:k]


@register_defense(
    "fine_pruning", stage="post", needs=("labelled_dev", "classifier_factory"), hparams=FP_HPARAMS,
    paper="Liu, Dolan-Gavitt & Garg, Fine-Pruning: Defending Against Backdooring Attacks on Deep Neural "
          "Networks, RAID 2018",
)
def fine_pruning(merged: MergeOutput, inputs: DefenseInputs, prune_ratio: float, epochs: int, lr: float,
                 batch_size: int, seed: int) -> MergeOutput:
    """Prune the merged encoder's least clean-active last-MLP units, then fine-tune it briefly on every
    merged task's labelled dev data (pruned units held at zero)."""
    ctx = inputs.context
    n = len(inputs.finetuned)
    models = [ctx.classifier_factory(merged.state_dict, i, merged.adapters[i]) for i in range(n)]
    enc = models[0].encoder
    for m in models[1:]:
        m.encoder = enc  # one shared encoder, per-task heads and adapters
    _, fc, act, proj = last_mlp(enc)
    gen = torch.Generator().manual_seed(seed)
    loaders = [DataLoader(ds, batch_size=batch_size, shuffle=True, generator=gen) for ds in ctx.dev_data]
    clean_images = [x for loader in loaders for x, _ in itertools.islice(iter(loader), 4)]
    pruned = dormant_units(models[0], fc, clean_images, prune_ratio, act)
    keep = torch.ones(fc.out_features)
    keep[pruned] = 0.0

    def apply_mask() -> None:
        with torch.no_grad():
            fc.weight.mul_(keep.view(-1, 1))
            if fc.bias is not None:
                fc.bias.mul_(keep)
            proj.weight.mul_(keep.view(1, -1))

    apply_mask()
    if epochs > 0:
        torch.manual_seed(seed)
        enc.requires_grad_(True)
        opt = torch.optim.AdamW([p for p in enc.parameters() if p.requires_grad], lr=lr, weight_decay=0.0,
                                foreach=FOREACH)
        for m in models:
            m.train()
        for _ in range(epochs):
            for batches in zip(*loaders, strict=False):
                loss = sum(F.cross_entropy(m(x), y) for m, (x, y) in zip(models, batches, strict=True)) / n
                opt.zero_grad()
                loss.backward()
                opt.step()
                apply_mask()
        enc.requires_grad_(False).eval()
    state = {k: v.detach().clone() for k, v in enc.state_dict().items()}
    return MergeOutput({k: state[k] for k in merged.state_dict}, list(merged.adapters))
