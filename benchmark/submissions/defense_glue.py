"""Submitted defenses in the defense registry (`benchmark.defenses`).

A submitted defense is data-free and runs before merging: the entry point is
`fn(pretrained, finetuned, **hyperparameters) -> list[StateDict]` (one cleaned fine-tuned encoder per input,
same keys, shapes and dtypes), run in the sandbox. It is registered as a `stage="merge"` defense whose
result is `CleanedInputs(pretrained, cleaned)`, merged afterwards with the victim's method. Cleaned models
depend only on the inputs and hyperparameters, not on the merge method, so they are memoised per process by
a hash of the input tensors: the backdoor track's sweep over methods costs one sandbox call per set of models.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from benchmark.submissions.manifest import SubmissionError

if TYPE_CHECKING:
    from benchmark.submissions.loader import SandboxedDefense, Submission
    from benchmark.types import StateDict

_MEMO_SIZE = 4


def _tensors_hash(sds: list[StateDict]) -> str:
    import torch

    h = hashlib.sha256()
    for sd in sds:
        for k in sorted(sd):
            t = sd[k].detach().to("cpu").contiguous()
            h.update(f"{k}|{t.dtype}|{tuple(t.shape)}|".encode())
            if t.numel():
                h.update(t.view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


class MergeStageDefense:
    """`fn(inputs, **hparams) -> CleanedInputs` for the defense registry, calling the sandbox."""

    def __init__(self, sandboxed: SandboxedDefense):
        self.sandboxed = sandboxed
        self.__doc__ = sandboxed.__doc__
        self.__module__ = sandboxed.__module__
        self._memo: OrderedDict[str, list[StateDict]] = OrderedDict()

    def __call__(self, inputs: Any, **hparams: Any) -> Any:
        import json

        from benchmark.defenses import CleanedInputs

        key = _tensors_hash([inputs.pretrained, *inputs.finetuned]) + json.dumps(hparams, sort_keys=True)
        if key not in self._memo:
            self._memo[key] = self.sandboxed(inputs.pretrained, list(inputs.finetuned), **hparams)
            while len(self._memo) > _MEMO_SIZE:
                self._memo.popitem(last=False)
        self._memo.move_to_end(key)
        cleaned = self._memo[key]
        return CleanedInputs(inputs.pretrained, [{k: v.clone() for k, v in sd.items()} for sd in cleaned])


_SUBMITTED_DEFENSE: type | None = None


def submitted_defense_class() -> type:
    """`SubmittedDefense`: a `Defense` carrying the submission's provenance (`code_hash` is part of the
    backdoor track's unit keys)."""
    global _SUBMITTED_DEFENSE
    if _SUBMITTED_DEFENSE is None:
        from benchmark.defenses import Defense

        @dataclass(frozen=True)
        class SubmittedDefense(Defense):
            code_hash: str = ""
            authors: str = ""
            code_url: str = ""
            slug: str = ""
            folder: str = ""
            license: str = ""
            paper_url: str = ""

        _SUBMITTED_DEFENSE = SubmittedDefense
    return _SUBMITTED_DEFENSE


def register_defense_submission(sub: Submission, sandboxed: SandboxedDefense) -> Any:
    """Register `sub` as a merge-stage defense; the same slug replaces itself, another name clash is an error."""
    from benchmark.defenses import DefenseError, get_defense, register
    from benchmark.errors import UnknownNameError

    try:
        old = get_defense(sub.name)
    except UnknownNameError:
        old = None
    if old is not None and old.source != f"submission:{sub.slug}":
        raise SubmissionError(
            f"submission {sub.slug!r}: field `name`: {sub.name!r} is already the name of the defense from "
            f"{old.source}; pick another name (and rename the folder to match)"
        )
    m = sub.manifest
    cls = submitted_defense_class()
    d = cls(name=m.name, fn=MergeStageDefense(sandboxed), stage="merge", needs=frozenset(),
            hparams=dict(m.hyperparameters), paper=f"{m.title or m.name} ({m.paper_url})",
            citation=m.citation or m.description, source=f"submission:{sub.slug}", code_hash=sub.code_hash,
            authors=", ".join(m.authors), code_url=m.code_url, slug=sub.slug, folder=str(sub.folder),
            license=m.license, paper_url=m.paper_url)
    try:
        return register(d, replace=old is not None)
    except DefenseError as e:
        raise SubmissionError(f"submission {sub.slug!r}: {e}") from None
