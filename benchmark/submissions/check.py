"""`mergesec validate`: schema, files, import, signature and a smoke run on tiny random state dicts, in a few
seconds and without training.

To stay fast the parent never imports torch: the inputs are written and the outputs read as numpy arrays.
The sandbox worker imports the entry point, checks its signature against the manifest's hyperparameters and
calls it twice on the same inputs (so a nondeterministic method is caught here, not by a failed
reproduction). Name clashes with built-in methods are checked by `submit`, which imports the registries.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmark.submissions.data import DEV_NEEDS, FACTORY, CallData, DevSplit, order_metadata
from benchmark.submissions.loader import Submission, call, load_submission
from benchmark.submissions.manifest import SubmissionError
from benchmark.submissions.sandbox import Limits, failure

N_SMOKE_MODELS = 3
SMOKE_BACKBONE = {"kind": "open_clip_vit", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25], "model_name": None,
                  "pretrained": None, "config": {"image_size": 4, "patch_size": 2, "width": 8, "layers": 1,
                                                 "heads": 2, "mlp_ratio": 2.0, "output_dim": 4}}
"""The `BackboneSpec` (as JSON) of the smoke encoder, for a method that needs `classifier_factory`."""
SMOKE_CLASSES, SMOKE_DEV = 3, 8
SMOKE_SHAPES = {  # SMOKE_BACKBONE's state dict: a 1-block open_clip ViT, width 8
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
    "transformer.resblocks.0.ln_2.weight": (8,),
    "transformer.resblocks.0.ln_2.bias": (8,),
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
    pre = {k: rng.standard_normal(s).astype(np.float32) * 0.1 for k, s in SMOKE_SHAPES.items()}
    fts = [{k: v + rng.standard_normal(v.shape).astype(np.float32) * 0.01 for k, v in pre.items()}
           for _ in range(n_models)]
    return [pre, *fts]


def smoke_data(needs: frozenset[str], n_models: int = N_SMOKE_MODELS, seed: int = 0) -> CallData:
    """What a method with `needs` gets besides the smoke models: per task `SMOKE_DEV` random images of the
    smoke encoder's size (and labels, for `labelled_dev`), random heads of `SMOKE_CLASSES` classes."""
    rng = np.random.default_rng(seed + 1)
    size = SMOKE_BACKBONE["config"]["image_size"]
    dev: tuple[DevSplit, ...] = ()
    if needs & DEV_NEEDS:
        dev = tuple(DevSplit.of_arrays(rng.random((SMOKE_DEV, 3, size, size), dtype=np.float32),
                                       rng.integers(0, SMOKE_CLASSES, SMOKE_DEV) if "labelled_dev" in needs
                                       else None)
                    for _ in range(n_models))
    heads: dict[str, np.ndarray] = {}
    if FACTORY in needs:
        width = SMOKE_BACKBONE["config"]["output_dim"]
        for i in range(n_models):
            heads[f"{i}.weight"] = rng.standard_normal((SMOKE_CLASSES, width)).astype(np.float32)
            heads[f"{i}.bias"] = np.zeros(SMOKE_CLASSES, np.float32)
    return CallData(needs, tuple(f"task{i}" for i in range(n_models)), seed, dev, heads,
                    SMOKE_BACKBONE if FACTORY in needs else None)


def validate(target: str | Path, limits: Limits | None = None) -> ValidationReport:
    """Check a submission end to end on tiny inputs; raises `SubmissionError` (naming the stage and the fix)
    on the first problem. The parent never imports torch here (inputs and outputs are numpy arrays in
    safetensors files), so validation costs one torch import, in the sandbox worker."""
    from safetensors.numpy import save_file

    t0 = time.perf_counter()
    sub = load_submission(target)
    checks = [f"manifest {sub.folder.name}/submission.toml matches the schema",
              f"files: {len(sub.files)} checked, no pickled checkpoints (content hash {sub.code_hash})"]
    limits = limits or Limits.from_env()
    inputs = smoke_inputs()
    n = len(inputs) - 1
    data = smoke_data(frozenset(sub.manifest.needs), n)
    with call(sub, dict(sub.manifest.hyperparameters), limits, n, repeat=2, data=data) as c:
        for path, sd in zip(c.input_paths(), inputs, strict=True):
            save_file(sd, str(path), order_metadata(sd))
        res = c.result()
    if not res.ok:
        raise failure(sub.slug, res)
    checks.append(f"entry point {sub.manifest.entry_point} imports; signature fn{res.signature} accepts "
                  f"[hyperparameters] {sorted(sub.manifest.hyperparameters)}")
    outputs = [_load_arrays(sub, data) for data in res.outputs]
    pre, fts = inputs[0], inputs[1:]
    if sub.kind == "merge":
        for r, out in enumerate(outputs):
            check_arrays(sub, out, pre, f"the merged state dict (run {r + 1})")
        what = "a valid merged state dict"
    else:
        for r in range(2):
            for i, out in enumerate(outputs[r * n:(r + 1) * n]):
                check_arrays(sub, out, fts[i], f"the defended model {i} (run {r + 1})")
        what = f"{n} valid defended state dicts"
    given = f" and {', '.join(sorted(data.needs))}" if data.needs else ""
    checks.append(f"smoke run on {n} tiny random models{given}: returns {what} "
                  "(dict of tensors, same keys, shapes and dtypes, finite)")
    half = len(outputs) // 2
    for i, (a, b) in enumerate(zip(outputs[:half], outputs[half:], strict=True)):
        differ = [k for k in a if not np.array_equal(a[k], b[k])]
        if differ:
            where = f"{differ[0]!r}" + (f" of model {i}" if sub.kind == "defense" else "")
            raise SubmissionError(
                f"submission {sub.slug!r} failed (determinism): two runs on the same inputs differ in {where}; "
                "seed every random draw from a hyperparameter (torch.Generator().manual_seed(seed)) so "
                "results reproduce"
            )
    checks.append("deterministic: two runs on the same inputs are identical")
    return ValidationReport(sub, res.signature, time.perf_counter() - t0, checks)


def _load_arrays(sub: Submission, data: bytes) -> dict[str, np.ndarray]:
    from safetensors.numpy import load

    try:
        return load(data)
    except Exception as e:  # e.g. a bfloat16 result, which numpy cannot hold: a dtype the input did not have
        raise SubmissionError(
            f"submission {sub.slug!r} failed (checking the returned value): its output cannot be read as "
            f"float32 arrays ({e}); return every tensor with the input's dtype"
        ) from None


def check_arrays(sub: Submission, out: dict[str, np.ndarray], ref: dict[str, np.ndarray], what: str) -> None:
    """`benchmark.merging.validate.check_output`'s finiteness rule on numpy arrays (keys, shapes and dtypes
    were checked in the safetensors header by the sandbox, `outputs.read_checked`)."""
    for k in ref:
        bad = ~np.isfinite(out[k])
        if bad.any():
            raise SubmissionError(f"submission {sub.slug!r} failed (checking {what}): has NaN/inf in {k!r} "
                                  f"({int(bad.sum())} of {out[k].size} entries); check the method for division by "
                                  "zero or overflow")
