"""The transfer track: adversarial examples crafted on a surrogate, evaluated on every merged model.

Protocol (docs/transfer.md): for each task t and seed s, a fixed subset of t's test split (the first
`transfer.subset_size` indices of `torch.randperm(n_test)` under a generator seeded with s, sorted).
Surrogates: the fine-tuned model of t (`finetuned`) and the pretrained encoder with t's head
(`pretrained`). Targets: every merged model (merged with seed s) with t's head (and adapter). Attacks:
the suite's `transfer.attacks` from `benchmark.attacks`, untargeted L-inf, eps and steps from the suite.

One unit = (method, task, attack, surrogate, seed). Adversarial examples depend only on (surrogate, attack,
task subset, seed), never on the method: they are crafted once, stored in the content-addressed cache
(kind `adversarial`), and every target is evaluated on them, so adding a merging method runs no attack.
The surrogate's clean evaluation (predictions, features, input-gradients on the subset) is cached the same
way (kind `surrogate_eval`), and each adversarial artefact also holds the surrogate's predictions on it, so a
new method costs only forward passes of its own targets. Within a run, subsets, surrogate and target
evaluations and adversarial sets are memoised per RunContext.
"""

from __future__ import annotations

import hashlib
import json
import weakref
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from benchmark.data import tensors
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.hashing import content_hash
from benchmark.tracks.base import Track, Unit, register_track
from benchmark.zoo import predict

if TYPE_CHECKING:
    from benchmark.attacks import TransferAttack
    from benchmark.context import RunContext
    from benchmark.zoo import ImageClassifier

SURROGATES = ("finetuned", "pretrained")
ADV_MEMO_BYTES = 1 << 30  # in-process memo of adversarial sets; beyond this, the oldest are reloaded from cache
TARGET_MEMO_PER_TASK = 2  # target evaluations kept per task (units run method-major)
ARTEFACT_FORMAT = 1  # bump when the contents of the `adversarial` / `surrogate_eval` artefacts change


def transfer_subset(n_test: int, subset_size: int, seed: int) -> torch.Tensor:
    """The fixed, seeded test subset: sorted first `subset_size` indices of a seeded permutation."""
    g = torch.Generator().manual_seed(int(seed))
    return torch.randperm(n_test, generator=g)[: min(subset_size, n_test)].sort().values


def tensor_hash(*tensors: torch.Tensor) -> str:
    """sha256 prefix of tensors' dtypes, shapes and bytes (identity of the subset's data)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(f"{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes())
    return h.hexdigest()[:16]


@dataclass
class _Subset:
    indices: torch.Tensor
    x: torch.Tensor
    y: torch.Tensor
    data_hash: str


@dataclass
class _ModelEval:
    """A model's clean evaluation on one subset: which examples it gets right, its features, and its
    input-gradients of the cross-entropy loss (all on the full subset)."""

    clean_correct: torch.Tensor
    feats: torch.Tensor
    grads: torch.Tensor


@dataclass
class _TransferState:
    """Per-RunContext memo of everything units share."""

    subsets: dict[tuple, _Subset] = field(default_factory=dict)
    surrogate_models: dict[tuple, ImageClassifier] = field(default_factory=dict)
    surrogates: dict[tuple, _ModelEval] = field(default_factory=dict)
    adversarial: OrderedDict = field(default_factory=OrderedDict)  # key -> (x_adv, surrogate_adv_correct)
    targets: OrderedDict = field(default_factory=OrderedDict)  # key -> (model, _ModelEval)
    diagnostics: dict[tuple, tuple[float, float]] = field(default_factory=dict)
    crafted: int = 0
    loaded: int = 0


_STATES: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _state(ctx: RunContext) -> _TransferState:
    if ctx not in _STATES:
        _STATES[ctx] = _TransferState()
    return _STATES[ctx]


def attack_for(ctx: RunContext, name: str) -> TransferAttack:
    """The suite's attack `name` with its budget and any `transfer.attack_params` overrides."""
    from benchmark.attacks import make_attack

    spec = ctx.suite.transfer
    overrides = (ctx.suite.raw["transfer"].get("attack_params") or {}).get(name, {})
    return make_attack(name, spec.eps, spec.steps, **overrides)


def validate(ctx: RunContext) -> None:
    """Fail early, with the fix, on a transfer spec this track cannot run."""
    spec = ctx.suite.transfer
    if spec.norm != "Linf":
        raise MergesecError(f"suite {ctx.suite.name}: transfer.norm {spec.norm!r} is not supported; use Linf")
    for s in spec.surrogates:
        if s not in SURROGATES:
            raise UnknownNameError("surrogate", s, list(SURROGATES))
    if spec.subset_size < 1:
        raise MergesecError(f"suite {ctx.suite.name}: transfer.subset_size must be >= 1")
    for a in spec.attacks:
        attack_for(ctx, a)


def subset(ctx: RunContext, task: str, seed: int) -> _Subset:
    st = _state(ctx)
    key = (task, seed)
    if key not in st.subsets:
        test = ctx.data(task).test
        idx = transfer_subset(len(test), ctx.suite.transfer.subset_size, seed)
        xs, ys = tensors(test, idx)
        st.subsets[key] = _Subset(idx, xs, ys, tensor_hash(idx, xs, ys))
    return st.subsets[key]


