"""Image encoders. Both suites use open_clip's VisionTransformer, so they share one code path."""

from typing import Any

import open_clip
from open_clip.model import _build_vision_tower
from open_clip.transformer import VisionTransformer
from torch import nn

from benchmark.errors import MissingResourceError
from benchmark.suites import BackboneSpec


def open_clip_model_config(spec: BackboneSpec) -> dict[str, Any]:
    """The open_clip model config of an `open_clip` backbone: the named architecture with the suite's
    `config` overrides applied on top (as `open_clip.create_model(model_name, **config)` does)."""
    cfg = open_clip.get_model_config(spec.model_name) if spec.model_name else None
    if cfg is None:
        raise MissingResourceError(
            f"open_clip has no model config named {spec.model_name!r}; set backbone.model_name to one of "
            "open_clip.list_models(), or register a custom architecture first with "
            "open_clip.add_model_config('/path/to/<name>.json')"
        )
    cfg.update(spec.config)
    return cfg


def build_encoder(spec: BackboneSpec) -> nn.Module:
    """A randomly initialised encoder for `spec` (weights come from the zoo or a checkpoint)."""
    if spec.kind == "open_clip_vit":
        return VisionTransformer(**spec.config)
    if spec.kind == "open_clip":
        # Only the image tower: the same module (and state-dict keys) as `create_model(...).visual`, without
        # building the text tower that the encoder never uses.
        cfg = open_clip_model_config(spec)
        return _build_vision_tower(cfg["embed_dim"], cfg["vision_cfg"], cfg.get("quick_gelu", False))
    raise MissingResourceError(f"unknown backbone kind {spec.kind!r}; use 'open_clip_vit' or 'open_clip'")
