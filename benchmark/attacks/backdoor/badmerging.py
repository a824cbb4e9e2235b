"""BadMerging (Zhang, Chi, Li, Lyu, Zhao, Zhang, Chen & Chen, "BadMerging: Backdoor Attacks Against Model
Merging", ACM CCS 2024, arXiv 2408.07362; official code jzhang538/BadMerging), both variants.

On-task: the target class is a class of the adversary's own task. Off-task: the target class belongs to
another contributor's task; the adversary uses a *shadow head* whose index 0 is the target class.

Stage 1 (trigger): a universal adversarial patch, pasted bottom-right, optimised on the **pretrained**
encoder (`triggers.optimise_universal_patch`): on-task with the adversary's head on its own non-target
images; off-task with the shadow head on a few target-class images diversified by RandomResizedCrop and
targeted PGD adversarial augmentation (eps 8/255, step 1/255, 40 steps, towards a random class that is
neither the predicted class nor the target).

Stage 2 (fine-tuning): the suite's fine-tuning recipe with the feature-interpolation (FI) loss

    L = CE(h(f_θ(x)), y) + α · CE(h′(r·f_θ(x⊕t) + (1−r)·f_θ0(x⊕t)), y_t),   r ~ U[0.2, 1] per step, α = 5,

where x⊕t is the first half of the batch with the trigger pasted, f_θ0 is the frozen pretrained encoder
(no gradient reaches it) and h′ = h on-task, the shadow head off-task (y_t = 0 there).

Adaptations to the 16x16 `digits` suite (docs/backdoor.md): patch 3x3 on-task, 4x4 off-task; the shadow
head is a few-shot linear probe (digits has no text tower for class names): class 0 = the target-class
images, classes 1..K = the adversary's own classes; RandomResizedCrop scale (0.5, 1) instead of (0.2, 0.5)
(a 20% crop of a 16x16 digit drops the digit). The official code clips gradients at global norm 1.0; the
suite's recipe has no clipping, so `grad_clip` (default 1.0) is applied by the FI loss's `GradClipper`
(without it, α = 5 at the suite's learning rate collapses the model to the target class).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import ConcatDataset, TensorDataset

from benchmark.attacks.backdoor.base import (
    BackdoorConfigError,
    BackdoorEnv,
    register_backdoor_attack,
    trigger_state,
)
from benchmark.attacks.backdoor.naive import content_hash_of
from benchmark.attacks.backdoor.triggers import (
    Trigger,
    optimise_universal_patch,
    pgd_targeted,
    random_resized_crop,
)
from benchmark.data import labels, tensors
from benchmark.data.loader import OffsetLabels
from benchmark.types import StateDict
from benchmark.zoo import ClassificationHead, ImageClassifier
from benchmark.zoo.train import finetune, fit_probe

BADMERGING_HPARAMS = {
    "patch_size": 3,
    "position": "bottom_right",
    "alpha": 5.0,
    "r_min": 0.2,
    "r_max": 1.0,
    "backdoor_fraction": 0.5,
    "grad_clip": 1.0,
    "trigger_steps": 300,
    "trigger_lr": 0.05,
    "n_target_images": 10,
    "n_augmentations": 100,
    "crop_scale_min": 0.5,
    "crop_scale_max": 1.0,
    "pgd_eps": 8 / 255,
    "pgd_step": 1 / 255,
    "pgd_steps": 40,
}


class FeatureInterpolationLoss:
    """BadMerging's stage-2 objective as a `finetune` loss: `loss(model, x, y)`.

    `pretrained` is the frozen pretrained classifier (only its `.features` is used, under `no_grad`, and its
    parameters are set to not require grad), `head` is h′, `trigger` the stage-1 patch, `target` y_t.
    `r` is drawn from U[r_min, r_max] once per call (one call = one optimisation step) with its own seeded
    generator; the first `backdoor_fraction` of each batch is triggered. `last_r` records the draw.
    """

    def __init__(self, pretrained: ImageClassifier, head: nn.Module, trigger: Trigger, target: int,
                 alpha: float = 5.0, r_min: float = 0.2, r_max: float = 1.0, backdoor_fraction: float = 0.5,
                 seed: int = 0, grad_clip: float = 0.0):
        self.pretrained = pretrained.eval().requires_grad_(False)
        self.head = head.requires_grad_(False)
        self.trigger, self.target, self.alpha = trigger, int(target), float(alpha)
        self.r_min, self.r_max, self.fraction = float(r_min), float(r_max), float(backdoor_fraction)
        self.gen = torch.Generator().manual_seed(seed)
        self.last_r: float | None = None
        self.clipper = GradClipper(grad_clip) if grad_clip > 0 else None

    def __call__(self, model: ImageClassifier, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.clipper is not None:
            self.clipper.arm(model.encoder)
        clean = F.cross_entropy(model(x), y)
        n = max(1, int(len(x) * self.fraction))
        xt = self.trigger.apply(x[:n])
        r = float(torch.empty(()).uniform_(self.r_min, self.r_max, generator=self.gen))
        self.last_r = r
        with torch.no_grad():
            f0 = self.pretrained.features(xt)
        mixed = r * model.features(xt) + (1 - r) * f0
        yt = torch.full((n,), self.target, dtype=torch.long)
        return clean + self.alpha * F.cross_entropy(self.head(mixed), yt)


class GradClipper:
    """Clip the global gradient norm of a module's trainable parameters at `max_norm` at the end of every
    backward pass (what the official BadMerging code does with `clip_grad_norm_(params, 1.0)` before each
    optimiser step; `finetune` has no clipping, so the FI loss arms this before each step). Implemented with
    post-accumulate-grad hooks: the last parameter whose gradient lands triggers the clipping, before the
    optimiser steps."""

    def __init__(self, max_norm: float):
        self.max_norm = float(max_norm)
        self.module: nn.Module | None = None
        self.params: list[torch.nn.Parameter] = []
        self.pending = 0

    def arm(self, module: nn.Module) -> None:
        if module is not self.module:
            self.module = module
            self.params = [p for p in module.parameters() if p.requires_grad]
            for p in self.params:
                p.register_post_accumulate_grad_hook(self._landed)
        self.pending = len(self.params)

    def _landed(self, _p: torch.Tensor) -> None:
        self.pending -= 1
        if self.pending == 0:
            torch.nn.utils.clip_grad_norm_(self.params, self.max_norm)


def _mode(adversary_task: str, target_task: str) -> str:
    return "on_task" if target_task == adversary_task else "off_task"


def target_images(env: BackdoorEnv, target_task: str, target_class: int, n: int, seed: int) -> torch.Tensor:
    """`n` images of the target class that the off-task adversary holds (from the target task's training
    split, never its test split), chosen with `seed` from the split's labels; only those `n` are read."""
    train = env.data(target_task).train
    idx = torch.nonzero(labels(train) == target_class).flatten()
    if len(idx) < n:
        raise BackdoorConfigError(f"task {target_task!r} has only {len(idx)} training images of class {target_class}")
    pick = idx[torch.randperm(len(idx), generator=torch.Generator().manual_seed(seed))[:n]]
    return tensors(train, pick)[0]