def surrogate_model(ctx: RunContext, task: str, surrogate: str) -> ImageClassifier:
    """The surrogate classifier: t's fine-tuned encoder, or the pretrained encoder, with t's head."""
    st = _state(ctx)
    key = (task, surrogate)
    if key not in st.surrogate_models:
        zoo = ctx.zoo
        if surrogate == "finetuned":
            st.surrogate_models[key] = zoo.classifier(zoo.finetuned[task], task)
        elif surrogate == "pretrained":
            st.surrogate_models[key] = zoo.classifier(zoo.pretrained, task)
        else:
            raise UnknownNameError("surrogate", surrogate, list(SURROGATES))
    return st.surrogate_models[key]


def _clean_eval(model: ImageClassifier, sub: _Subset) -> dict[str, torch.Tensor]:
    """Clean predictions and features in one pass (logits = head(features)), and input-gradients."""
    from benchmark.metrics import input_gradients

    model.eval()
    with torch.no_grad():
        feats = torch.cat([model.features(sub.x[i : i + 512]) for i in range(0, len(sub.x), 512)])
        pred = model.head(feats).argmax(-1)
    return {"clean_pred": pred, "feats": feats, "grads": input_gradients(model, sub.x, sub.y)}


def _surrogate_keys(ctx: RunContext, task: str, surrogate: str, seed: int) -> dict[str, Any]:
    zoo, sub = ctx.zoo, subset(ctx, task, seed)
    if surrogate not in SURROGATES:
        raise UnknownNameError("surrogate", surrogate, list(SURROGATES))
    encoder = zoo.keys[f"finetuned/{task}"] if surrogate == "finetuned" else zoo.keys["pretrained"]
    return {
        "format": ARTEFACT_FORMAT,
        "surrogate": {"name": surrogate, "encoder": encoder, "head": zoo.keys[f"head/{task}"]},
        "task": task,
        "subset": {"n": len(sub.indices), "indices": content_hash(sub.indices.tolist()), "data": sub.data_hash},
        "seed": int(seed),
    }


def surrogate_eval(ctx: RunContext, task: str, surrogate: str, seed: int) -> _ModelEval:
    """The surrogate's clean evaluation on the subset (cached as kind `surrogate_eval`: it never depends on
    the merging method, so a new method recomputes nothing surrogate-side)."""
    st = _state(ctx)
    key = (task, surrogate, seed)
    if key not in st.surrogates:
        sub = subset(ctx, task, seed)
        spec = {"artefact": "surrogate_eval", **_surrogate_keys(ctx, task, surrogate, seed)}
        art = ctx.cache.get_or_build("surrogate_eval", spec,
                                     lambda: _clean_eval(surrogate_model(ctx, task, surrogate), sub))
        st.surrogates[key] = _ModelEval(art["clean_pred"] == sub.y, art["feats"], art["grads"])
    return st.surrogates[key]


def adversarial_spec(ctx: RunContext, task: str, surrogate: str, attack: TransferAttack, seed: int) -> dict:
    """What an adversarial set depends on (its cache key): surrogate weights, attack and its parameters,
    the task subset, the seed, the torchattacks version. Never the merging method."""
    import torchattacks

    return {
        "artefact": "adversarial",
        **_surrogate_keys(ctx, task, surrogate, seed),
        "attack": attack.name,
        "params": attack.params(),
        "torchattacks": torchattacks.__version__,
    }


