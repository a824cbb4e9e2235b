"""The transfer track's shared, content-addressed inputs: subsets, surrogate and target clean evaluations,
adversarial sets (docs/transfer.md, "How it runs").

Every artefact is computed once for the lifetime of the cache, whatever the number of worker processes (the
cache's lock): the surrogate's clean evaluation (kind `surrogate_eval`), each adversarial set (kind
`adversarial`: 8-bit images, never depending on the merging method), and each target's clean evaluation
(kind `target_eval`: its predictions, features and per-example gradient cosines with every surrogate, from
one forward-backward pass). Keys hold the content digests of the weights, every attack argument including
the batch size, the subset's data, the seed and the digests of the code that computes them. Within a
process the values are memoised in memos bounded by bytes.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import weakref
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from benchmark import trace
from benchmark.cache import ByteLRU, code_digest
from benchmark.data import tensors
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.hashing import content_hash
from benchmark.zoo import predict

if TYPE_CHECKING:
    from benchmark.attacks import TransferAttack
    from benchmark.context import MergedModel, RunContext
    from benchmark.zoo import ImageClassifier

SURROGATES = ("finetuned", "pretrained")
MEMO_BYTES = {"adversarial": 1 << 30, "surrogates": 1 << 30, "targets": 1 << 30,  # per process
              "subsets": 1 << 30, "surrogate_models": 3 << 29}  # ViT-B/32: one 1,000-image subset, 4 surrogates


SUBSET_DESIGNS = ("independent", "disjoint")
DISJOINT_PERMUTATION_SEED = 0
"""The one permutation whose blocks are the seeds' subsets under `transfer.subsets: disjoint`."""


def transfer_subset(n_test: int, subset_size: int, seed: int, design: str = "independent") -> torch.Tensor:
    """Seed `seed`'s test subset, sorted. `independent`: the first `subset_size` indices of a permutation
    seeded with `seed` (every seed its own draw; two seeds share images). `disjoint`: block `seed` (indices
    `seed · subset_size` to `(seed + 1) · subset_size − 1`) of one permutation seeded with
    `DISJOINT_PERMUTATION_SEED`, so the subsets of different seeds never share an image; raises
    `MergesecError` when the test split has no such block."""
    if design == "independent":
        g = torch.Generator().manual_seed(int(seed))
        return torch.randperm(n_test, generator=g)[: min(subset_size, n_test)].sort().values
    if design != "disjoint":
        raise UnknownNameError("transfer.subsets design", design, list(SUBSET_DESIGNS))
    if seed < 0 or (seed + 1) * subset_size > n_test:
        raise MergesecError(
            f"transfer.subsets: disjoint gives seed s the test images s·{subset_size} to (s+1)·{subset_size} − 1 "
            f"of one permutation, but seed {seed} needs {(seed + 1) * subset_size} of the {n_test} test images; "
            f"use seeds 0 to {n_test // subset_size - 1} or a smaller transfer.subset_size")
    g = torch.Generator().manual_seed(DISJOINT_PERMUTATION_SEED)
    return torch.randperm(n_test, generator=g)[seed * subset_size : (seed + 1) * subset_size].sort().values


def tensor_hash(*tensors: torch.Tensor) -> str:
    """sha256 prefix of tensors' dtypes, shapes and bytes (identity of the subset's data)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class Subset:
    indices: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    data_hash: str


@dataclass
class SurrogateEval:
    """A surrogate's clean evaluation on one subset: which examples it gets right, its features and its
    input-gradients of the cross-entropy loss."""

    clean_correct: torch.Tensor
    feats: torch.Tensor
    grads: torch.Tensor


@dataclass
class TargetEval:
    """A target's clean evaluation on one subset: which examples it gets right, its features, and the
    per-example cosine between its input-gradients and each surrogate's (`cosines[surrogate]`)."""

    clean_correct: torch.Tensor
    feats: torch.Tensor
    cosines: dict[str, torch.Tensor]


@dataclass
class TransferState:
    """Per-RunContext memo of everything units share (bounded by bytes where it can grow)."""

    subsets: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["subsets"]))
    surrogate_models: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["surrogate_models"]))
    surrogates: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["surrogates"]))
    adversarial: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["adversarial"]))
    targets: ByteLRU = field(default_factory=lambda: ByteLRU(MEMO_BYTES["targets"]))
    cka: dict[tuple, float] = field(default_factory=dict)
    crafted: int = 0
    loaded: int = 0


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def state(ctx: RunContext) -> TransferState:
    if ctx not in _STATES:
        _STATES[ctx] = TransferState()
    return _STATES[ctx]


@functools.cache
def _model_code() -> dict[str, Any]:
    """Digests of the code every forward pass runs through (classifier, encoder builder, open_clip, torch)."""
    from benchmark.zoo import backbone, model

    return {**code_digest(model, backbone), "open_clip": importlib.metadata.version("open_clip_torch"),
            "torch": torch.__version__}


