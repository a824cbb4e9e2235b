"""`mergesec validate`: schema, files, import, signature and a smoke run on tiny random state dicts, in a few
seconds and without training.

To stay fast the sandbox worker starts first, on inputs written with numpy, and the parent imports torch
while the worker does the same; the worker imports the entry point, checks its signature and calls it
twice on the same inputs (so a nondeterministic method is caught here, not by a failed reproduction).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.submissions.loader import Submission, check_deterministic, load_submission
from benchmark.submissions.manifest import SubmissionError
from benchmark.submissions.sandbox import Call, Limits, failure

N_SMOKE_MODELS = 3
_SMOKE_SHAPES = {  # a 1-block ViT-like encoder, width 8, in the shapes open_clip uses
    "class_embedding": (8,),
    "positional_embedding": (5, 8),
    "conv1.weight": (8, 3, 2, 2),
    "ln_pre.weight": (8,),
    "ln_pre.bias": (8,),
    "transformer.resblocks.0.ln_1.weight": (8,),
    "transformer.resblocks.0.ln_1.bias": (8,),
    "transformer.resblocks.0.attn.in_proj_weight": (24, 8),
    "transformer.resblocks.0.attn.in_proj_bias": (24,),
    "transformer.resblocks.0.attn.out_proj.weight": (8, 8),
    "transformer.resblocks.0.attn.out_proj.bias": (8,),
    "transformer.resblocks.0.mlp.c_fc.weight": (16, 8),
    "transformer.resblocks.0.mlp.c_fc.bias": (16,),
    "transformer.resblocks.0.mlp.c_proj.weight": (8, 16),
    "transformer.resblocks.0.mlp.c_proj.bias": (8,),
    "ln_post.weight": (8,),
    "ln_post.bias": (8,),
    "proj": (8, 4),
}


@dataclass
class ValidationReport:
    submission: Submission
    signature: str
    seconds: float
    checks: list[str] = field(default_factory=list)


def smoke_inputs(n_models: int = N_SMOKE_MODELS, seed: int = 0) -> list[dict[str, np.ndarray]]:
    """Pretrained + `n_models` fine-tuned float32 state dicts (fine-tuned = pretrained + small noise)."""
    rng = np.random.default_rng(seed)
    pre = {k: rng.standard_normal(s).astype(np.float32) * 0.1 for k, s in _SMOKE_SHAPES.items()}
    fts = [{k: v + rng.standard_normal(v.shape).astype(np.float32) * 0.01 for k, v in pre.items()}
           for _ in range(n_models)]
    return [pre, *fts]


def validate(target: str | Path, limits: Limits | None = None) -> ValidationReport:
    """Check a submission end to end on tiny inputs; raises `SubmissionError` (naming the stage and the fix)
    on the first problem."""
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    sub = load_submission(target)
    checks = [f"manifest {sub.folder.name}/submission.toml matches the schema",
              f"files: {len(sub.files)} checked, no pickled checkpoints (content hash {sub.code_hash})"]
    limits = limits or Limits.from_env()
    inputs = smoke_inputs()
    with Call(sub.slug, sub.folder, sub.manifest.entry_point, sub.kind, dict(sub.manifest.hyperparameters),
              limits, inputs=[Path()] * len(inputs), repeat=2) as call:
        for path, sd in zip(Call.input_paths(call.dir, len(inputs) - 1), inputs, strict=True):
            save_file(sd, str(path))
        call.start()
        # meanwhile, in the parent: torch, the registries, and the checks that need no worker
        import torch

        from benchmark.submissions.loader import _assemble, _load_outputs, build_method, register_submission
        from benchmark.tracks import get_track

        for t in sub.manifest.tracks:
            get_track(t)  # a claimed track this mergesec does not have is an error
        if sub.kind == "merge":
            from benchmark.merging.registry import MergeRegistrationError, _check_method

            try:
                _check_method(build_method(sub, limits))
            except MergeRegistrationError as e:
                raise SubmissionError(f"submission {sub.slug!r}: {e}") from None
        else:
            register_submission(sub, limits)  # the defense registry checks name, stage and hyperparameters
        res = call.result()
        if not res.ok:
            raise failure(sub.slug, res)
        checks.append(f"entry point {sub.manifest.entry_point} imports; signature fn{res.signature} accepts "
                      f"[hyperparameters] {sorted(sub.manifest.hyperparameters)}")
        pre, *fts = [{k: torch.from_numpy(v) for k, v in sd.items()} for sd in inputs]
        results = _assemble(sub, _load_outputs(res.outputs, "cpu"), pre, fts, repeat=2)
    what = "a valid merged state dict" if sub.kind == "merge" else f"{len(fts)} valid defended state dicts"
    checks.append(f"smoke run on {len(fts)} tiny random models: returns {what} "
                  "(dict of tensors, same keys, shapes and dtypes, finite)")
    check_deterministic(sub, results)
    checks.append("deterministic: two runs on the same inputs are identical")
    return ValidationReport(sub, res.signature, time.perf_counter() - t0, checks)
