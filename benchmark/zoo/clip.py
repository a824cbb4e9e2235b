"""The CLIP zoo stages (`backbone.kind: open_clip`): pretrained image encoder and zero-shot heads.

As in the task-vectors recipe (Ilharco et al., ICLR 2023): the pretrained encoder is the image tower of an
open_clip CLIP model, and each task's frozen head is its zero-shot classifier, built with the same model's
text tower: every class name is put into every prompt template, the text embeddings are L2-normalised and
averaged, the mean is normalised again and scaled by the model's logit scale. `ClassificationHead` applies it
to L2-normalised image features with a zero bias, which is exactly CLIP's zero-shot logits.

Weights: `$MERGESEC_CLIP_CHECKPOINT` if set (a local `.safetensors` file with the full CLIP state dict), else
the suite's `backbone.pretrained`: an open_clip pretrained tag (e.g. `openai`, read from the Hugging Face hub
cache or downloaded), a path to a `.safetensors` file, or `random` (seeded initialisation; smoke suites).
Missing weights raise `MissingResourceError` with the fix.
"""

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import open_clip
import torch
import torch.nn.functional as F
from torch import nn

from benchmark.checkpoints import check_finite
from benchmark.data.loader import TaskData
from benchmark.errors import CheckpointError, MergesecError, MissingResourceError
from benchmark.suites import BackboneSpec, Suite, TaskSpec
from benchmark.types import StateDict
from benchmark.zoo.model import ClassificationHead
from benchmark.zoo.zoo import Stages

CHECKPOINT_ENV = "MERGESEC_CLIP_CHECKPOINT"


def resolve_weights(spec: BackboneSpec) -> str:
    """Where the pretrained CLIP weights come from: `$MERGESEC_CLIP_CHECKPOINT`, else `backbone.pretrained`."""
    weights = os.environ.get(CHECKPOINT_ENV, "").strip() or spec.pretrained
    if not weights:
        raise MergesecError(
            f"backbone {spec.model_name!r} names no pretrained weights; set backbone.pretrained in the suite "
            f"(an open_clip tag such as 'openai' or a .safetensors path) or ${CHECKPOINT_ENV}"
        )
    return str(weights)


def _export_command(spec: BackboneSpec, tag: str) -> str:
    config = "".join(f", {k}={v!r}" for k, v in spec.config.items())
    return (
        "python -c \"import open_clip, safetensors.torch as s; "
        f"m = open_clip.create_model('{spec.model_name}', pretrained='{tag}'{config}); "
        "s.save_file({k: v.contiguous() for k, v in m.state_dict().items()}, "
        f"'{spec.model_name}-{tag}.safetensors')\""
    )


def _missing_weights(spec: BackboneSpec, weights: str, tried: str) -> MissingResourceError:
    tags = open_clip.list_pretrained_tags_by_model(spec.model_name)
    tag = spec.pretrained if spec.pretrained in tags else ("openai" if "openai" in tags else None)
    if tag is None:  # a custom architecture: no published weights to export
        export, file = f"save the full CLIP state dict of {spec.model_name!r} with safetensors", "FILE.safetensors"
    else:
        export = f"on a machine with internet run: {_export_command(spec, tag)}"
        file = f"{spec.model_name}-{tag}.safetensors"
    hub = open_clip.get_pretrained_cfg(spec.model_name, tag).get("hf_hub", "").strip("/") if tag else ""
    hub_fix = (
        f"; or fill the Hugging Face hub cache (`hf download {hub}`), copy it to $HF_HUB_CACHE here and set "
        "HF_HUB_OFFLINE=1" if hub else ""
    )
    return MissingResourceError(
        f"pretrained weights {weights!r} of open_clip model {spec.model_name!r} are not on this machine "
        f"({tried}). Fix: {export}, copy the file here and set {CHECKPOINT_ENV}=/path/to/{file} (or set "
        f"backbone.pretrained to that path in a copy of the suite){hub_fix}."
    )


RANDOM = "random"  # backbone.pretrained: seeded random weights (the smoke suite: the code path, no download)


