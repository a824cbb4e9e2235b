"""Synthetic task data in a suite's shapes (`data.source: synthetic`): the smoke path without downloads.

Every task gets `data.synthetic.train` / `.test` images of `data.image_size` with its `n_classes` labels
(label of item i: i mod n_classes). Item i is generated on demand from a generator seeded by
(`data.synthetic.seed`, task, split, i): a fixed per-class low-frequency pattern plus per-item noise, in
[0, 1]. So nothing is held in memory, any item reads the same in any order or worker, and the classes are
learnable. The dev split is a seeded fraction of train, as for Hugging Face suites (`data.dev`).
"""

import zlib

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from benchmark.data.loader import TaskData
from benchmark.suites import Suite, TaskSpec


def _seed(*parts: object) -> int:
    return zlib.crc32("/".join(map(str, parts)).encode())


class SyntheticImages(Dataset):
    """Rows `indices` of a synthetic split: (x, y), x float (3, S, S) in [0, 1], y = index mod n_classes."""

    def __init__(self, task: str, split: str, indices: np.ndarray, n_classes: int, image_size: int, seed: int):
        self.task, self.split, self.indices = task, split, np.asarray(indices, dtype=np.int64)
        self.n_classes, self.image_size, self.seed = n_classes, image_size, seed

    def __len__(self) -> int:
        return len(self.indices)

    def _pattern(self, label: int) -> torch.Tensor:
        g = torch.Generator().manual_seed(_seed(self.seed, self.task, "class", label))
        low = torch.rand(1, 3, 4, 4, generator=g)
        return F.interpolate(low, size=(self.image_size,) * 2, mode="bilinear", align_corners=False)[0]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = int(self.indices[i])
        label = row % self.n_classes
        g = torch.Generator().manual_seed(_seed(self.seed, self.task, self.split, row))
        noise = torch.rand(3, self.image_size, self.image_size, generator=g)
        return (0.7 * self._pattern(label) + 0.3 * noise).clamp(0, 1), torch.tensor(label)

    @property
    def targets(self) -> torch.Tensor:
        """All labels, in order, without generating any image."""
        return torch.as_tensor(self.indices % self.n_classes, dtype=torch.long)


def synthetic_task(suite: Suite, spec: TaskSpec) -> TaskData:
    """The task's synthetic train/dev/test splits (sizes from `data.synthetic`; dev held out of train)."""
    from benchmark.data.hf import split_dev

    data, cfg = suite.data, suite.data.get("synthetic") or {}
    size, seed = int(data["image_size"]), int(cfg.get("seed", 0))
    dev_cfg = data.get("dev", {})
    train_idx, dev_idx = split_dev(int(cfg.get("train", 64)), float(dev_cfg.get("fraction", 0.1)),
                                   dev_cfg.get("max_size", 5000), int(dev_cfg.get("seed", 0)))

    def part(split: str, idx: np.ndarray) -> SyntheticImages:
        return SyntheticImages(spec.name, split, idx, spec.n_classes, size, seed)

    classnames = [str(c) for c in spec.options.get("classnames") or [f"class {c}" for c in range(spec.n_classes)]]
    return TaskData(spec.name, part("train", train_idx), part("train", dev_idx),
                    part("test", np.arange(int(cfg.get("test", 32)))), spec.n_classes, classnames)
