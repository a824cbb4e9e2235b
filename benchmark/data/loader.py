"""Dispatch from a suite's data source to its loader."""

from dataclasses import dataclass

import torch
from torch.utils.data import Dataset

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


SOURCES = ("sklearn_digits", "huggingface")


def load_task(suite: Suite, task: str) -> TaskData:
    """The splits of `task` in `suite`, fixed by the suite's split seed."""
    source = suite.data["source"]
    if source == "sklearn_digits":
        from benchmark.data.digits import digits_task

        return digits_task(suite, suite.task(task))
    if source == "huggingface":
        from benchmark.data.hf import hf_task

        return hf_task(suite, suite.task(task))
    raise UnknownNameError("data source", source, list(SOURCES))


def load_pretrain_images(suite: Suite) -> torch.Tensor:
    """Unlabelled images of the pretraining split, (N, 3, H, W) in [0, 1]; disjoint from every task split."""
    from benchmark.data.digits import digits_pretrain_images

    if suite.data["source"] != "sklearn_digits":
        raise UnknownNameError("pretraining source", suite.data["source"], ["sklearn_digits"])
    return digits_pretrain_images(suite)
