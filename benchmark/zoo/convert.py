"""Checkpoint conversion: transformers CLIP vision weights -> open_clip's image tower (`mergesec convert`).

FusionBench's public CLIP ViT-B/32 task models (`tanganke/clip-vit-base-patch32_<task>`) are transformers
`CLIPVisionModel` weights; the image projection lives in the base model `openai/clip-vit-base-patch32`.
The mapping onto open_clip's `VisionTransformer` (the `visual` module of `open_clip.create_model`):

    embeddings.class_embedding            -> class_embedding
    embeddings.patch_embedding.weight     -> conv1.weight
    embeddings.position_embedding.weight  -> positional_embedding
    pre_layrnorm                          -> ln_pre
    encoder.layers.i.self_attn.{q,k,v}_proj -> transformer.resblocks.i.attn.in_proj_{weight,bias} (q;k;v rows)
    encoder.layers.i.self_attn.out_proj   -> transformer.resblocks.i.attn.out_proj
    encoder.layers.i.layer_norm{1,2}      -> transformer.resblocks.i.ln_{1,2}
    encoder.layers.i.mlp.fc{1,2}          -> transformer.resblocks.i.mlp.c_{fc,proj}
    post_layernorm                        -> ln_post
    visual_projection.weight (transposed) -> proj

Keys carry a `vision_model.` prefix in files saved by transformers 4.x (and in full `CLIPModel` files) and
none in 5.x; both are read. Both models use QuickGELU with the OpenAI weights and scale queries by
head_dim^-1/2, so the converted tower computes the same image embeddings (tested on the real ViT-B/32
configuration). The result is checked key by key against the target architecture: a missing, extra or
mis-shaped key is one `CheckpointError` naming it. Only safetensors files are read.
"""

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from benchmark.checkpoints import check_finite
from benchmark.errors import CheckpointError, MergesecError
from benchmark.types import StateDict

FORMATS = ("hf-clip-vision",)
# Parts of a full transformers `CLIPModel` file that the image tower does not use.
_IGNORED = re.compile(r"^(text_model\.|text_projection\.|logit_scale$|vision_model\.embeddings\.position_ids$|"
                      r"embeddings\.position_ids$)")
_FIXED = {
    "embeddings.class_embedding": "class_embedding",
    "embeddings.patch_embedding.weight": "conv1.weight",
    "embeddings.position_embedding.weight": "positional_embedding",
    "pre_layrnorm.weight": "ln_pre.weight", "pre_layrnorm.bias": "ln_pre.bias",
    "post_layernorm.weight": "ln_post.weight", "post_layernorm.bias": "ln_post.bias",
}
_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.(.+)$")
_IN_LAYER = {
    "self_attn.out_proj": "attn.out_proj", "layer_norm1": "ln_1", "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
}


def read_safetensors(src: str | Path) -> StateDict:
    """All tensors of a `.safetensors` file, or of a folder holding `model.safetensors` or a sharded
    `model.safetensors.index.json` (a Hugging Face snapshot). Pickled weights are refused."""
    path = Path(src).expanduser()
    if path.is_dir():
        index = path / "model.safetensors.index.json"
        if index.is_file():
            shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            return {k: v for shard in shards for k, v in load_file(str(path / shard)).items()}
        if (path / "model.safetensors").is_file():
            return load_file(str(path / "model.safetensors"))
        pickled = sorted(p.name for p in path.glob("*.bin")) + sorted(p.name for p in path.glob("*.pt"))
        raise CheckpointError(
            f"{path} holds no model.safetensors" + (f" (only pickled {pickled}, which mergesec never reads: "
                                                     "they can run code)" if pickled else "")
            + "; download the safetensors revision of the checkpoint (`hf download REPO --include '*.safetensors'`)"
        )
    if not path.is_file():
        raise MergesecError(f"{path}: no such file or folder; give a .safetensors file or a checkpoint folder")
    if path.suffix != ".safetensors":
        raise CheckpointError(f"{path}: only .safetensors checkpoints are read (pickled files can run code)")
    return load_file(str(path))


def _strip(state: StateDict) -> tuple[StateDict, torch.Tensor | None]:
    """The vision-tower tensors without the `vision_model.` prefix, and `visual_projection.weight` if present."""
    tower: StateDict = {}
    projection = None
    for key, value in state.items():
        if key == "visual_projection.weight":
            projection = value
        elif not _IGNORED.match(key):
            tower[key.removeprefix("vision_model.")] = value
    return tower, projection


