"""Training recipes of the zoo: SimCLR pretraining, few-shot linear probes, head-frozen fine-tuning.

Every function is seeded and runs on the CPU in seconds for the `digits` suite.
"""

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from benchmark.data import labels, tensors
from benchmark.data.loader import loader_workers
from benchmark.zoo.model import ClassificationHead, ImageClassifier

FOREACH = True
"""AdamW's multi-tensor step (`foreach=True`) on every device: on the CPU it runs the same per-tensor kernels
in the same order as the single-tensor step (bitwise the same weights, a test checks it) with less Python
overhead per step (a few percent of a digits fine-tune). The fused step would change the floats."""


def random_affine(x: torch.Tensor, gen: torch.Generator, max_rot: float = 15.0, scale=(0.85, 1.1)) -> torch.Tensor:
    """Per-sample random rotation, scale and translation (SimCLR-style views for tiny images)."""
    n = len(x)
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(max_rot)
    s = torch.empty(n).uniform_(scale[0], scale[1], generator=gen)
    t = (torch.rand(n, 2, generator=gen) * 2 - 1) * 0.15
    cos, sin = torch.cos(ang) / s, torch.sin(ang) / s
    theta = torch.stack([torch.stack([cos, -sin, t[:, 0]], 1), torch.stack([sin, cos, t[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, align_corners=False, padding_mode="zeros")
    gain = torch.empty(n, 1, 1, 1).uniform_(0.7, 1.3, generator=gen)
    return (out * gain).clamp(0, 1)


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float) -> torch.Tensor:
    """SimCLR's normalised temperature-scaled cross-entropy (Chen et al., ICML 2020)."""
    z = F.normalize(torch.cat([z1, z2]), dim=-1)
    sim = z @ z.T / temperature
    sim.fill_diagonal_(float("-inf"))
    n = len(z1)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    return F.cross_entropy(sim, target)


def _cosine_lr(opt: torch.optim.Optimizer, total: int, warmup: int) -> torch.optim.lr_scheduler.LambdaLR:
    def f(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))

    return torch.optim.lr_scheduler.LambdaLR(opt, f)


def pretrain_simclr(
    encoder: nn.Module, images: torch.Tensor, mean, std, cfg: dict[str, Any], seed: int, progress: bool = True
) -> nn.Module:
    """Self-supervised SimCLR pretraining of `encoder` on unlabelled `images` (in place; returned)."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    dim, device = encoder.output_dim, next(encoder.parameters()).device
    proj = nn.Sequential(nn.Linear(dim, 4 * dim), nn.ReLU(), nn.Linear(4 * dim, dim)).to(device)
    mean_t, std_t = _normalisation(mean, std, device)
    params = list(encoder.parameters()) + list(proj.parameters())
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], foreach=FOREACH)
    bs, epochs = cfg["batch_size"], cfg["epochs"]
    steps_per_epoch = math.ceil(len(images) / bs)
    sched = _cosine_lr(opt, epochs * steps_per_epoch, steps_per_epoch)
    encoder.train()
    for _ in tqdm(range(epochs), desc="pretrain (SimCLR)", disable=not progress, leave=False):
        perm = torch.randperm(len(images), generator=gen)
        for i in range(0, len(images), bs):
            x = images[perm[i : i + bs]]
            v1, v2 = random_affine(x, gen).to(device), random_affine(x, gen).to(device)
            z1 = proj(encoder((v1 - mean_t) / std_t))
            z2 = proj(encoder((v2 - mean_t) / std_t))
            loss = nt_xent(z1, z2, cfg["temperature"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return encoder.eval()


def _normalisation(mean, std, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(mean, device=device).view(1, -1, 1, 1), torch.tensor(std, device=device).view(1, -1, 1, 1)


@torch.no_grad()
def _features(encoder: nn.Module, x: torch.Tensor, mean, std) -> torch.Tensor:
    """Normalised features of `x` (on the CPU) by `encoder` (on any device)."""
    encoder.eval()
    mean_t, std_t = _normalisation(mean, std, next(encoder.parameters()).device)
    return F.normalize(encoder((x.to(mean_t.device) - mean_t) / std_t), dim=-1).cpu()


def fit_probe(
    encoder: nn.Module, train: Dataset, n_classes: int, mean, std, shots: int, C: float, seed: int
) -> ClassificationHead:
    """Few-shot linear probe (`shots` labelled images per class, L2-regularised logistic regression)
    on the frozen encoder's normalised features: the stand-in for CLIP's zero-shot head. The shots are
    picked from the split's labels and only those images are read, so `train` may be of any size."""
    y = labels(train)
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(np.flatnonzero(y.numpy() == c), shots, replace=False) for c in range(n_classes)])
    x_shots, y_shots = tensors(train, idx)
    feats = _features(encoder, x_shots, mean, std).numpy()
    lr = LogisticRegression(C=C, max_iter=5000).fit(feats, y_shots.numpy())
    head = ClassificationHead(feats.shape[1], n_classes)
    with torch.no_grad():
        w, b = torch.tensor(lr.coef_, dtype=torch.float32), torch.tensor(lr.intercept_, dtype=torch.float32)
        if n_classes == 2:  # sklearn keeps one row for binary problems: logits (−w·f/2, +w·f/2)
            w, b = torch.cat([-w, w]) / 2, torch.cat([-b, b]) / 2
        head.weight.copy_(w)
        head.bias.copy_(b)
    return head.requires_grad_(False)


LossFn = Callable[[ImageClassifier, torch.Tensor, torch.Tensor], torch.Tensor]


def cross_entropy_loss(model: ImageClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(model(x), y)


def finetune(
    model: ImageClassifier,
    train: Dataset,
    cfg: dict[str, Any],
    seed: int,
    loss_fn: LossFn = cross_entropy_loss,
    desc: str = "fine-tune",
    progress: bool = True,
) -> ImageClassifier:
    """Fine-tune the encoder only (head frozen, the task-vectors recipe) with AdamW and a cosine schedule.

    `loss_fn(model, x, y)` lets attacks (backdoors) change the objective while keeping the recipe.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model.head.requires_grad_(False)
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], foreach=FOREACH)
    loader = DataLoader(train, batch_size=cfg["batch_size"], shuffle=True, generator=gen, drop_last=False,
                        num_workers=loader_workers())
    total = cfg["epochs"] * len(loader)
    sched = _cosine_lr(opt, total, cfg.get("warmup_steps", 0))
    model.train()
    for _ in tqdm(range(cfg["epochs"]), desc=desc, disable=not progress, leave=False):
        for x, y in loader:
            loss = loss_fn(model, x, y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()