def adversarial(ctx: RunContext, task: str, surrogate: str, attack_name: str, seed: int
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_adv, surrogate correct on x_adv) for the setting: memo, else the cache, else crafted and cached.

    The artefact holds the adversarial images, their subset indices, and the surrogate's predictions on
    them (so evaluating a new target needs no surrogate forward pass)."""
    st = _state(ctx)
    key = (task, surrogate, attack_name, seed)
    if key in st.adversarial:
        st.adversarial.move_to_end(key)
        return st.adversarial[key]
    attack = attack_for(ctx, attack_name)
    sub = subset(ctx, task, seed)
    spec = adversarial_spec(ctx, task, surrogate, attack, seed)
    built = []

    def build() -> dict[str, torch.Tensor]:
        built.append(True)
        model = surrogate_model(ctx, task, surrogate)
        x_adv = attack.craft(model, sub.x, sub.y, seed)
        return {"adv": x_adv, "indices": sub.indices, "surrogate_adv_pred": predict(model, x_adv)}

    art = ctx.cache.get_or_build("adversarial", spec, build)
    x_adv = art["adv"]
    if x_adv.shape != sub.x.shape or not torch.equal(art["indices"], sub.indices):
        path = ctx.cache.path("adversarial", content_hash(spec))
        raise MergesecError(f"cached adversarial set {path} does not match its subset; delete it and run again")
    if built:
        st.crafted += 1
    else:
        st.loaded += 1
    value = (x_adv, art["surrogate_adv_pred"] == sub.y)
    st.adversarial[key] = value
    while sum(v[0].numel() * v[0].element_size() for v in st.adversarial.values()) > ADV_MEMO_BYTES \
            and len(st.adversarial) > 1:
        st.adversarial.popitem(last=False)
    return value


def craft_all(ctx: RunContext, seeds: tuple[int, ...] | None = None) -> dict[str, int]:
    """Make sure every adversarial set of the suite exists (crafting only what the cache lacks)."""
    validate(ctx)
    spec = ctx.suite.transfer
    st = _state(ctx)
    before = (st.crafted, st.loaded)
    for seed in seeds or spec.seeds:
        for task in ctx.suite.task_names:
            for sur in spec.surrogates:
                surrogate_eval(ctx, task, sur, seed)
                for atk in spec.attacks:
                    adversarial(ctx, task, sur, atk, seed)
    return {"crafted": st.crafted - before[0], "loaded": st.loaded - before[1]}


def _hp_key(hparams: dict[str, Any]) -> str:
    return json.dumps(hparams, sort_keys=True, default=str)


def target_eval(ctx: RunContext, method: str, hparams: dict[str, Any], code: str, seed: int, task: str
                ) -> tuple[ImageClassifier, _ModelEval]:
    """The merged model (merged with `seed`) with `task`'s head, and its clean evaluation on the subset."""
    st = _state(ctx)
    key = (method, _hp_key(hparams), code, seed, task)
    if key in st.targets:
        st.targets.move_to_end(key)
        return st.targets[key]
    sub = subset(ctx, task, seed)
    model = ctx.target(ctx.merged(method, hparams, seed), task)
    ev = _clean_eval(model, sub)
    st.targets[key] = (model, _ModelEval(ev["clean_pred"] == sub.y, ev["feats"], ev["grads"]))
    while len(st.targets) > TARGET_MEMO_PER_TASK * max(1, len(ctx.suite.task_names)):
        st.targets.popitem(last=False)
    return st.targets[key]


def diagnostics(ctx: RunContext, sur: _ModelEval, tgt: _ModelEval, key: tuple) -> tuple[float, float]:
    """(gradient cosine on the counted samples, linear CKA of the clean subset's features), memoised."""
    from benchmark.metrics import counted_mask, gradient_cosine, linear_cka

    st = _state(ctx)
    if key not in st.diagnostics:
        counted = counted_mask(sur.clean_correct, tgt.clean_correct)
        st.diagnostics[key] = (gradient_cosine(sur.grads, tgt.grads, counted), linear_cka(sur.feats, tgt.feats))
    return st.diagnostics[key]


@register_track
class TransferTrack(Track):
    """Transfer attacks: adversarial examples crafted once per surrogate, evaluated on every merged model."""

    name = "transfer"

    def plan(self, ctx, methods):
        validate(ctx)
        spec = ctx.suite.transfer
        units = []
        for m in methods:
            hp, code = ctx.method_hparams(m), ctx.method_code(m)
            for seed in spec.seeds:
                for task in ctx.suite.task_names:
                    for sur in spec.surrogates:
                        for atk in spec.attacks:
                            units.append(Unit(self.name, {
                                "suite_hash": ctx.suite.hash, "method": m, "task": task, "attack": atk,
                                "surrogate": sur, "seed": seed, "hparams": hp, "code": code}))
        return units

    def run_unit(self, unit: Unit, ctx):
        from benchmark.metrics import setting_metrics

        d = unit.description
        method, task, atk, sur_name, seed = d["method"], d["task"], d["attack"], d["surrogate"], d["seed"]
        sub = subset(ctx, task, seed)
        sur = surrogate_eval(ctx, task, sur_name, seed)
        x_adv, sur_adv = adversarial(ctx, task, sur_name, atk, seed)
        model, tgt = target_eval(ctx, method, d["hparams"], d["code"], seed, task)
        tgt_adv = predict(model, x_adv) == sub.y
        cos, cka = diagnostics(ctx, sur, tgt, (method, _hp_key(d["hparams"]), d["code"], seed, task, sur_name))
        m = setting_metrics(sur.clean_correct.numpy(), tgt.clean_correct.numpy(), sur_adv.numpy(),
                            tgt_adv.numpy())
        keys = {"suite_hash": ctx.suite.hash, "method": method, "task": task, "attack": atk,
                "surrogate": sur_name, "seed": int(seed)}
        settings = pd.DataFrame([{"suite": ctx.suite.name, **keys, "eps": ctx.suite.transfer.eps, **m,
                                  "grad_cosine": cos, "cka": cka}])
        outcomes = pd.DataFrame({
            **{k: [v] * len(sub.y) for k, v in keys.items()},
            "example_id": sub.indices.numpy().astype("int32"),
            "label": sub.y.numpy().astype("int32"),
            "surrogate_clean_correct": sur.clean_correct.numpy(),
            "target_clean_correct": tgt.clean_correct.numpy(),
            "surrogate_adv_correct": sur_adv.numpy(),
            "target_adv_correct": tgt_adv.numpy(),
        })
        return {"transfer_settings": settings, "transfer_outcomes": outcomes}
