"""`merge()`: the one entry point that runs any registered method with validated inputs and output."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from benchmark.errors import MergeInputError
from benchmark.merging.context import ClassifierFactory, MergeContext, MergeOutput
from benchmark.merging.registry import MergeMethod, get_method
from benchmark.merging.validate import check_hparams, check_inputs, check_output
from benchmark.types import StateDict


def merge(
    method: str | MergeMethod,
    pretrained: StateDict,
    finetuned: list[StateDict],
    context: MergeContext | None = None,
    **hparams: Any,
) -> StateDict | MergeOutput:
    """Merge `finetuned` (fine-tuned from `pretrained`) with `method`.

    Fills default hyperparameters and rejects unknown ones; validates the inputs (`validate.check_inputs`),
    checks that a data-dependent method gets the context it `needs`, and validates the result. Guarantees:
    the inputs are not modified; the result has the inputs' keys (in the pretrained order), shapes and dtypes,
    holds finite values, shares no storage with the inputs and does not require grad; non-floating tensors are
    copied unchanged from `pretrained`. A random method (need "seed") gets `context.seed` (0 without a
    context): the same seed gives the same merge.
    """
    spec = get_method(method) if isinstance(method, str) else method
    params = check_hparams(spec, hparams)
    n_models = len(finetuned) if isinstance(finetuned, list | tuple) else 0
    tasks = [f"task{i}" for i in range(n_models)]
    if context is not None and context.tasks:
        tasks = list(context.tasks)
    if n_models and len(tasks) != n_models:
        raise MergeInputError(f"context.tasks has {len(tasks)} names but {len(finetuned)} fine-tuned models were given")
    passthrough = check_inputs(pretrained, finetuned, [f"finetuned[{i}] (task {t!r})" for i, t in enumerate(tasks)])
    floats = [{k: v for k, v in sd.items() if k not in passthrough} for sd in (pretrained, *finetuned)]
    if spec.data_free:
        seed = [(context or MergeContext()).seed] if spec.seeded else []
        with torch.no_grad():
            result = spec.fn(floats[0], floats[1:], *seed, **params)
    else:
        ctx = _method_context(spec, context, floats[0], floats[1:], tasks, passthrough)
        result = spec.fn(ctx, **params)
    check_output(spec, result, floats[0], len(finetuned))
    merged = result.state_dict if isinstance(result, MergeOutput) else result
    inputs = {t.untyped_storage().data_ptr() for sd in (pretrained, *finetuned) for t in sd.values()}
    out: StateDict = {}
    for key in pretrained:
        t = passthrough[key] if key in passthrough else merged[key].detach()
        out[key] = t.clone() if t.untyped_storage().data_ptr() in inputs else t
    return MergeOutput(out, list(result.adapters)) if isinstance(result, MergeOutput) else out


def _method_context(
    spec: MergeMethod,
    context: MergeContext | None,
    pretrained: StateDict,
    finetuned: list[StateDict],
    tasks: list[str],
    passthrough: StateDict,
) -> MergeContext:
    """The context a data-dependent method sees: floating tensors only, and a factory that adds back the
    passthrough tensors. Raises `MergeInputError` naming whatever the method needs but did not get."""
    context = context or MergeContext()
    dev_needs = sorted(spec.needs & {"labelled_dev", "unlabelled_dev"})
    missing = dev_needs if context.dev_data is None else []
    fixes = ["dev_data=[one Dataset of (x, y) per task]"] if missing else []
    if "classifier_factory" in spec.needs and context.classifier_factory is None:
        missing.append("classifier_factory")
        fixes.append("classifier_factory=fn(state_dict, task_index, adapter=None) -> classifier")
    if missing:
        raise MergeInputError(
            f"{spec.name} needs {' and '.join(missing)}: pass context=MergeContext({', '.join(fixes)})"
        )
    if dev_needs and len(context.dev_data) != len(finetuned):
        raise MergeInputError(
            f"{spec.name} got {len(context.dev_data)} dev datasets for {len(finetuned)} fine-tuned models; "
            "pass one dev Dataset per task, in the order of finetuned"
        )
    factory = context.classifier_factory
    if factory is not None and passthrough:
        factory = _with_passthrough(factory, passthrough)
    return dataclasses.replace(
        context, pretrained=pretrained, finetuned=finetuned, tasks=tasks, classifier_factory=factory
    )


def _with_passthrough(factory: ClassifierFactory, passthrough: StateDict) -> ClassifierFactory:
    def build(state_dict: StateDict, task_index: int, adapter: torch.nn.Module | None = None) -> torch.nn.Module:
        return factory({**passthrough, **state_dict}, task_index, adapter)

    return build
