"""Per-task datasets for every suite: `load_task(suite, task)` -> TaskData."""

from benchmark.data.loader import TaskData, batches, labels, load_pretrain_images, load_task, tensors

__all__ = ["TaskData", "batches", "labels", "load_pretrain_images", "load_task", "tensors"]
