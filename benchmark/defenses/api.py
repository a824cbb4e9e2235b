"""`defended_merge()`: merge with a method under a defense (or none), with validated inputs and output."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass, field
from typing import Any

from torch import nn

from benchmark.cache import Cache
from benchmark.defenses.registry import Defense, DefenseError, check_defense_hparams, get_defense
from benchmark.merging import MergeContext, MergeOutput, merge
from benchmark.merging.validate import _check_finite, _check_same_keys, _check_state_dict
from benchmark.suites.spec import BackboneSpec
from benchmark.types import StateDict
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.model import ImageClassifier

DEFENDER_CACHE = "defender"

MergeFn = Callable[[StateDict, list[StateDict]], MergeOutput]


@dataclass
class CleanedInputs:
    """What a merge-stage defense may return instead of a merged model: models to merge with the victim's
    method (e.g. task vectors trimmed, suspicious models down-weighted)."""

    pretrained: StateDict
    finetuned: list[StateDict]


@dataclass
class DefenseInputs:
    """Everything a defense receives: what the merger receives, and nothing about the attack.

    `context` carries `tasks`, `seed` and, only where the defense `needs` them, `dev_data` (one dataset per
    task), `classifier_factory(state_dict, task_index, adapter=None)`; `finetune_recipe` (the suite's
    fine-tuning recipe; `benchmark.zoo.zoo.task_recipe` resolves per-task epochs) likewise; `cache` is the
    defender's own artefact cache (`defender_cache`: none of the attack's artefacts are in it).
    `merge(pretrained, finetuned)` merges with the victim's method and hyperparameters and returns a
    `MergeOutput` (possibly memoised and shared: read it, never modify its tensors in place).
    A defense must not modify its inputs in place either.
    """

    pretrained: StateDict
    finetuned: list[StateDict]
    method: str
    method_hparams: dict[str, Any]
    context: MergeContext
    merge: MergeFn
    finetune_recipe: dict[str, Any] | None = None
    cache: Cache | None = None
    memo: MutableMapping[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class TaskClassifiers:
    """The `classifier_factory` a defender (and a merge method) is given: the public backbone architecture
    and the merged tasks' frozen heads, nothing else (no zoo, no other contributor's or attacker's model).
    `TaskClassifiers(backbone, heads)(state_dict, task_index, adapter=None)` is an eval-mode classifier on
    `device` (the zoo's; a sandboxed submission gets its backbone and heads as files, `submissions/data.py`)."""

    backbone: BackboneSpec
    heads: tuple[nn.Module, ...]
    device: str = "cpu"

    def __call__(self, state: StateDict, i: int, adapter: nn.Module | None = None) -> ImageClassifier:
        enc = build_encoder(self.backbone)
        enc.load_state_dict(state)
        enc = enc.to(self.device)
        b = self.backbone
        return ImageClassifier(enc.eval(), self.heads[i], b.mean, b.std, adapter).eval().requires_grad_(False)


def defender_cache(cache: Cache | None) -> Cache | None:
    """The defender's own artefact cache: a subfolder of `cache` that holds only what defenses build, so a
    defense cannot read the attack's cached triggers or backdoored models through it."""
    return Cache(cache.root / DEFENDER_CACHE) if cache is not None else None


def as_output(result: StateDict | MergeOutput, n_tasks: int) -> MergeOutput:
    """A merge result as a `MergeOutput` (a plain state dict has no adapters)."""
    if isinstance(result, MergeOutput):
        return MergeOutput(result.state_dict, list(result.adapters))
    return MergeOutput(result, [None] * n_tasks)


def defended_merge(
    defense: str | Defense | None,
    method: str,
    pretrained: StateDict,
    finetuned: list[StateDict],
    context: MergeContext | None = None,
    method_hparams: dict[str, Any] | None = None,
    defense_hparams: dict[str, Any] | None = None,
    finetune_recipe: dict[str, Any] | None = None,
    cache: Cache | None = None,
    merge_fn: MergeFn | None = None,
    memo: MutableMapping[str, Any] | None = None,
) -> MergeOutput:
    """Merge `finetuned` with `method` under `defense` (None or "none": plain merging).

    `merge_fn(pretrained, finetuned)` overrides how the victim's method is run (the backdoor track passes a
    memoised one); by default it is `benchmark.merging.merge(method, ..., context=context, **method_hparams)`.
    A merge-stage defense's `CleanedInputs` are merged with the method; its merged model, like a post-stage
    defense's output, is checked to have the pretrained encoder's keys, shapes and dtypes, finite values,
    and one adapter slot per task. `memo` is a mapping (a dict, or the track's bounded `ByteLRU`) the defense
    may use to memoise its own work.
    """
    context = context or MergeContext()
    method_hparams = dict(method_hparams or {})
    n = len(finetuned)
    if merge_fn is None:
        def merge_fn(p: StateDict, f: list[StateDict]) -> MergeOutput:
            return as_output(merge(method, p, f, context=context, **method_hparams), len(f))
    if defense is None or defense == "none":
        return merge_fn(pretrained, finetuned)
    d = get_defense(defense) if isinstance(defense, str) else defense
    hp = check_defense_hparams(d, defense_hparams or {})
    missing = []
    if d.needs & {"labelled_dev", "unlabelled_dev"} and context.dev_data is None:
        missing.append("dev_data (context.dev_data)")
    if "classifier_factory" in d.needs and context.classifier_factory is None:
        missing.append("classifier_factory (context.classifier_factory)")
    if "finetune_recipe" in d.needs and finetune_recipe is None:
        missing.append("finetune_recipe")
    if missing:
        raise DefenseError(f"defense {d.name!r} needs {' and '.join(missing)}; pass them to defended_merge")
    view = dataclasses.replace(
        context,
        dev_data=context.dev_data if d.needs & {"labelled_dev", "unlabelled_dev"} else None,
        classifier_factory=context.classifier_factory if "classifier_factory" in d.needs else None,
    )
    inputs = DefenseInputs(pretrained, list(finetuned), method, method_hparams, view, merge_fn,
                           finetune_recipe if "finetune_recipe" in d.needs else None, defender_cache(cache),
                           memo if memo is not None else {})
    if d.stage == "merge":
        out = d.fn(inputs, **hp)
        if isinstance(out, CleanedInputs):
            return merge_fn(out.pretrained, out.finetuned)
    else:
        merged = merge_fn(pretrained, finetuned)
        copy = MergeOutput({k: v.clone() for k, v in merged.state_dict.items()}, list(merged.adapters))
        out = d.fn(copy, inputs, **hp)
    return _check_output(d, out, pretrained, n)


def _check_output(d: Defense, out: Any, reference: StateDict, n_tasks: int) -> MergeOutput:
    where = f"defense {d.name!r} ({d.source})"
    fix = "return the merged encoder's state dict (the pretrained keys, shapes and dtypes) or a MergeOutput"
    if not isinstance(out, dict | MergeOutput):
        raise DefenseError(f"{where} returned {type(out).__name__}; {fix}"
                           + (" or CleanedInputs" if d.stage == "merge" else ""))
    res = as_output(out, n_tasks)
    if len(res.adapters) != n_tasks or any(a is not None and not isinstance(a, nn.Module) for a in res.adapters):
        raise DefenseError(f"{where} returned adapters that are not one nn.Module or None per task ({n_tasks})")
    _check_state_dict(res.state_dict, f"{where}'s result", DefenseError, fix)
    _check_same_keys(res.state_dict, reference, f"{where}'s result vs the pretrained encoder", DefenseError, fix)
    for k, ref in reference.items():
        t = res.state_dict[k]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise DefenseError(f"{where} returned {k!r} as {t.dtype} {tuple(t.shape)}; expected {ref.dtype} "
                               f"{tuple(ref.shape)}. Fix: {fix}")
        if ref.is_floating_point():
            _check_finite(t, k, f"{where}'s result", DefenseError, "check the defense for division by zero")
    return MergeOutput({k: v.detach() for k, v in res.state_dict.items()}, res.adapters)
