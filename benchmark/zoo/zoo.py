"""The model zoo of a suite: pretrained encoder, per-task frozen heads, per-task fine-tuned encoders.

Each artefact is cached by the hash of exactly what it depends on (data spec, backbone, recipe stage,
seed, upstream artefact keys), so a second run loads instead of training.
"""

import multiprocessing
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from benchmark.cache import Cache
from benchmark.data import TaskData, load_pretrain_images, load_task
from benchmark.errors import MergesecError
from benchmark.hashing import content_hash
from benchmark.suites import Suite, TaskSpec
from benchmark.types import StateDict
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.model import ClassificationHead, ImageClassifier, dataset_accuracy
from benchmark.zoo.public import PRETRAINED, PublicCheckpoints
from benchmark.zoo.train import finetune, fit_probe, pretrain_simclr


@dataclass
class Zoo:
    """Encoder state dicts (pretrained and fine-tuned per task), frozen heads, and their content keys.

    `finetuned` are the fine-tunes trained with `seed` (default `recipe.seed`); `for_seed` gives the zoo of
    another run seed (its own fine-tunes, the same pretrained encoder and heads)."""

    suite: Suite
    pretrained: StateDict
    finetuned: dict[str, StateDict]
    heads: dict[str, ClassificationHead]
    keys: dict[str, str] = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    sources: dict[str, dict[str, str]] = field(default_factory=dict)  # published weights: name -> repo+commit/sha
    seed: int | None = None  # the fine-tunes' training seed; None: recipe.seed
    seeds: Callable[[int], "Zoo"] | None = field(default=None, repr=False, compare=False)  # fine-tune seed -> zoo

    def __post_init__(self) -> None:
        if self.seed is None:
            self.seed = int(self.suite.recipe["seed"])

    def for_seed(self, seed: int) -> "Zoo":
        """The zoo a unit of run seed `seed` uses: the fine-tunes trained with `suite.finetune_seed(seed)` (this
        zoo itself unless `recipe.finetune_seed` is `run`), built or loaded once (`build_zoo`)."""
        s = self.suite.finetune_seed(seed)
        if s == self.seed:
            return self
        if self.seeds is None:
            raise MergesecError(f"this zoo holds only the fine-tunes of seed {self.seed}, not of seed {s}; "
                                "build it with benchmark.zoo.build_zoo")
        return self.seeds(s)

    def encoder(self, state: StateDict) -> nn.Module:
        """An eval-mode encoder with weights `state` on the zoo's device (the state dicts stay on the CPU)."""
        enc = build_encoder(self.suite.backbone)
        enc.load_state_dict(state)
        return enc.to(self.device).eval()

    def classifier(self, state: StateDict, task: str, adapter: nn.Module | None = None) -> ImageClassifier:
        """An eval-mode classifier for `task` with encoder weights `state` on the zoo's device; parameters do not
        require grad. It takes inputs on any device and returns logits on the input's device."""
        b = self.suite.backbone
        model = ImageClassifier(self.encoder(state), self.heads[task], b.mean, b.std, adapter)
        return model.eval().requires_grad_(False)


@dataclass
class Stages:
    """The two stages before fine-tuning, which depend on the backbone: the pretrained encoder and the frozen
    per-task heads. The recipes are what the cache keys record; `build_head(pretrained, task, data)`."""

    pretrain_recipe: Any
    head_stage: str
    head_recipe: Any
    build_pretrained: Callable[[], StateDict]
    build_head: Callable[[StateDict, TaskSpec, TaskData], StateDict]


def _simclr_stages(suite: Suite, progress: bool) -> Stages:
    """`digits`: SimCLR pretraining on the pretraining split, few-shot linear-probe heads."""
    b, seed, p = suite.backbone, suite.recipe["seed"], suite.recipe["probe"]

    def build_pretrained() -> StateDict:
        torch.manual_seed(seed)
        enc = build_encoder(b)
        return pretrain_simclr(enc, load_pretrain_images(suite), b.mean, b.std, suite.recipe["pretrain"], seed,
                               progress).state_dict()

    def build_head(pretrained: StateDict, t: TaskSpec, data: TaskData) -> StateDict:
        enc = build_encoder(b)
        enc.load_state_dict(pretrained)
        return fit_probe(enc, data.train, t.n_classes, b.mean, b.std, p["shots_per_class"], p["C"], seed).state_dict()

    return Stages(suite.recipe["pretrain"], "probe", p, build_pretrained, build_head)


