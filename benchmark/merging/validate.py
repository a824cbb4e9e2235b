"""Checks on a merge's hyperparameters, inputs and output; each failure is one message naming the problem
and the fix.

Rules (documented in docs/merging.md):
- every state dict is a `dict[str, Tensor]` with the pretrained model's keys, shapes, dtypes and devices;
- floating tensors must be finite (no NaN/inf);
- non-floating tensors (integer/bool buffers) are not merged: they must be identical in every model, are
  removed before the method runs and are copied unchanged into the result;
- the method must return exactly the floating keys it was given, with the same shapes and dtypes, finite,
  as a `dict[str, Tensor]` or a `MergeOutput` with one adapter slot per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from benchmark.errors import MergeInputError, MergeOutputError
from benchmark.merging.context import MergeOutput
from benchmark.merging.registry import MergeMethod
from benchmark.types import StateDict

_SHOW = 5


def _few(keys: Sequence[str]) -> str:
    shown = ", ".join(repr(k) for k in keys[:_SHOW])
    return shown + (f" and {len(keys) - _SHOW} more" if len(keys) > _SHOW else "")


def check_hparams(method: MergeMethod, given: Mapping[str, Any]) -> dict[str, Any]:
    """`method`'s defaults updated with `given`; unknown names and values of the wrong type are errors."""
    unknown = sorted(set(given) - set(method.hparams))
    if unknown:
        valid = ", ".join(sorted(method.hparams)) or "none"
        raise MergeInputError(
            f"merge method {method.name!r} has no hyperparameter(s) {', '.join(map(repr, unknown))}; "
            f"valid hyperparameters: {valid}"
        )
    for name, value in given.items():
        default = method.hparams[name]
        if not _type_ok(value, default):
            raise MergeInputError(
                f"hyperparameter {name!r} of merge method {method.name!r} must be a {type(default).__name__} "
                f"(default {default!r}); got {value!r}"
            )
    return {**method.hparams, **given}


def _type_ok(value: Any, default: Any) -> bool:
    if isinstance(default, bool):
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def check_inputs(pretrained: Any, finetuned: Any, names: Sequence[str]) -> StateDict:
    """Validate the models to merge; return the non-floating tensors, which are passed through unmerged.

    `names[i]` names `finetuned[i]` in messages.
    """
    if not isinstance(finetuned, list | tuple) or not finetuned:
        raise MergeInputError(
            f"finetuned must be a non-empty list of state dicts (one per task); got {type(finetuned).__name__}"
        )
    models = [("pretrained", pretrained), *zip(names, finetuned, strict=True)]
    for name, sd in models:
        _check_state_dict(sd, name, MergeInputError, "pass model.state_dict() of the encoder")
    if not pretrained:
        raise MergeInputError("pretrained is an empty state dict; pass the encoder's state_dict()")
    for name, sd in models[1:]:
        _check_same_keys(
            sd,
            pretrained,
            f"{name} vs pretrained",
            MergeInputError,
            "every model must be the same encoder architecture (encoder only, no head)",
        )
    passthrough: StateDict = {}
    for key, ref in pretrained.items():
        for name, sd in models[1:]:
            t = sd[key]
            if t.shape != ref.shape:
                raise MergeInputError(
                    f"shape mismatch for {key!r}: pretrained has {tuple(ref.shape)}, {name} has "
                    f"{tuple(t.shape)}; every model must be the same encoder architecture"
                )
            if t.dtype != ref.dtype or t.device != ref.device:
                raise MergeInputError(
                    f"{key!r} is {ref.dtype} on {ref.device} in pretrained but {t.dtype} on {t.device} in "
                    f"{name}; cast and move all models to one dtype and device before merging"
                )
        if ref.is_floating_point():
            for name, sd in models:
                _check_finite(sd[key], key, name, MergeInputError, "re-export or retrain that checkpoint")
        else:
            for name, sd in models[1:]:
                if not torch.equal(sd[key], ref):
                    raise MergeInputError(
                        f"non-floating tensor {key!r} ({ref.dtype}) differs between pretrained and {name}; "
                        "integer/bool buffers are not merged, so they must be identical in every model: "
                        "copy the pretrained value into the fine-tuned state dicts or drop the key"
                    )
            passthrough[key] = ref
    return passthrough


def check_output(method: MergeMethod, result: Any, reference: StateDict, n_tasks: int) -> None:
    """Validate a method's result against `reference` (the floating tensors it was given)."""
    where = f"merge method {method.name!r} ({method.source})"
    if isinstance(result, MergeOutput):
        state_dict = result.state_dict
        adapters = result.adapters
        if not isinstance(adapters, list | tuple) or len(adapters) != n_tasks:
            raise MergeOutputError(
                f"{where} returned MergeOutput.adapters of length "
                f"{len(adapters) if isinstance(adapters, list | tuple) else type(adapters).__name__}; "
                f"it must be a list with one nn.Module or None per task ({n_tasks})"
            )
        bad = [i for i, a in enumerate(adapters) if a is not None and not isinstance(a, nn.Module)]
        if bad:
            raise MergeOutputError(f"{where} returned adapters {bad} that are neither nn.Module nor None")
    elif isinstance(result, dict):
        state_dict = result
    else:
        raise MergeOutputError(
            f"{where} returned {type(result).__name__}; a merge method must return a dict[str, Tensor] "
            "(the merged encoder state dict) or a MergeOutput"
        )
    fix = "return exactly the input keys, each with the input's shape and dtype"
    _check_state_dict(state_dict, f"{where}'s result", MergeOutputError, fix)
    _check_same_keys(state_dict, reference, f"{where}'s result vs its input", MergeOutputError, fix)
    for key, ref in reference.items():
        t = state_dict[key]
        if t.shape != ref.shape or t.dtype != ref.dtype:
            raise MergeOutputError(
                f"{where} returned {key!r} as {t.dtype} {tuple(t.shape)}; the input is {ref.dtype} "
                f"{tuple(ref.shape)}. Fix: {fix} (cast with .to(dtype))"
            )
        _check_finite(
            t, key, f"{where}'s result", MergeOutputError, "check the method for division by zero or overflow"
        )


def _check_state_dict(sd: Any, name: str, error: type[Exception], fix: str) -> None:
    if not isinstance(sd, dict):
        raise error(f"{name} is a {type(sd).__name__}, not a dict[str, Tensor]; {fix}")
    bad = [k for k, v in sd.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise error(f"{name} is not a dict[str, Tensor]: entry {bad[0]!r} is a {type(sd[bad[0]]).__name__}; {fix}")


def _check_same_keys(sd: StateDict, ref: StateDict, what: str, error: type[Exception], fix: str) -> None:
    missing = [k for k in ref if k not in sd]
    extra = [k for k in sd if k not in ref]
    if missing or extra:
        parts = [f"{len(missing)} missing key(s): {_few(missing)}"] if missing else []
        parts += [f"{len(extra)} extra key(s): {_few(extra)}"] if extra else []
        raise error(f"key mismatch, {what}: {'; '.join(parts)}. Fix: {fix}")


def _check_finite(t: torch.Tensor, key: str, name: str, error: type[Exception], fix: str) -> None:
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        n_bad = int((~finite).sum())
        raise error(f"{name} has NaN/inf in {key!r} ({n_bad} of {t.numel()} entries); {fix}")
