"""Dispatch from a suite's data source to its loader."""

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset, Subset, TensorDataset

from benchmark.batch_sizes import EVAL_BATCH_SIZE
from benchmark.errors import UnknownNameError
from benchmark.suites import Suite


@dataclass
class TaskData:
    """A task's splits. Datasets yield (x, y): x float in [0, 1] of shape (3, H, W), y an int64 label."""

    name: str
    train: Dataset
    dev: Dataset
    test: Dataset
    n_classes: int
    classnames: list[str]


SOURCES = ("sklearn_digits", "huggingface", "synthetic")
BATCH_SIZE = EVAL_BATCH_SIZE  # the default evaluation batch (suites may set one per device: benchmark.batch_sizes)
WORKERS_ENV = "MERGESEC_DATA_WORKERS"


def loader_workers() -> int:
    """Worker processes that decode images for a DataLoader: `$MERGESEC_DATA_WORKERS` (default 0, in this
    process). Item order never depends on it (the sampler runs here), so neither do results."""
    return int(os.environ.get(WORKERS_ENV, "0") or 0)


def loader_options() -> dict[str, Any]:
    """DataLoader arguments for `loader_workers()` decoding processes (none: read in this process)."""
    workers = loader_workers()
    return {"num_workers": workers, "prefetch_factor": 2 if workers else None}


def batches(ds: Dataset, batch_size: int = BATCH_SIZE) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """`ds` as (x, y) batches in order; a `TensorDataset` is sliced, anything else read by a DataLoader, so a
    split of any size is never all in memory."""
    if isinstance(ds, TensorDataset):
        x, y = ds.tensors
        for i in range(0, len(y), batch_size):
            yield x[i : i + batch_size], y[i : i + batch_size]
    else:
        yield from DataLoader(ds, batch_size=batch_size, shuffle=False, **loader_options())


def tensors(ds: Dataset, indices: Sequence[int] | torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The (x, y) of `ds`, or of the examples at `indices` in that order, as two tensors in memory: for the
    small subsets the protocol fixes (transfer subsets, a backdoor adversary's data). A `TensorDataset` is
    indexed directly (bitwise the same values)."""
    if isinstance(ds, TensorDataset):
        x, y = ds.tensors
        return (x, y) if indices is None else (x[indices].contiguous(), y[indices].contiguous())
    part = ds if indices is None else Subset(ds, [int(i) for i in indices])
    xs, ys = zip(*batches(part), strict=True)
    return torch.cat(xs), torch.cat(ys)


def labels(ds: Dataset) -> torch.Tensor:
    """All labels of `ds`, in order, without decoding images where the dataset can say them (a
    `TensorDataset`'s label tensor, or a `targets` property, as the Hugging Face and synthetic splits have);
    any other dataset is read batch by batch, keeping only the labels."""
    if isinstance(ds, TensorDataset):
        return ds.tensors[1]
    if isinstance(ds, ConcatDataset):
        return torch.cat([labels(d) for d in ds.datasets])
    if hasattr(ds, "targets"):
        return torch.as_tensor(ds.targets, dtype=torch.long)
    return torch.cat([y for _, y in batches(ds)])


class OffsetLabels(Dataset):
    """`base` with every label shifted by `offset`, read lazily item by item (its `targets` without decoding)."""

    def __init__(self, base: Dataset, offset: int):
        self.base, self.offset = base, int(offset)

    def __len__(self) -> int:
        return len(self.base)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = self.base[i]
        return x, torch.as_tensor(y) + self.offset

    @property
    def targets(self) -> torch.Tensor:
        return labels(self.base) + self.offset


def load_task(suite: Suite, task: str) -> TaskData:
    """The splits of `task` in `suite`, fixed by the suite's split seed."""
    source = suite.data["source"]
    if source == "sklearn_digits":
        from benchmark.data.digits import digits_task

        return digits_task(suite, suite.task(task))
    if source == "huggingface":
        from benchmark.data.hf import hf_task

        return hf_task(suite, suite.task(task))
    if source == "synthetic":
        from benchmark.data.synthetic import synthetic_task

        return synthetic_task(suite, suite.task(task))
    raise UnknownNameError("data source", source, list(SOURCES))


def load_pretrain_images(suite: Suite) -> torch.Tensor:
    """Unlabelled images of the pretraining split, (N, 3, H, W) in [0, 1]; disjoint from every task split."""
    from benchmark.data.digits import digits_pretrain_images

    if suite.data["source"] != "sklearn_digits":
        raise UnknownNameError("pretraining source", suite.data["source"], ["sklearn_digits"])
    return digits_pretrain_images(suite)