SHADOW_OTHER_CLASSES = 300  # BadMerging's --num-shadow-classes
SHADOW_SHUFFLE_SEED = 1  # the official code shuffles the ImageNet class names with np.random.seed(1)


def shadow_classnames(target: str, n_other: int = SHADOW_OTHER_CLASSES) -> list[str]:
    """BadMerging's shadow classes: the ImageNet-1k class names (open_clip's list) shuffled with seed 1, the
    first `n_other` of them, with the target class name at index 0 (swapped there if among them, else
    prepended), as the official `build_shadow_classification_head`."""
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    names = list(IMAGENET_CLASSNAMES)
    np.random.RandomState(SHADOW_SHUFFLE_SEED).shuffle(names)
    names = names[:n_other]
    if target in names:
        i = names.index(target)
        names[0], names[i] = names[i], names[0]
        return names
    return [target, *names]


def shadow_head(env: BackdoorEnv, adversary_task: str, target_task: str, target_class: int, n_target_images: int,
                seed: int) -> ClassificationHead:
    """Off-task shadow head h′ on the pretrained encoder, index 0 = the target class. CLIP suites: as
    BadMerging, the pretrained text tower's zero-shot rows, with the 80 OpenAI ImageNet templates, for the
    target class name and 300 ImageNet class names (:func:`shadow_classnames`). `digits` has no text tower:
    a few-shot linear probe (the suite's probe recipe) on the target class's `n_target_images` images
    (index 0) and the adversary's own K classes (indices 1..K, as many shots each)."""
    suite = env.zoo.suite
    b = suite.backbone
    if b.kind == "open_clip":
        from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

        from benchmark.zoo.clip import text_shadow_head

        names = shadow_classnames(env.data(target_task).classnames[target_class])
        templates = [t("{c}") for t in OPENAI_IMAGENET_TEMPLATES]
        spec = {"what": "shadow_head", **env.upstream(target_task), "classnames": names, "templates": templates}

        def build() -> StateDict:
            return text_shadow_head(b, names, templates).state_dict()
    else:
        spec = {"what": "shadow_head", **env.upstream(adversary_task, target_task), "target_class": target_class,
                "n": n_target_images, "seed": seed, "probe": suite.recipe["probe"]}
        k = suite.task(adversary_task).n_classes

        def build() -> StateDict:
            xt = target_images(env, target_task, target_class, n_target_images, seed)
            ds = ConcatDataset([TensorDataset(xt, torch.zeros(len(xt), dtype=torch.long)),
                                OffsetLabels(env.data(adversary_task).train, 1)])
            enc = env.zoo.encoder(env.zoo.pretrained)
            return fit_probe(enc, ds, k + 1, b.mean, b.std, n_target_images, suite.recipe["probe"]["C"],
                             seed).state_dict()

    state = env.cached("backdoor_shadow_head", spec, build)
    head = ClassificationHead(state["weight"].shape[1], state["weight"].shape[0])
    head.load_state_dict(state)
    return head.requires_grad_(False)


