"""RunContext: the cached inputs every unit of a run shares (suite, zoo, task data, merged models).

A merged model is computed once per (method, hyperparameters, seed) for the lifetime of the cache, whatever
the number of worker processes: it is a content-addressed artefact (kind `merged`) keyed by the content
digests of the weights it merges, the method, its hyperparameters and code, and the seed; builders take the
cache's lock. A merge that returns per-task adapters (arbitrary modules, which mergesec never pickles) is
kept in memory only. In-memory memos are bounded by bytes.
"""

import inspect
import time
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import torch
from torch import nn

from benchmark import trace
from benchmark.cache import ByteLRU, Cache, code_digest, state_digest
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
    key: str = ""  # content address: the `merged` artefact's key (with the adapters' identity if it has any)
    digest: str = field(default="", repr=False)  # state_digest of `state_dict`, set on first use

    def weights_digest(self) -> str:
        """Content digest of the merged weights (and the key, which identifies any adapters)."""
        if not self.digest:
            self.digest = state_digest(self.state_dict) + ("" if self.cacheable else f"+{self.key}")
        return self.digest

    @property
    def cacheable(self) -> bool:
        """Whether the model is fully described by its state dict (no adapter modules)."""
        return all(a is None for a in self.adapters)


MERGED_MEMO_BYTES = 2 << 30  # merged models kept in memory per process; older ones are reloaded from the cache


SECONDS = "__merge_seconds__"  # the merge's wall time, stored beside the weights in a `merged` artefact


class RunContext:
    """Lazily built, memoised inputs of a run. Everything here is a function of the suite and the cache."""

    def __init__(self, suite: Suite, cache: Cache, progress: bool = True, device: torch.device | None = None):
        self.suite, self.cache, self.progress = suite, cache, progress
        # where models compute (benchmark.device; default $MERGESEC_DEVICE, else the CPU); results: CPU
        self.device = device if device is not None else default_device()
        self._data: dict[str, TaskData] = {}
        self._merged = ByteLRU(MERGED_MEMO_BYTES)
        self._digests: dict[str, str] = {}

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

    def weights_digest(self, name: str) -> str:
        """Content digest (`state_digest`) of zoo model `name` (`pretrained`, `finetuned/<task>`, `head/<task>`),
        memoised: what an artefact computed from that model is keyed by."""
        if name not in self._digests:
            zoo, (role, _, task) = self.zoo, name.partition("/")
            state = {"pretrained": lambda: zoo.pretrained, "finetuned": lambda: zoo.finetuned[task],
                     "head": lambda: zoo.heads[task].state_dict()}[role]()
            self._digests[name] = state_digest(state)
        return self._digests[name]

    def merged_spec(self, method: str, hparams: dict[str, Any], seed: int) -> dict[str, Any]:
        """What a merged model depends on (its cache key): the weights it merges (and the heads and data a
        data-dependent method sees), the method, its hyperparameters and code, the seed."""
        from benchmark.merging import api, get_method

        spec = get_method(method)
        code = getattr(spec, "code_hash", None) or code_digest(inspect.getmodule(spec.fn), api)
        tasks = self.suite.task_names
        return {"artefact": "merged", "method": method, "hparams": hparams, "seed": int(seed), "code": code,
                "torch": torch.__version__, "zoo": self.zoo.keys,
                "weights": {n: self.weights_digest(n) for n in
                            ["pretrained", *(f"{r}/{t}" for r in ("finetuned", "head") for t in tasks)]}}

    def merged(self, method: str, hparams: dict[str, Any], seed: int) -> MergedModel:
        """The suite's fine-tuned encoders merged with `method`: from the memo, else the cache (kind `merged`),
        else merged once (under the cache's lock, so concurrent workers merge it once) and cached."""
        spec = self.merged_spec(method, hparams, seed)
        key = content_hash(spec)
        if key in self._merged:
            return self._merged[key]
        with self.cache.lock("merged", spec):
            if self.cache.has("merged", spec):
                state = self.cache.load(self.cache.path("merged", key))
                seconds = float(state.pop(SECONDS))
                self._merged[key] = MergedModel(state, [None] * len(self.suite.task_names), seconds, key)
                return self._merged[key]
            model = self._merge(method, hparams, seed, key)
            if model.cacheable:
                self.cache.save("merged", spec, {**model.state_dict,
                                                 SECONDS: torch.tensor(model.seconds, dtype=torch.float64)})
        self._merged[key] = model
        return model

    def _merge(self, method: str, hparams: dict[str, Any], seed: int, key: str) -> MergedModel:
        from benchmark.defenses.api import TaskClassifiers
        from benchmark.merging import MergeContext, MergeOutput, merge

        tasks = self.suite.task_names
        zoo = self.zoo

        def on_device(state: StateDict) -> StateDict:  # merges compute where their inputs are
            return {k: v.to(self.device) for k, v in state.items()}

        mctx = MergeContext(
            pretrained=on_device(zoo.pretrained),
            finetuned=[on_device(zoo.finetuned[t]) for t in tasks],
            tasks=tasks,
            classifier_factory=TaskClassifiers(self.suite.backbone, tuple(zoo.heads[t] for t in tasks),
                                               str(zoo.device)),
            dev_data=[self.data(t).dev for t in tasks],
            seed=seed,
        )
        trace.record("merge", method=method, seed=int(seed))
        t0 = time.perf_counter()
        out = merge(method, mctx.pretrained, mctx.finetuned, context=mctx, **hparams)
        seconds = time.perf_counter() - t0
        if isinstance(out, MergeOutput):
            return MergedModel(out.state_dict, list(out.adapters), seconds, key)
        return MergedModel(out, [None] * len(tasks), seconds, key)

    def target(self, merged: MergedModel, task: str) -> ImageClassifier:
        """The merged model with `task`'s head (and adapter, if the method made one)."""
        i = self.suite.task_names.index(task)
        return self.zoo.classifier(merged.state_dict, task, merged.adapters[i])