def subset(ctx: RunContext, task: str, seed: int) -> Subset:
    st = state(ctx)
    key = (task, seed)
    if key not in st.subsets:
        test = ctx.data(task).test
        idx = transfer_subset(len(test), ctx.suite.transfer.subset_size, seed, ctx.suite.transfer.subsets)
        xs, ys = tensors(test, idx)
        st.subsets[key] = Subset(idx, xs, ys, tensor_hash(idx, xs, ys))
    return st.subsets[key]


def surrogate_model(ctx: RunContext, task: str, surrogate: str, seed: int) -> ImageClassifier:
    """The surrogate classifier of run seed `seed`: t's fine-tuned encoder of that seed's zoo (`Zoo.for_seed`),
    or the pretrained encoder, with t's head."""
    st, zoo = state(ctx), ctx.zoo.for_seed(seed)
    key = (task, surrogate, zoo.seed if surrogate == "finetuned" else None)
    if key not in st.surrogate_models:
        if surrogate == "finetuned":
            st.surrogate_models[key] = zoo.classifier(zoo.finetuned[task], task)
        elif surrogate == "pretrained":
            st.surrogate_models[key] = zoo.classifier(zoo.pretrained, task)
        else:
            raise UnknownNameError("surrogate", surrogate, list(SURROGATES))
    return st.surrogate_models[key]


def _subset_keys(ctx: RunContext, task: str, seed: int) -> dict[str, Any]:
    sub = subset(ctx, task, seed)
    return {"task": task, "seed": int(seed),
            "subset": {"n": len(sub.indices), "indices": content_hash(sub.indices.tolist()), "data": sub.data_hash}}


def surrogate_keys(ctx: RunContext, task: str, surrogate: str, seed: int) -> dict[str, Any]:
    """The surrogate's identity: the content digests of its encoder and head weights (run seed `seed`'s: its
    zoo's, `Zoo.for_seed`; and the zoo recipe keys, for humans), the task subset and the seed."""
    if surrogate not in SURROGATES:
        raise UnknownNameError("surrogate", surrogate, list(SURROGATES))
    encoder = f"finetuned/{task}" if surrogate == "finetuned" else "pretrained"
    keys = ctx.zoo.for_seed(seed).keys
    return {"surrogate": {"name": surrogate, "encoder": ctx.weights_digest(encoder, seed),
                          "head": ctx.weights_digest(f"head/{task}", seed),
                          "zoo_keys": [keys[encoder], keys[f"head/{task}"]]},
            **_subset_keys(ctx, task, seed)}


def surrogate_eval(ctx: RunContext, task: str, surrogate: str, seed: int) -> SurrogateEval:
    """The surrogate's clean evaluation on the subset (cached as kind `surrogate_eval`: it never depends on
    the merging method, so a new method recomputes nothing surrogate-side)."""
    from benchmark.metrics import clean_pass

    def make() -> SurrogateEval:
        sub = subset(ctx, task, seed)
        spec = {"artefact": "surrogate_eval", **surrogate_keys(ctx, task, surrogate, seed),
                "code": {**_model_code(), **code_digest(clean_pass)}, "batch_size": ctx.batch_sizes["grad"]}
        art = ctx.cache.get_or_build("surrogate_eval", spec,
                                     lambda: clean_pass(surrogate_model(ctx, task, surrogate, seed), sub.x, sub.y,
                                                        ctx.batch_sizes["grad"]))
        return SurrogateEval(art["clean_pred"] == sub.y, art["feats"], art["grads"])

    return state(ctx).surrogates.get_or_set((task, surrogate, seed), make)


def attack_for(ctx: RunContext, name: str) -> TransferAttack:
    """The suite's attack `name`: its budget, its image-size-dependent arguments at the suite's image size,
    the craft batch size, and any `transfer.attack_params` overrides."""
    from benchmark.attacks import make_attack

    spec, raw = ctx.suite.transfer, ctx.suite.raw["transfer"]
    image_size = ctx.suite.data.get("image_size")
    if not isinstance(image_size, int):
        raise MergesecError(f"suite {ctx.suite.name}: data.image_size must be set (an integer) for the transfer "
                            "track's size-dependent attack arguments (TI's kernel)")
    overrides = (raw.get("attack_params") or {}).get(name, {})
    return make_attack(name, spec.eps, spec.steps, image_size, ctx.batch_sizes["craft"],
                       **overrides)


def adversarial_spec(ctx: RunContext, task: str, surrogate: str, attack: TransferAttack, seed: int) -> dict:
    """What an adversarial set depends on (its cache key): surrogate weights, the attack's identity (every
    argument, batch size, code digests and versions), the task subset, the seed. Never the merging method."""
    return {"artefact": "adversarial", **surrogate_keys(ctx, task, surrogate, seed), **attack.identity(),
            "model_code": _model_code()}