def _stages(suite: Suite, progress: bool) -> Stages:
    if suite.backbone.kind == "open_clip":  # pretrained CLIP image tower + zero-shot heads (task vectors)
        from benchmark.zoo.clip import clip_stages

        return clip_stages(suite)
    return _simclr_stages(suite, progress)


def task_recipe(recipe: dict[str, Any], task: str) -> dict[str, Any]:
    """A suite's fine-tuning `recipe` for `task`: its `epochs` may be one number or a per-task mapping."""
    cfg = dict(recipe)
    if isinstance(cfg.get("epochs"), dict):
        cfg["epochs"] = cfg["epochs"][task]
    return cfg


def finetune_recipe(suite: Suite, task: str) -> dict[str, Any]:
    """The fine-tuning recipe of `task` in `suite`."""
    return task_recipe(suite.recipe["finetune"], task)


def _specs(suite: Suite, stages: Stages, public: PublicCheckpoints | None) -> dict[str, Any]:
    """What each zoo artefact depends on (the cache keys' contents); published encoders are keyed by their pin."""
    base = {"data": suite.data, "backbone": suite.raw["backbone"], "seed": suite.recipe["seed"]}
    pre = public.spec(PRETRAINED) if public else {"stage": "pretrain", **base, "recipe": stages.pretrain_recipe}
    pre_key = content_hash(pre)
    out: dict[str, Any] = {"pretrained": pre}
    for t in suite.tasks:
        task = {"name": t.name, "n_classes": t.n_classes, **t.options}
        head = {"stage": stages.head_stage, "pretrained": pre_key, "task": task, "recipe": stages.head_recipe,
                **base}
        out[f"head/{t.name}"] = head
        out[f"finetuned/{t.name}"] = public.spec(t.name) if public else {
            "stage": "finetune", "head": content_hash(head), "task": task,
            "recipe": finetune_recipe(suite, t.name), **base
        }
    return out


@dataclass
class _Base:
    """What every fine-tune starts from: the artefacts' specs, the pretrained encoder and the frozen heads."""

    specs: dict[str, Any]
    public: PublicCheckpoints | None
    pretrained: StateDict
    heads: dict[str, ClassificationHead]

    def finetune_spec(self, task: str, seed: int) -> dict[str, Any]:
        """What `task`'s fine-tune with training seed `seed` depends on: the `recipe.seed` spec with its seed
        replaced, so the spec (and key) at `recipe.seed` is the one a suite without `finetune_seed` has."""
        spec = self.specs[f"finetuned/{task}"]
        return spec if self.public else {**spec, "seed": seed}


def _base(suite: Suite, cache: Cache, progress: bool, device: torch.device) -> _Base:
    """Build (or load) the pretrained encoder and every task's head."""
    stages = _stages(suite, progress)
    public = PublicCheckpoints(suite) if suite.recipe.get("finetuned") else None
    specs = _specs(suite, stages, public)
    pretrained = cache.get_or_build("pretrained", specs["pretrained"], (lambda: public.encoder_state(PRETRAINED))
                                    if public else stages.build_pretrained)
    heads: dict[str, ClassificationHead] = {}
    for t in suite.tasks:
        def build_head(t=t) -> StateDict:
            return stages.build_head(pretrained, t, load_task(suite, t.name))

        head_state = cache.get_or_build("head", specs[f"head/{t.name}"], build_head)
        n_classes, dim = head_state["weight"].shape
        head = ClassificationHead(dim, n_classes)
        head.load_state_dict(head_state)
        heads[t.name] = head.to(device).requires_grad_(False)
    return _Base(specs, public, pretrained, heads)


def _finetuned(suite: Suite, cache: Cache, base: _Base, task: str, seed: int, device: torch.device,
               progress: bool) -> StateDict:
    """Task `task`'s encoder fine-tuned with training seed `seed` (built, or loaded from `cache`); CPU tensors."""
    def build() -> StateDict:
        if base.public:  # a published checkpoint: converted and checked, never trained
            return base.public.encoder_state(task)
        b = suite.backbone
        enc = build_encoder(b)
        enc.load_state_dict(base.pretrained)
        model = ImageClassifier(enc.to(device), base.heads[task], b.mean, b.std)
        finetune(model, load_task(suite, task).train, finetune_recipe(suite, task), seed,
                 desc=f"fine-tune {task}", progress=progress)
        return {k: v.cpu() for k, v in model.encoder.state_dict().items()}

    return cache.get_or_build("finetuned", base.finetune_spec(task, seed), build)


