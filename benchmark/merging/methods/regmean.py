"""RegMean: closed-form merging of linear layers from their input Gram matrices."""

from __future__ import annotations

import inspect
from functools import partial
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from benchmark.merging.context import MergeContext
from benchmark.merging.methods._models import dev_images
from benchmark.merging.registry import register_merge
from benchmark.types import StateDict

Grams = dict[str, list]  # weight key -> [Σ XᵀX, number of rows]


def collect_grams(model: nn.Module, batches: Any) -> dict[str, torch.Tensor]:
    """Mean input Gram XᵀX / n (n = rows: examples × tokens) of every linear map in `model.encoder`, keyed
    by the weight's state-dict key, from running `model` on `batches`.

    - `nn.Linear`: a forward pre-hook records its input.
    - `nn.MultiheadAttention` (open_clip's attention): its packed `in_proj_weight` is a linear map of the
      block input, so a pre-hook on the attention module records the query (self-attention only; when
      key/value differ from the query, `in_proj_weight` gets no Gram and is averaged). Its `out_proj` is an
      `nn.Linear`, but the attention calls it functionally, so hooks on it never fire: the same pre-hook
      recomputes the heads' output (the input of `out_proj`) with `F.multi_head_attention_forward` and an
      identity output projection.
    """
    grams: Grams = {}
    encoder = model.encoder
    attention_out = {_join(n, "out_proj") for n, m in encoder.named_modules() if isinstance(m, nn.MultiheadAttention)}
    handles = []
    for name, module in encoder.named_modules():
        if isinstance(module, nn.MultiheadAttention) and module._qkv_same_embed_dim:
            hook = partial(_attention_hook, grams=grams, name=name)
            handles.append(module.register_forward_pre_hook(hook, with_kwargs=True))
        elif isinstance(module, nn.Linear) and name not in attention_out:
            handles.append(
                module.register_forward_pre_hook(partial(_linear_hook, grams=grams, key=_join(name, "weight")))
            )
    try:
        with torch.no_grad():
            for x in batches:
                model(x)
    finally:
        for handle in handles:
            handle.remove()
    return {key: total / count for key, (total, count) in grams.items()}


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name


def _accumulate(grams: Grams, key: str, x: torch.Tensor) -> None:
    rows = x.detach().reshape(-1, x.shape[-1]).float()
    gram = rows.T @ rows
    if key in grams:
        grams[key][0] += gram
        grams[key][1] += rows.shape[0]
    else:
        grams[key] = [gram, rows.shape[0]]


def _linear_hook(module: nn.Module, args: tuple, *, grams: Grams, key: str) -> None:
    _accumulate(grams, key, args[0])


def _attention_hook(module: nn.MultiheadAttention, args: tuple, kwargs: dict, *, grams: Grams, name: str) -> None:
    call = inspect.signature(module.forward).bind(*args, **kwargs)
    call.apply_defaults()
    a = call.arguments
    query, key, value = a["query"], a["key"], a["value"]
    if key is query and value is query:
        _accumulate(grams, _join(name, "in_proj_weight"), query)
    q, k, v = (t.transpose(0, 1) if module.batch_first and t.dim() == 3 else t for t in (query, key, value))
    eye = torch.eye(module.embed_dim, dtype=q.dtype, device=q.device)
    heads, _ = F.multi_head_attention_forward(
        q,
        k,
        v,
        module.embed_dim,
        module.num_heads,
        module.in_proj_weight,
        module.in_proj_bias,
        module.bias_k,
        module.bias_v,
        module.add_zero_attn,
        0.0,
        eye,
        None,
        training=False,
        key_padding_mask=a["key_padding_mask"],
        need_weights=False,
        attn_mask=a["attn_mask"],
        is_causal=a["is_causal"],
    )
    _accumulate(grams, _join(name, "out_proj.weight"), heads)


def regmean_weight(weights: list[torch.Tensor], grams: list[torch.Tensor], alpha: float) -> torch.Tensor:
    """W = argmin_W Σ_k ‖X_k Wᵀ − X_k W_kᵀ‖² with off-diagonal Gram entries scaled by `alpha`:
    G̃_k = α G_k + (1 − α) diag(G_k), Wᵀ = (Σ_k G̃_k)⁻¹ Σ_k G̃_k W_kᵀ, for PyTorch's (out, in) weights.
    Solved in float64; a singular Σ G̃ (inputs that are always 0) falls back to the pseudo-inverse."""
    scaled = [alpha * g.double() + (1 - alpha) * torch.diag(torch.diagonal(g)).double() for g in grams]
    lhs = sum(scaled)
    rhs = sum(g @ w.double().T for g, w in zip(scaled, weights, strict=True))
    solution, info = torch.linalg.solve_ex(lhs, rhs)
    if int(info) != 0 or not bool(torch.isfinite(solution).all()):
        solution = torch.linalg.pinv(lhs) @ rhs
    return solution.T.to(weights[0].dtype)


@register_merge(
    "regmean",
    needs=("unlabelled_dev", "classifier_factory"),
    hparams={"alpha": 0.1, "n_examples": 256, "batch_size": 32},
    seed_free=True,  # the first n_examples dev images in order, nothing random: one merge for every seed
    paper="RegMean (Jin et al., ICLR 2023)",
    citation="Jin et al. Dataless knowledge fusion by merging weights of language models. ICLR 2023. arXiv:2212.09849",
)
def regmean(ctx: MergeContext, alpha: float, n_examples: int, batch_size: int) -> StateDict:
    """Regression mean: every linear map in the encoder (`nn.Linear`, attention `in_proj_weight` and
    `out_proj`; see `collect_grams`) is merged by `regmean_weight` from the input Grams of each fine-tuned
    model on its own task's first `n_examples` (256) unlabelled dev images; every other tensor (biases,
    LayerNorms, embeddings, open_clip's `proj`/`conv1` parameters) is simply averaged, as in the paper.

    `alpha` = 0.1 is BadMerging's code default; the RegMean paper's own default is 0.9 and FusionBench's
    CLIP config uses 0.6.
    """
    grams = []
    for k, state_dict in enumerate(ctx.finetuned):
        model = ctx.classifier_factory(state_dict, k)
        grams.append(collect_grams(model, dev_images(ctx, k, batch_size=batch_size, n_examples=n_examples)))
    merged = {}
    for key, ref in ctx.pretrained.items():
        weights = [sd[key] for sd in ctx.finetuned]
        if all(key in g for g in grams):
            merged[key] = regmean_weight(weights, [g[key] for g in grams], alpha)
        else:
            merged[key] = torch.stack(weights).mean(0).to(ref.dtype)
    return merged
