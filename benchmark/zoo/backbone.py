"""Image encoders. Both suites use open_clip's VisionTransformer, so they share one code path."""

import open_clip
from open_clip.transformer import VisionTransformer
from torch import nn

from benchmark.errors import MissingResourceError
from benchmark.suites import BackboneSpec


def build_encoder(spec: BackboneSpec) -> nn.Module:
    """A randomly initialised encoder for `spec` (weights come from the zoo or a checkpoint)."""
    if spec.kind == "open_clip_vit":
        return VisionTransformer(**spec.config)
    if spec.kind == "open_clip":
        return open_clip.create_model(spec.model_name, pretrained=None, **spec.config).visual
    raise MissingResourceError(f"unknown backbone kind {spec.kind!r}; use 'open_clip_vit' or 'open_clip'")