def load_clip(spec: BackboneSpec) -> nn.Module:
    """The full open_clip CLIP model (image and text towers) with the suite's pretrained weights, eval mode.
    `pretrained: random` gives open_clip's initialisation under torch seed 0 (the same weights every time)."""
    weights = resolve_weights(spec)
    if weights == RANDOM:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return open_clip.create_model(spec.model_name, **spec.config).eval().requires_grad_(False)
    is_tag = weights in open_clip.list_pretrained_tags_by_model(spec.model_name)
    if not is_tag:
        path = Path(weights).expanduser()
        if not path.is_file():
            source = f"${CHECKPOINT_ENV}" if os.environ.get(CHECKPOINT_ENV, "").strip() else "backbone.pretrained"
            raise _missing_weights(spec, weights, f"{source} names no file {path} and no open_clip tag")
        if path.suffix != ".safetensors":
            raise CheckpointError(
                f"{path}: only .safetensors checkpoints are read (pickled .pt/.bin files can run code). Convert "
                "it where you trust it: python -c \"import torch, safetensors.torch as s; s.save_file({k: "
                f"v.contiguous() for k, v in torch.load('{path.name}', weights_only=True).items()}}, "
                f"'{path.stem}.safetensors')\""
            )
        weights = str(path)
    try:
        model = open_clip.create_model(spec.model_name, pretrained=weights, **spec.config)
    except RuntimeError as e:
        if is_tag:
            raise _missing_weights(spec, weights, f"download or hub cache failed: {' '.join(str(e).split())[:300]}"
                                   ) from e
        raise CheckpointError(
            f"{weights}: does not fit open_clip model {spec.model_name!r} with config {spec.config} ({e}); "
            "the file must hold the full CLIP state dict (image and text towers) of that architecture"
        ) from e
    check_finite(model.state_dict(), weights)
    return model.eval().requires_grad_(False)


@torch.no_grad()
def zero_shot_head(model: nn.Module, tokenizer: Callable[..., torch.Tensor], classnames: list[str],
                   templates: list[str], classes_per_batch: int = 32) -> ClassificationHead:
    """CLIP zero-shot classifier as a frozen `ClassificationHead` (weights: one row per class, no bias).

    Row c = logit_scale.exp() · normalise(mean_t normalise(text_tower(template_t.format(c=classnames[c])))).
    """
    if not classnames or not templates:
        raise MergesecError("a zero-shot head needs at least one class name and one prompt template")
    rows = []
    for i in range(0, len(classnames), classes_per_batch):
        names = classnames[i : i + classes_per_batch]
        texts = [t.format(c=c) for c in names for t in templates]
        emb = F.normalize(model.encode_text(tokenizer(texts, context_length=model.context_length)), dim=-1)
        rows.append(F.normalize(emb.view(len(names), len(templates), -1).mean(1), dim=-1))
    weight = torch.cat(rows) * model.logit_scale.exp()
    head = ClassificationHead(weight.shape[1], weight.shape[0])
    head.weight.copy_(weight)
    head.bias.zero_()
    return head.requires_grad_(False)


def task_templates(spec: TaskSpec) -> list[str]:
    """The task's prompt templates (`templates` in its suite entry; `{c}` marks the class name)."""
    templates = spec.options.get("templates")
    if not templates:
        raise MergesecError(
            f"task {spec.name}: a zero-shot head needs prompt `templates` in the task's suite entry, e.g. "
            "['a photo of a {c}.']"
        )
    return [str(t) for t in templates]


def text_shadow_head(spec: BackboneSpec, classnames: list[str], templates: list[str]) -> ClassificationHead:
    """BadMerging's off-task shadow head h′ (Zhang et al., CCS 2024, §4.3): zero-shot rows of the pretrained
    text tower for `classnames` (the target class first, then the other class names)."""
    model = load_clip(spec)
    return zero_shot_head(model, open_clip.get_tokenizer(spec.model_name), classnames, templates)


class _ClipSource:
    """Loads the CLIP model at most once, and only if a stage has to be built (cached stages skip it)."""

    def __init__(self, spec: BackboneSpec):
        self.spec = spec
        self._model: nn.Module | None = None
        self._tokenizer: Callable[..., torch.Tensor] | None = None

    @property
    def model(self) -> nn.Module:
        if self._model is None:
            self._model = load_clip(self.spec)
            self._tokenizer = open_clip.get_tokenizer(self.spec.model_name)
        return self._model

    @property
    def tokenizer(self) -> Callable[..., torch.Tensor]:
        _ = self.model
        assert self._tokenizer is not None
        return self._tokenizer

    def pretrained(self) -> StateDict:
        return {k: v.detach().clone() for k, v in self.model.visual.state_dict().items()}

    def head(self, pretrained: StateDict, task: TaskSpec, data: TaskData) -> StateDict:
        return zero_shot_head(self.model, self.tokenizer, data.classnames, task_templates(task)).state_dict()


def clip_stages(suite: Suite) -> Stages:
    """The zoo's stages for an open_clip suite: pretrained image tower, zero-shot heads (no training)."""
    heads: dict[str, Any] = suite.recipe.get("heads") or {}
    if heads.get("kind") != "zero_shot":
        raise MergesecError(
            f"suite {suite.name}: an open_clip backbone needs recipe.heads.kind 'zero_shot' (got "
            f"{heads.get('kind')!r}); see docs/suites.md"
        )
    source = _ClipSource(suite.backbone)
    return Stages(pretrain_recipe=None, head_stage="zero_shot", head_recipe=heads,
                  build_pretrained=source.pretrained, build_head=source.head)
