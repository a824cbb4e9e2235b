"""RunContext: the cached inputs every unit of a run shares (suite, zoo, task data, merged models).

A merged model is computed once per (method, hyperparameters, seed) for the lifetime of the cache, whatever
the number of worker processes: it is a content-addressed artefact (kind `merged`) keyed by the content
digests of the weights it merges, the method, its hyperparameters and code, and the seed it receives;
builders take the cache's lock. A method that does not read the seed (`MergeMethod.reads_seed`: data-free
without the need "seed", or declared `seed_free`) receives seed 0 for every unit's seed, so its one merge
serves every seed (`RunContext.merge_seed`) whose unit merges the same fine-tunes: under the suite's
`recipe.finetune_seed: run`, a unit of seed s merges the fine-tunes trained with seed s (`Zoo.for_seed`), so
such a method merges once per fine-tuning seed. A merge that returns per-task adapters is cached too when its
method registers `load_adapter` (`register_merge`): the adapters' tensors are stored beside the merged
weights in the same artefact, under the same checksum, and each adapter is rebuilt from its state dict on
load (never unpickled). A method whose adapters have no such hook is merged once per process and kept in
memory only. In-memory memos are bounded by bytes.
"""

import inspect
import time
from collections.abc import Callable
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
    key: str = ""  # content address: the `merged` artefact's key
    digest: str = field(default="", repr=False)  # `weights_digest()`, set on first use

    def weights_digest(self) -> str:
        """Content digest of the merged weights and, if there are adapters, of their classes and tensors: equal
        digests mean the same computation (a target evaluation is keyed by it)."""
        if not self.digest:
            self.digest = state_digest(self.state_dict)
            if any(a is not None for a in self.adapters):
                classes = [a and f"{type(a).__module__}.{type(a).__qualname__}" for a in self.adapters]
                self.digest += "+" + content_hash([classes, state_digest(adapter_state(self.adapters))])
        return self.digest


MERGED_MEMO_BYTES = 2 << 30  # merged models kept in memory per process; older ones are reloaded from the cache


SECONDS = "__merge_seconds__"  # the merge's wall time, stored beside the weights in a `merged` artefact
ADAPTER = "__adapter__"  # task i's adapter tensors are `__adapter__.<i>.<key of its state_dict()>` there
HAS_ADAPTER = "__has_adapter__"  # uint8, one per task: which tasks have an adapter (a module may hold no tensor)


def adapter_state(adapters: list[nn.Module | None]) -> StateDict:
    """The adapters' tensors as a `merged` artefact stores them beside the merged weights."""
    state = {f"{ADAPTER}.{i}.{k}": v for i, a in enumerate(adapters) if a is not None
             for k, v in a.state_dict().items()}
    return {**state, HAS_ADAPTER: torch.tensor([a is not None for a in adapters], dtype=torch.uint8)}