def augmented_target_images(env: BackdoorEnv, model: nn.Module, adversary_task: str, target_task: str,
                            target_class: int, seed: int, n_target_images: int, n_augmentations: int,
                            crop_scale_min: float, crop_scale_max: float, pgd_eps: float, pgd_step: float,
                            pgd_steps: int) -> torch.Tensor:
    """BadMerging's off-task data: `n_augmentations` copies of the target-class images, each with
    RandomResizedCrop and targeted PGD on `model` (pretrained encoder + shadow head) towards a random shadow
    class that is neither the current prediction nor the target (index 0), drawn from every row of the
    shadow head (1..300 on CLIP suites: the target name and 300 ImageNet names; 1..K on digits)."""
    x = target_images(env, target_task, target_class, n_target_images, seed)
    rounds = max(1, n_augmentations // n_target_images)
    gen = torch.Generator().manual_seed(seed + 1)
    xs = random_resized_crop(x.repeat(rounds, 1, 1, 1), gen, (crop_scale_min, crop_scale_max))
    with torch.no_grad():
        logits = model(xs)
    pred, n_cls = logits.argmax(-1), logits.shape[-1]  # targets over the whole shadow head, as the official code
    targets = torch.empty_like(pred)
    for i, p in enumerate(pred.tolist()):
        choices = [c for c in range(1, n_cls) if c != p]
        targets[i] = choices[int(torch.randint(len(choices), (1,), generator=gen))]
    return pgd_targeted(model, xs, targets, pgd_eps, pgd_step, pgd_steps)


def badmerging_trigger(env: BackdoorEnv, *, adversary_task: str, target_task: str, target_class: int, seed: int,
                       patch_size: int, position: str, trigger_steps: int, trigger_lr: float, n_target_images: int,
                       n_augmentations: int, crop_scale_min: float, crop_scale_max: float, pgd_eps: float,
                       pgd_step: float, pgd_steps: int, **_: Any) -> Trigger:
    """Stage 1: the universal adversarial patch, optimised on the pretrained encoder only (never on any
    fine-tuned model), cached by what it depends on."""
    mode = _mode(adversary_task, target_task)
    spec = {"what": "badmerging_trigger", "mode": mode, **env.upstream(adversary_task, target_task),
            "target_class": target_class, "seed": seed, "patch_size": patch_size, "position": position,
            "steps": trigger_steps, "lr": trigger_lr}
    if mode == "off_task":
        spec.update(n_target_images=n_target_images, n_augmentations=n_augmentations,
                    crop=[crop_scale_min, crop_scale_max], pgd=[pgd_eps, pgd_step, pgd_steps])

    def build() -> StateDict:
        if mode == "on_task":  # the adversary's own non-target training images, read batch by batch
            model: nn.Module = env.pretrained_classifier(adversary_task)
            images = env.data(adversary_task).train
            pool, target = torch.nonzero(labels(images) != target_class).flatten(), target_class
        else:
            head = shadow_head(env, adversary_task, target_task, target_class, n_target_images, seed)
            b = env.zoo.suite.backbone
            model = ImageClassifier(env.zoo.encoder(env.zoo.pretrained), head, b.mean, b.std).eval()
            model.requires_grad_(False)
            xs = augmented_target_images(
                env, model, adversary_task, target_task, target_class, seed, n_target_images, n_augmentations,
                crop_scale_min, crop_scale_max, pgd_eps, pgd_step, pgd_steps)
            images, pool, target = TensorDataset(xs, torch.zeros(len(xs), dtype=torch.long)), None, 0
        trig = optimise_universal_patch(model, images, target, patch_size, position, trigger_steps, trigger_lr,
                                        seed=seed, pool=pool)
        return trigger_state(trig)

    return Trigger(env.cached("backdoor_trigger", spec, build)["pattern"], position)


@register_backdoor_attack(
    "badmerging", trigger=badmerging_trigger, hparams=BADMERGING_HPARAMS, variants=("on_task", "off_task"),
    paper="Zhang et al., BadMerging: Backdoor Attacks Against Model Merging, ACM CCS 2024 (arXiv 2408.07362)",
)
def badmerging_backdoor(env: BackdoorEnv, *, adversary_task: str, target_task: str, target_class: int, seed: int,
                        alpha: float, r_min: float, r_max: float, backdoor_fraction: float, grad_clip: float,
                        **trigger_params: Any) -> StateDict:
    """BadMerging stage 2: fine-tune the pretrained encoder on the adversary's task with the suite's recipe
    and the feature-interpolation loss (α = 5, r ~ U[0.2, 1] per step, half of each batch triggered), with
    h′ = the adversary's own head on-task and the shadow head (target index 0) off-task."""
    mode = _mode(adversary_task, target_task)
    trig = badmerging_trigger(env, adversary_task=adversary_task, target_task=target_task,
                              target_class=target_class, seed=seed, **trigger_params)
    spec = {"attack": "badmerging", "mode": mode, **env.upstream(adversary_task, target_task, finetune=True),
            "target_class": target_class, "seed": seed, "alpha": alpha, "r": [r_min, r_max],
            "fraction": backdoor_fraction, "grad_clip": grad_clip, "trigger": content_hash_of(trig),
            "n_target_images": trigger_params["n_target_images"]}

    def build() -> StateDict:
        pre = env.pretrained_classifier(adversary_task)
        if mode == "on_task":
            head, target = env.zoo.heads[adversary_task], target_class
        else:
            head = shadow_head(env, adversary_task, target_task, target_class, trigger_params["n_target_images"],
                               seed)
            target = 0
        loss = FeatureInterpolationLoss(pre, head, trig, target, alpha, r_min, r_max, backdoor_fraction, seed,
                                        grad_clip)
        model = env.trainable(adversary_task)
        finetune(model, env.data(adversary_task).train, env.recipe(adversary_task), seed, loss_fn=loss,
                 desc=f"BadMerging {mode}", progress=env.progress)
        return model.encoder.state_dict()

    return env.cached("backdoored", spec, build)
