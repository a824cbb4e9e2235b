"""Per-task datasets for every suite: `load_task(suite, task)` -> TaskData."""

from benchmark.data.loader import TaskData, load_pretrain_images, load_task

__all__ = ["TaskData", "load_pretrain_images", "load_task"]
