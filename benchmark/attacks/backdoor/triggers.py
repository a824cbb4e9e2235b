"""Patch triggers: pasting a patch into images, and the universal adversarial patch of BadMerging's stage 1.

A trigger is a small RGB patch in [0, 1] pixel space pasted at a fixed corner (BadMerging pastes at the
bottom-right corner; Zhang et al., CCS 2024, official code `corner_mask_generation`). Images are in [0, 1],
shape (N, 3, H, W), as everywhere in mergesec; normalisation lives inside the models.

Sizes on the embedded `digits` suite (16x16 images): the papers' 1% (on-task) and 1.5% (off-task) of the
image area would be 1.6 and 1.9 pixels wide, below one pixel-row of a digit stroke. mergesec keeps the
spirit (small, corner, off-task larger than on-task) with a 3x3 patch (3.5% of the pixels) on-task and
for the BadNets baseline, and 4x4 (6.25%, exactly one ViT token) off-task; see docs/backdoor.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from benchmark.data.loader import loader_workers

POSITIONS = ("bottom_right", "top_left", "top_right", "bottom_left")


@dataclass(frozen=True)
class Trigger:
    """A patch `pattern` (3, s, s) in [0, 1] pasted at `position` (a corner name, or (row, col))."""

    pattern: torch.Tensor
    position: str | tuple[int, int] = "bottom_right"

    @property
    def size(self) -> int:
        return int(self.pattern.shape[-1])

    def offset(self, height: int, width: int) -> tuple[int, int]:
        """Top-left pixel of the patch in an image of `height` x `width`."""
        s = self.size
        if isinstance(self.position, tuple | list):
            return int(self.position[0]), int(self.position[1])
        if self.position not in POSITIONS:
            raise ValueError(f"unknown trigger position {self.position!r}; use one of {POSITIONS} or (row, col)")
        row = height - s if self.position.startswith("bottom") else 0
        col = width - s if self.position.endswith("right") else 0
        return row, col

    def mask(self, height: int, width: int) -> torch.Tensor:
        """(1, 1, H, W) float mask: 1 where the patch goes."""
        m = torch.zeros(1, 1, height, width)
        r, c = self.offset(height, width)
        m[..., r : r + self.size, c : c + self.size] = 1.0
        return m

    def apply(self, x: torch.Tensor) -> torch.Tensor:
        """`x` with the patch pasted (a new tensor; differentiable w.r.t. `pattern` and `x`)."""
        return paste(x, self.pattern, self.offset(x.shape[-2], x.shape[-1]))


def paste(x: torch.Tensor, pattern: torch.Tensor, offset: tuple[int, int]) -> torch.Tensor:
    """Replace the pixels of `x` (N, C, H, W) under the patch at `offset` by `pattern` (C, s, s)."""
    _, _, h, w = x.shape
    s = pattern.shape[-1]
    r, col = offset
    if r < 0 or col < 0 or r + s > h or col + s > w:
        raise ValueError(f"a {s}x{s} patch at {offset} does not fit a {h}x{w} image")
    full = F.pad(pattern.to(x.dtype), (col, w - col - s, r, h - r - s)).unsqueeze(0)
    mask = torch.zeros(1, 1, h, w, dtype=x.dtype, device=x.device)
    mask[..., r : r + s, col : col + s] = 1.0
    return x * (1 - mask) + full.to(x.device) * mask


def checkerboard(size: int, channels: int = 3) -> torch.Tensor:
    """A black/white checkerboard patch (BadNets' fixed pattern trigger, Gu et al. 2017), white top-left."""
    idx = torch.arange(size)
    board = ((idx.view(-1, 1) + idx.view(1, -1)) % 2 == 0).float()
    return board.expand(channels, size, size).clone()


def white_square(size: int, channels: int = 3) -> torch.Tensor:
    """An all-white patch: the simplest known trigger (what the IBVS defender injects)."""
    return torch.ones(channels, size, size)


def optimise_universal_patch(
    model: nn.Module,
    images: Dataset,
    target: int,
    size: int,
    position: str | tuple[int, int] = "bottom_right",
    steps: int = 300,
    lr: float = 0.05,
    batch_size: int = 128,
    seed: int = 0,
    pool: torch.Tensor | None = None,
) -> Trigger:
    """Universal adversarial patch (BadMerging stage 1; Zhang et al., CCS 2024, §4.2, after Brown et al.'s
    adversarial patch): maximise the mean log-probability of class `target` of `model` over the images of
    the dataset `images` (those at the indices `pool`, default all) with the patch pasted, by projected Adam
    ascent on the patch pixels (kept in [0, 1]), from a uniform random start seeded by `seed`. Each step
    reads only its own batch of `batch_size` images, so `images` may be a whole training split.

    `model` must be the *pretrained* encoder with a head (the adversary's task head on-task, the shadow head
    off-task): the trigger is the pretrained model's inherent weakness, which every fine-tuned model that
    starts from it shares. Only `model` and `images` are used; the model's parameters are not changed.
    The official code takes one image at a time with lr 1 for up to 1,000 steps each; batched Adam reaches
    the same objective in far fewer forward passes on tiny images.
    """
    pool = torch.arange(len(images)) if pool is None else torch.as_tensor(pool)
    if len(pool) == 0:
        raise ValueError("no images to optimise the patch on")
    gen = torch.Generator().manual_seed(seed)
    c = images[int(pool[0])][0].shape[0]
    pattern = torch.rand(c, size, size, generator=gen).requires_grad_(True)
    opt = torch.optim.Adam([pattern], lr=lr)
    was_training = model.training
    model.eval()
    grads = [p.requires_grad for p in model.parameters()]
    model.requires_grad_(False)
    draws = _RandomBatches(pool, min(batch_size, len(pool)), steps, gen)
    workers = loader_workers()
    loader = DataLoader(images, batch_sampler=draws, num_workers=workers, prefetch_factor=2 if workers else None)
    try:
        for x, _ in loader:
            logits = model(Trigger(pattern, position).apply(x))
            loss = -F.log_softmax(logits, dim=-1)[:, target].mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            with torch.no_grad():
                pattern.clamp_(0, 1)
    finally:
        for p, g in zip(model.parameters(), grads, strict=True):
            p.requires_grad_(g)
        model.train(was_training)
    return Trigger(pattern.detach().clone(), position)


class _RandomBatches(Sampler[list[int]]):
    """`steps` batches of `size` indices drawn uniformly, with replacement, from `pool` with `gen`; drawn
    lazily in order, so a DataLoader prefetching them consumes `gen` exactly as a loop drawing them would."""

    def __init__(self, pool: torch.Tensor, size: int, steps: int, gen: torch.Generator):
        self.pool, self.size, self.steps, self.gen = pool, size, steps, gen

    def __len__(self) -> int:
        return self.steps

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.steps):
            yield self.pool[torch.randint(len(self.pool), (self.size,), generator=self.gen)].tolist()