def pop_adapters(state: StateDict, n_tasks: int, load: Callable[[StateDict], nn.Module] | None
                 ) -> list[nn.Module | None]:
    """Remove the adapters' tensors from a loaded `merged` artefact and rebuild each adapter with `load`."""
    has = state.pop(HAS_ADAPTER, None)
    if has is None:
        return [None] * n_tasks
    assert load is not None, "a merged artefact holds adapters only for methods that register load_adapter"
    adapters: list[nn.Module | None] = []
    for i, flag in enumerate(has.tolist()):
        prefix = f"{ADAPTER}.{i}."
        own = {k[len(prefix):]: state.pop(k) for k in [k for k in state if k.startswith(prefix)]}
        adapters.append(load(own) if flag else None)
    return adapters


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
    def batch_sizes(self) -> dict[str, int]:
        """Images per forward pass by purpose (`eval`, `craft`) for this run's device: `benchmark.batch_sizes`."""
        from benchmark.batch_sizes import resolve_batch_sizes

        return resolve_batch_sizes(self.suite.raw, self.device)

    @cached_property
    def zoo(self) -> Zoo:
        """The `recipe.seed` zoo (`build_zoo`: every fine-tuning seed is cached); a unit of run seed s uses
        `zoo.for_seed(s)`."""
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

    def weights_digest(self, name: str, seed: int) -> str:
        """Content digest (`state_digest`) of model `name` (`pretrained`, `finetuned/<task>`, `head/<task>`) of
        the zoo a unit of run seed `seed` uses (`Zoo.for_seed`), memoised: what an artefact computed from that
        model is keyed by."""
        zoo, (role, _, task) = self.zoo.for_seed(seed), name.partition("/")
        key = f"{name}@{zoo.seed}"
        if key not in self._digests:
            state = {"pretrained": lambda: zoo.pretrained, "finetuned": lambda: zoo.finetuned[task],
                     "head": lambda: zoo.heads[task].state_dict()}[role]()
            self._digests[key] = state_digest(state)
        return self._digests[key]

    def merge_seed(self, method: str, seed: int) -> int:
        """The seed a merge with `method` for a unit of seed `seed` receives: `seed`, or 0 when the method does
        not read it (`MergeMethod.reads_seed`). Its merged model is then one artefact for every seed, and a
        function of its key whichever seed's unit builds it first (even if a `seed_free` declaration is wrong)."""
        from benchmark.merging import get_method

        return int(seed) if get_method(method).reads_seed else 0

    def merged_spec(self, method: str, hparams: dict[str, Any], seed: int) -> dict[str, Any]:
        """What a merged model depends on (its cache key): the weights it merges (the fine-tunes of run seed
        `seed`'s zoo, and the heads and data a data-dependent method sees), the method, its hyperparameters and
        code, the seed it receives (`merge_seed`)."""
        from benchmark.merging import api, get_method

        spec = get_method(method)
        code = getattr(spec, "code_hash", None) or code_digest(inspect.getmodule(spec.fn), api)
        tasks = self.suite.task_names
        return {"artefact": "merged", "method": method, "hparams": hparams, "seed": self.merge_seed(method, seed),
                "code": code,
                "torch": torch.__version__, "zoo": self.zoo.for_seed(seed).keys,
                "weights": {n: self.weights_digest(n, seed) for n in
                            ["pretrained", *(f"{r}/{t}" for r in ("finetuned", "head") for t in tasks)]}}

    def merged(self, method: str, hparams: dict[str, Any], seed: int) -> MergedModel:
        """Run seed `seed`'s fine-tuned encoders (`Zoo.for_seed`) merged with `method` and
        `merge_seed(method, seed)`: from the memo,
        else the cache (kind `merged`), else merged once (under the cache's lock, so concurrent workers merge it
        once) and cached (a merge with adapters only if its method registers `load_adapter`). A reloaded model
        computes bitwise what the fresh one did."""
        from benchmark.merging import get_method

        spec = self.merged_spec(method, hparams, seed)
        key = content_hash(spec)
        if key in self._merged:
            return self._merged[key]
        load_adapter = get_method(method).load_adapter
        with self.cache.lock("merged", spec):
            if self.cache.has("merged", spec):
                state = self.cache.load(self.cache.path("merged", key))
                seconds = float(state.pop(SECONDS))
                adapters = pop_adapters(state, len(self.suite.task_names), load_adapter)
                self._merged[key] = MergedModel(state, adapters, seconds, key)
                return self._merged[key]
            model = self._merge(self.zoo.for_seed(seed), method, hparams, spec["seed"], key)
            with_adapters = any(a is not None for a in model.adapters)
            if not with_adapters or load_adapter is not None:
                self.cache.save("merged", spec, {
                    **model.state_dict, SECONDS: torch.tensor(model.seconds, dtype=torch.float64),
                    **(adapter_state(model.adapters) if with_adapters else {})})
        self._merged[key] = model
        return model

    def _merge(self, zoo: Zoo, method: str, hparams: dict[str, Any], seed: int, key: str) -> MergedModel:
        """Merge `zoo`'s fine-tunes with `method`, which receives `seed`."""
        from benchmark.defenses.api import TaskClassifiers
        from benchmark.merging import MergeContext, MergeOutput, merge

        tasks = self.suite.task_names

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
