"""RunContext: the cached inputs every unit of a run shares (suite, zoo, task data, merged models)."""

import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch import nn

from benchmark.cache import Cache
from benchmark.data import TaskData, load_task
from benchmark.device import default_device
from benchmark.hashing import content_hash
from benchmark.suites import Suite
from benchmark.types import StateDict
from benchmark.zoo import ImageClassifier, Zoo, build_zoo


@dataclass
class MergedModel:
    """A merge result: the merged encoder, optional per-task adapters, and how long merging took."""

    state_dict: StateDict
    adapters: list[nn.Module | None]
    seconds: float


class RunContext:
    """Lazily built, memoised inputs of a run. Everything here is a function of the suite and the cache."""

    def __init__(self, suite: Suite, cache: Cache, progress: bool = True, device: torch.device | None = None):
        self.suite, self.cache, self.progress = suite, cache, progress
        # where models compute (benchmark.device; default $MERGESEC_DEVICE, else the CPU); results: CPU
        self.device = device if device is not None else default_device()
        self._data: dict[str, TaskData] = {}
        self._merged: dict[str, MergedModel] = {}

    @cached_property
    def zoo(self) -> Zoo:
        return build_zoo(self.suite, self.cache, self.progress, self.device)

    def data(self, task: str) -> TaskData:
        if task not in self._data:
            self._data[task] = load_task(self.suite, task)
        return self._data[task]

    def method_hparams(self, method: str) -> dict[str, Any]:
        """The method's defaults updated with what the suite fixes."""
        from benchmark.merging import get_method

        return {**get_method(method).hparams, **self.suite.merge_methods.get(method, {})}

    def method_code(self, method: str) -> str:
        """Identity of the method's code: the submission's content hash, or mergesec's version for built-ins."""
        from benchmark import __version__
        from benchmark.merging import get_method

        return getattr(get_method(method), "code_hash", None) or f"builtin-{__version__}"

    def merged(self, method: str, hparams: dict[str, Any], seed: int) -> MergedModel:
        """Merge the suite's fine-tuned encoders with `method` (memoised for the run)."""
        from benchmark.merging import MergeContext, MergeOutput, merge

        key = content_hash({"zoo": self.zoo.keys, "method": method, "hparams": hparams, "seed": seed,
                            "code": self.method_code(method)})
        if key not in self._merged:
            tasks = self.suite.task_names
            zoo = self.zoo

            def on_device(state: StateDict) -> StateDict:  # merges compute where their inputs are
                return {k: v.to(self.device) for k, v in state.items()}

            mctx = MergeContext(
                pretrained=on_device(zoo.pretrained),
                finetuned=[on_device(zoo.finetuned[t]) for t in tasks],
                tasks=tasks,
                classifier_factory=lambda sd, i, adapter=None: zoo.classifier(sd, tasks[i], adapter),
                dev_data=[self.data(t).dev for t in tasks],
                seed=seed,
            )
            t0 = time.perf_counter()
            out = merge(method, mctx.pretrained, mctx.finetuned, context=mctx, **hparams)
            seconds = time.perf_counter() - t0
            if isinstance(out, MergeOutput):
                self._merged[key] = MergedModel(out.state_dict, list(out.adapters), seconds)
            else:
                self._merged[key] = MergedModel(out, [None] * len(tasks), seconds)
        return self._merged[key]

    def target(self, merged: MergedModel, task: str) -> ImageClassifier:
        """The merged model with `task`'s head (and adapter, if the method made one)."""
        i = self.suite.task_names.index(task)
        return self.zoo.classifier(merged.state_dict, task, merged.adapters[i])