def random_resized_crop(
    x: torch.Tensor, gen: torch.Generator, scale: tuple[float, float] = (0.5, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Per-image RandomResizedCrop (crop `scale` of the area at aspect `ratio`, resize back), seeded."""
    n, _, h, w = x.shape
    out = []
    for i in range(n):
        area = h * w * float(torch.empty(1).uniform_(*scale, generator=gen))
        logr = torch.empty(1).uniform_(float(torch.log(torch.tensor(ratio[0]))),
                                       float(torch.log(torch.tensor(ratio[1]))), generator=gen)
        ar = float(torch.exp(logr))
        cw = max(1, min(w, round((area * ar) ** 0.5)))
        ch = max(1, min(h, round((area / ar) ** 0.5)))
        top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
        left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
        crop = x[i : i + 1, :, top : top + ch, left : left + cw]
        out.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
    return torch.cat(out).clamp(0, 1)


def pgd_targeted(
    model: nn.Module, x: torch.Tensor, targets: torch.Tensor, eps: float = 8 / 255, step: float = 1 / 255,
    steps: int = 40,
) -> torch.Tensor:
    """Targeted L-inf PGD towards `targets` (BadMerging's adversarial data augmentation, eps 8/255, step
    1/255, 40 steps), in [0, 1] pixel space, from the clean image."""
    model.eval()
    adv = x.clone().detach()
    for _ in range(steps):
        adv.requires_grad_(True)
        loss = F.cross_entropy(model(adv), targets)
        (grad,) = torch.autograd.grad(loss, adv)
        adv = adv.detach() - step * grad.sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1).detach()
    return adv