def adversarial(ctx: RunContext, task: str, surrogate: str, attack_name: str, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(8-bit x_adv, surrogate correct on x_adv) for the setting: memo, else the cache, else crafted and cached.

    The artefact holds the uint8 adversarial images, their subset indices, and the surrogate's predictions on
    them (so evaluating a new target needs no surrogate forward pass)."""

    st = state(ctx)
    key = (task, surrogate, attack_name, seed)
    if key in st.adversarial:
        return st.adversarial[key]
    attack = attack_for(ctx, attack_name)
    sub = subset(ctx, task, seed)
    spec = adversarial_spec(ctx, task, surrogate, attack, seed)
    built = []

    def build() -> dict[str, torch.Tensor]:
        built.append(True)
        model = surrogate_model(ctx, task, surrogate, seed)
        x_adv = attack.craft(model, sub.x, sub.y, seed)
        return {"adv": x_adv, "indices": sub.indices,
                "surrogate_adv_pred": predict_8bit(model, x_adv, ctx.batch_sizes["eval"])}

    art = ctx.cache.get_or_build("adversarial", spec, build)
    x_adv = art["adv"]
    if x_adv.shape != sub.x.shape or x_adv.dtype != torch.uint8 or not torch.equal(art["indices"], sub.indices):
        path = ctx.cache.path("adversarial", content_hash(spec))
        raise MergesecError(f"cached adversarial set {path} does not match its subset; delete it and run again")
    if built:
        st.crafted += 1
    else:
        st.loaded += 1
    st.adversarial[key] = (x_adv, art["surrogate_adv_pred"] == sub.y)
    return st.adversarial[key]


def target_eval(ctx: RunContext, merged: MergedModel, method: str, seed: int, task: str
                ) -> tuple[ImageClassifier, TargetEval]:
    """The merged model with `task`'s head (and adapter), and its clean evaluation on the subset: one
    forward-backward pass per (merged weights, task, subset) for the lifetime of the cache (kind
    `target_eval`, keyed by the merged weights' content digest)."""
    from benchmark.metrics import clean_pass, example_cosines

    surrogates = ctx.suite.transfer.surrogates
    sub = subset(ctx, task, seed)

    def make() -> tuple[ImageClassifier, TargetEval]:
        model = ctx.target(merged, task)
        spec = {"artefact": "target_eval", "target": {"merged": merged.weights_digest(),
                                                      "head": ctx.weights_digest(f"head/{task}", seed)},
                "surrogates": {s: surrogate_keys(ctx, task, s, seed)["surrogate"] for s in surrogates},
                **_subset_keys(ctx, task, seed),
                "code": {**_model_code(), **code_digest(clean_pass, example_cosines)},
                "batch_size": ctx.batch_sizes["grad"]}

        def build() -> dict[str, torch.Tensor]:
            trace.record("forward", what="target_clean", method=method, seed=int(seed), task=task,
                         images=len(sub.y))
            ev = clean_pass(model, sub.x, sub.y, ctx.batch_sizes["grad"])
            cos = {f"cos/{s}": example_cosines(surrogate_eval(ctx, task, s, seed).grads, ev["grads"])
                   for s in surrogates}
            return {"clean_pred": ev["clean_pred"], "feats": ev["feats"], **cos}

        art = ctx.cache.get_or_build("target_eval", spec, build)
        return model, TargetEval(art["clean_pred"] == sub.y, art["feats"], {s: art[f"cos/{s}"] for s in surrogates})

    return state(ctx).targets.get_or_set((merged.key, task, seed), make)


def predict_8bit(model: ImageClassifier, x_adv: torch.Tensor, batch_size: int) -> torch.Tensor:
    """`predict` on 8-bit images, decoded to float a batch at a time (`to_float` is elementwise, so the
    predictions are those on the whole decoded set, and no float copy of the set is ever made)."""
    from benchmark.attacks import to_float

    return torch.cat([predict(model, to_float(x_adv[i : i + batch_size]), batch_size)
                      for i in range(0, len(x_adv), batch_size)]) if len(x_adv) else torch.zeros(0, dtype=torch.long)


def target_adv_correct(model: ImageClassifier, x_adv: torch.Tensor, y: torch.Tensor, method: str, seed: int,
                       task: str, batch_size: int) -> torch.Tensor:
    """Whether the target classifies each 8-bit adversarial image correctly (one batched forward pass)."""
    trace.record("forward", what="target_adv", method=method, seed=int(seed), task=task, images=len(y))
    return predict_8bit(model, x_adv, batch_size) == y


def craft_all(ctx: RunContext, seeds: tuple[int, ...] | None = None) -> dict[str, int]:
    """Make sure every adversarial set of the suite exists (crafting only what the cache lacks)."""
    spec = ctx.suite.transfer
    st = state(ctx)
    before = (st.crafted, st.loaded)
    for seed in seeds or spec.seeds:
        for task in ctx.suite.task_names:
            for sur in spec.surrogates:
                surrogate_eval(ctx, task, sur, seed)
                for atk in spec.attacks:
                    adversarial(ctx, task, sur, atk, seed)
    return {"crafted": st.crafted - before[0], "loaded": st.loaded - before[1]}
