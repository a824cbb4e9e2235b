"""The embedded `digits` data: scikit-learn's load_digits (1,797 8x8 images, no download).

Images are scaled to [0, 1], upsampled to the suite's image size and repeated to 3 channels. One seeded
permutation splits the 1,797 images into disjoint pretrain / train / dev / test parts; every task applies
its own input-domain transform and label map to the same parts.
"""

from collections.abc import Callable
from functools import lru_cache

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch.utils.data import TensorDataset

from benchmark.data.loader import TaskData
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.suites import Suite, TaskSpec

DOMAINS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "upright": lambda x: x,
    "inverted": lambda x: 1.0 - x,
    "rotated90": lambda x: torch.rot90(x, 1, dims=(-2, -1)),
    "rotated180": lambda x: torch.rot90(x, 2, dims=(-2, -1)),
    "mirrored": lambda x: torch.flip(x, dims=(-1,)),
    "transposed": lambda x: x.transpose(-2, -1),
}

LABELS: dict[str, tuple[Callable[[torch.Tensor], torch.Tensor], list[str]]] = {
    "identity": (lambda y: y, [str(d) for d in range(10)]),
    "parity": (lambda y: y % 2, ["even", "odd"]),
    "ge5": (lambda y: (y >= 5).long(), ["less than five", "five or more"]),
    "mod3": (lambda y: y % 3, ["0 mod 3", "1 mod 3", "2 mod 3"]),
}


@lru_cache(maxsize=4)
def _images(image_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    bunch = load_digits()
    x = torch.tensor(bunch.images, dtype=torch.float32).unsqueeze(1) / 16.0
    x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", align_corners=False)
    return x.clamp(0, 1).repeat(1, 3, 1, 1), torch.tensor(bunch.target, dtype=torch.long)


def _split_indices(suite: Suite) -> dict[str, np.ndarray]:
    sizes = suite.data["splits"]
    n = sum(sizes.values())
    total = len(load_digits().target)
    if n > total:
        raise MergesecError(f"suite {suite.name}: splits ask for {n} images but load_digits has {total}")
    perm = np.random.default_rng(suite.data["split_seed"]).permutation(total)
    out, start = {}, 0
    for name in ("pretrain", "train", "dev", "test"):
        out[name] = perm[start : start + sizes[name]]
        start += sizes[name]
    return out


def digits_pretrain_images(suite: Suite) -> torch.Tensor:
    """Images of the pretraining split (labels withheld: pretraining is self-supervised), once in each of the
    suite's `data.pretrain_domains` (default: upright only); disjoint from every task split."""
    x, _ = _images(suite.data["image_size"])
    x = x[_split_indices(suite)["pretrain"]]
    domains = suite.data.get("pretrain_domains", ["upright"])
    for d in domains:
        if d not in DOMAINS:
            raise UnknownNameError("digits domain", d, list(DOMAINS))
    return torch.cat([DOMAINS[d](x) for d in domains])


def digits_task(suite: Suite, spec: TaskSpec) -> TaskData:
    """The task's train/dev/test splits with its domain transform and label map applied."""
    domain, labels = spec.options.get("domain", "upright"), spec.options.get("labels", "identity")
    if domain not in DOMAINS:
        raise UnknownNameError("digits domain", domain, list(DOMAINS))
    if labels not in LABELS:
        raise UnknownNameError("digits label map", labels, list(LABELS))
    transform, (label_fn, classnames) = DOMAINS[domain], LABELS[labels]
    if spec.n_classes != len(classnames):
        raise MergesecError(
            f"task {spec.name}: n_classes={spec.n_classes} but label map {labels!r} has {len(classnames)}"
        )
    x, y = _images(suite.data["image_size"])
    idx = _split_indices(suite)

    def part(name: str) -> TensorDataset:
        return TensorDataset(transform(x[idx[name]]).contiguous(), label_fn(y[idx[name]]))

    return TaskData(spec.name, part("train"), part("dev"), part("test"), spec.n_classes, classnames)