def _finetune_in_worker(raw: dict[str, Any], root: str, task: str, seed: int, device: str) -> None:
    """A worker process's fine-tune of `task` with `seed` into the cache at `root` (the base is cached there)."""
    suite, cache, dev = Suite(raw=raw), Cache(Path(root)), torch.device(device)
    _finetuned(suite, cache, _base(suite, cache, False, dev), task, seed, dev, False)


def _finetune_parallel(suite: Suite, cache: Cache, base: _Base, jobs: list[tuple[str, int]], workers: int,
                       device: torch.device) -> None:
    """Fine-tune the (task, seed) `jobs` into the cache, `workers` at a time: this process takes every
    `workers`-th job, spawned processes (on this process's torch thread count, so the floats are a serial
    build's) the others."""
    mine, theirs = jobs[::workers], [j for i, j in enumerate(jobs) if i % workers]
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(min(workers - 1, len(theirs)), mp_context=ctx, initializer=torch.set_num_threads,
                             initargs=(torch.get_num_threads(),)) as pool:
        futures = [pool.submit(_finetune_in_worker, suite.raw, str(cache.root), t, s, str(device))
                   for t, s in theirs]
        for t, s in mine:
            _finetuned(suite, cache, base, t, s, device, False)
        for f in futures:
            f.result()


def build_zoo(suite: Suite, cache: Cache, progress: bool = True, device: torch.device | None = None,
              workers: int = 1) -> Zoo:
    """Build (or load) the suite's zoo, training on `device` (default CPU): the pretrained encoder, the heads
    and every task's fine-tune for every seed in `suite.finetune_seeds`. The fine-tunes missing from the cache
    run in `workers` processes (they are independent once the pretrained encoder and the heads exist).
    Returns the `recipe.seed` zoo; `Zoo.for_seed` loads another seed's fine-tunes when first asked (memoised).
    Deterministic for a given suite, seed and device, whatever `workers`; the cached state dicts are CPU
    tensors."""
    device = device or torch.device("cpu")
    base = _base(suite, cache, progress, device)
    first, *others = suite.finetune_seeds
    todo = [(t, s) for s in suite.finetune_seeds for t in suite.task_names
            if not cache.has("finetuned", base.finetune_spec(t, s))]
    if workers > 1 and len(todo) > 1 and base.public is None:
        _finetune_parallel(suite, cache, base, todo, workers, device)
    public = base.public
    sources = {} if public is None else {
        name: public.checkpoints[PRETRAINED if name == "pretrained" else name.removeprefix("finetuned/")].identity
        for name in base.specs if not name.startswith("head/")}
    zoos: dict[int, Zoo] = {}

    def seed_zoo(seed: int) -> Zoo:
        if seed not in zoos:
            tasks = suite.task_names
            finetuned = {t: _finetuned(suite, cache, base, t, seed, device, progress)
                         for t in tqdm(tasks, desc=f"zoo: fine-tuning (seed {seed})", disable=not progress)}
            keys = {**{name: content_hash(spec) for name, spec in base.specs.items()},
                    **{f"finetuned/{t}": content_hash(base.finetune_spec(t, seed)) for t in tasks}}
            zoos[seed] = Zoo(suite, base.pretrained, finetuned, base.heads, keys, device, sources, seed, seed_zoo)
        return zoos[seed]

    zoo = seed_zoo(first)
    rest = [(t, s) for t, s in todo if s in others and not cache.has("finetuned", base.finetune_spec(t, s))]
    for t, s in tqdm(rest, desc="zoo: fine-tuning (other seeds)", disable=not progress):
        _finetuned(suite, cache, base, t, s, device, progress)  # cached for the units of seed s (Zoo.for_seed)
    return zoo


def zoo_report(zoo: Zoo) -> list[dict[str, Any]]:
    """Per fine-tuning seed (`suite.finetune_seeds`) and task: test accuracy of the pretrained encoder
    (+probe head) and of the fine-tuned encoder."""
    from benchmark.batch_sizes import resolve_batch_sizes

    rows, bs = [], resolve_batch_sizes(zoo.suite.raw, zoo.device)["eval"]
    for t in zoo.suite.task_names:
        test = load_task(zoo.suite, t).test
        pretrained = dataset_accuracy(zoo.classifier(zoo.pretrained, t), test, bs)
        for seed in zoo.suite.finetune_seeds:
            z = zoo.for_seed(seed)
            rows.append({"task": t, "seed": seed, "pretrained_acc": pretrained,
                         "finetuned_acc": dataset_accuracy(z.classifier(z.finetuned[t], t), test, bs)})
    return rows