def hf_clip_vision_to_open_clip(state: StateDict, projection: torch.Tensor | None = None) -> StateDict:
    """Map a transformers CLIP vision state dict (either key style; a full `CLIPModel` too) onto open_clip's
    `VisionTransformer` keys. `projection` (transformers' `visual_projection.weight`, shape (embed, width))
    is used when the file has none. Unknown keys raise `CheckpointError` naming them."""
    tower, own_projection = _strip(state)
    projection = own_projection if own_projection is not None else projection
    if projection is None:
        raise CheckpointError(
            "no visual_projection.weight: a CLIPVisionModel file has no image projection; pass the base CLIP "
            "model's with --projection (e.g. a snapshot of openai/clip-vit-base-patch32)"
        )
    out: StateDict = {"proj": projection.T.contiguous()}
    qkv: dict[tuple[int, str], dict[str, torch.Tensor]] = {}
    unknown = []
    for key, value in tower.items():
        if key in _FIXED:
            out[_FIXED[key]] = value
            continue
        m = _LAYER.match(key)
        if m is None:
            unknown.append(key)
            continue
        i, rest = int(m.group(1)), m.group(2)
        module, _, leaf = rest.rpartition(".")
        if module in ("self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj"):
            qkv.setdefault((i, leaf), {})[module[-6]] = value
        elif module in _IN_LAYER:
            out[f"transformer.resblocks.{i}.{_IN_LAYER[module]}.{leaf}"] = value
        else:
            unknown.append(key)
    if unknown:
        raise CheckpointError(f"key {unknown[0]!r} (and {len(unknown) - 1} more) is not part of a transformers "
                              "CLIP vision model; is this an hf-clip-vision checkpoint?")
    for (i, leaf), parts in sorted(qkv.items()):
        absent = [p for p in "qkv" if p not in parts]
        if absent:
            raise CheckpointError(f"key 'encoder.layers.{i}.self_attn.{absent[0]}_proj.{leaf}' is missing")
        out[f"transformer.resblocks.{i}.attn.in_proj_{leaf}"] = torch.cat([parts[p] for p in "qkv"])
    return out


def check_state_dict(state: StateDict, expected: StateDict, source: str) -> None:
    """`state` has exactly `expected`'s keys with the same shapes; else one `CheckpointError` naming the key."""
    missing = [k for k in expected if k not in state]
    extra = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing:
        raise CheckpointError(f"{source}: key {missing[0]!r} of the suite's backbone is missing "
                              f"({len(missing)} missing); the checkpoint is of another architecture")
    if extra:
        raise CheckpointError(f"{source}: key {extra[0]!r} is not in the suite's backbone ({len(extra)} extra); "
                              "the checkpoint is of another architecture")
    if wrong:
        k = wrong[0]
        raise CheckpointError(f"{source}: key {k!r} has shape {tuple(state[k].shape)} but the suite's backbone "
                              f"needs {tuple(expected[k].shape)}; the checkpoint is of another architecture")
    check_finite(state, source)


def convert_checkpoint(src: str | Path, model_name: str, out: str | Path, fmt: str = "hf-clip-vision",
                       projection: str | Path | None = None, config: dict | None = None) -> StateDict:
    """Convert `src` (format `fmt`) to open_clip `model_name`'s image tower, check it against that architecture
    (with `config` overrides) and write it to `out` (.safetensors). Returns the converted state dict."""
    from benchmark.suites import BackboneSpec
    from benchmark.zoo.backbone import build_encoder

    if fmt not in FORMATS:
        raise MergesecError(f"unknown checkpoint format {fmt!r}; mergesec converts from {', '.join(FORMATS)}")
    if Path(out).suffix != ".safetensors":
        raise MergesecError(f"--out {out}: the converted checkpoint is written as .safetensors; name it "
                            "FILE.safetensors")
    proj = None
    if projection is not None:
        proj = read_safetensors(projection).get("visual_projection.weight")
        if proj is None:
            raise CheckpointError(f"{projection}: has no visual_projection.weight (give the base CLIP model)")
    state = hf_clip_vision_to_open_clip(read_safetensors(src), proj)
    spec = BackboneSpec(kind="open_clip", config=dict(config or {}), mean=(), std=(), model_name=model_name)
    with torch.device("meta"):  # shapes only: no memory, no random init
        expected = build_encoder(spec).state_dict()
    check_state_dict(state, expected, str(src))
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(out))
    return state
