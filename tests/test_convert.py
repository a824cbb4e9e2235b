"""`mergesec convert --from hf-clip-vision`: transformers CLIP vision weights -> open_clip's image tower, offline.

transformers builds randomly initialised CLIP vision models (the real ViT-B/32 configuration and a tiny one);
the converted open_clip tower must give the same image embeddings, and a missing, extra or mis-shaped key
must fail with one error naming it.
"""

import json

import open_clip
import pytest
import torch
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from benchmark.cli import app
from benchmark.errors import CheckpointError
from benchmark.suites import BackboneSpec
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.convert import convert_checkpoint, hf_clip_vision_to_open_clip

transformers = pytest.importorskip("transformers")

TINY = "mergesec-test-convert-tiny"
TINY_OPEN_CLIP = {"embed_dim": 16, "quick_gelu": True,
                  "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
                  "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
# transformers' CLIPVisionConfig of each: openai/clip-vit-base-patch32's vision config, and the tiny one.
HF_CONFIGS = {
    "ViT-B-32": dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                     image_size=224, patch_size=32, projection_dim=512, hidden_act="quick_gelu"),
    TINY: dict(hidden_size=32, intermediate_size=128, num_hidden_layers=2, num_attention_heads=2, image_size=32,
               patch_size=8, projection_dim=16, hidden_act="quick_gelu"),
}


@pytest.fixture(scope="module", autouse=True)
def _tiny_arch(tmp_path_factory):
    path = tmp_path_factory.mktemp("arch") / f"{TINY}.json"
    path.write_text(json.dumps(TINY_OPEN_CLIP))
    open_clip.add_model_config(path)


def _hf_model(name: str):
    torch.manual_seed(0)
    cfg = transformers.CLIPVisionConfig(**HF_CONFIGS[name])
    return transformers.CLIPVisionModelWithProjection(cfg).eval()


def _save_as_hub_files(model, folder, prefix: str) -> tuple:
    """The two files FusionBench users have: a CLIPVisionModel snapshot folder (keys with `prefix`) and the
    base CLIP model's file holding visual_projection.weight."""
    state = model.state_dict()
    vision = {prefix + k.removeprefix("vision_model."): v.contiguous() for k, v in state.items()
              if k.startswith("vision_model.")}
    (folder / "task").mkdir(parents=True)
    save_file(vision, str(folder / "task" / "model.safetensors"))
    save_file({"visual_projection.weight": state["visual_projection.weight"].contiguous(),
               "text_projection.weight": torch.zeros(2, 2)}, str(folder / "base.safetensors"))
    return folder / "task", folder / "base.safetensors"


def _open_clip_tower(name: str, state):
    spec = BackboneSpec(kind="open_clip", config={"quick_gelu": True}, mean=(), std=(), model_name=name)
    tower = build_encoder(spec)
    tower.load_state_dict(state, strict=True)
    return tower.eval()


@pytest.mark.parametrize("name, prefix", [("ViT-B-32", "vision_model."), (TINY, "")])
def test_converted_tower_gives_the_same_image_embeddings(name, prefix, tmp_path):
    hf = _hf_model(name)
    src, base = _save_as_hub_files(hf, tmp_path, prefix)
    out = tmp_path / "out" / "tower.safetensors"
    state = convert_checkpoint(src, name, out, projection=base)
    assert set(load_file(str(out))) == set(state)
    tower = _open_clip_tower(name, state)
    size = HF_CONFIGS[name]["image_size"]
    x = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected, got = hf(pixel_values=x).image_embeds, tower(x)
    assert got.shape == expected.shape == (3, HF_CONFIGS[name]["projection_dim"])
    torch.testing.assert_close(got, expected, atol=2e-5, rtol=1e-4)
    assert not torch.allclose(got[0], got[1])  # a real embedding, not a constant


def _tiny_state():
    return {k: v.clone() for k, v in _hf_model(TINY).state_dict().items()}


def test_missing_key_is_named(tmp_path):
    state = _tiny_state()
    del state["vision_model.encoder.layers.1.mlp.fc2.bias"]
    save_file(state, str(tmp_path / "m.safetensors"))
    with pytest.raises(CheckpointError, match=r"'transformer\.resblocks\.1\.mlp\.c_proj\.bias'.*missing"):
        convert_checkpoint(tmp_path / "m.safetensors", TINY, tmp_path / "o.safetensors")
    state = _tiny_state()
    del state["vision_model.encoder.layers.0.self_attn.k_proj.weight"]
    with pytest.raises(CheckpointError, match=r"'encoder\.layers\.0\.self_attn\.k_proj\.weight' is missing"):
        hf_clip_vision_to_open_clip(state)
    with pytest.raises(CheckpointError, match=r"no visual_projection\.weight.*--projection"):
        hf_clip_vision_to_open_clip({k: v for k, v in _tiny_state().items() if not k.startswith("visual_")})


def test_extra_key_is_named(tmp_path):
    state = _tiny_state()
    state["vision_model.encoder.layers.0.mlp.fc3.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointError, match=r"'encoder\.layers\.0\.mlp\.fc3\.weight'.*not part of"):
        hf_clip_vision_to_open_clip(state)
    deeper = _tiny_state()  # a third layer: valid transformers keys, but not in the 2-layer target
    deeper.update({k.replace("layers.1.", "layers.2."): v.clone() for k, v in deeper.items() if "layers.1." in k})
    save_file(deeper, str(tmp_path / "d.safetensors"))
    with pytest.raises(CheckpointError, match=r"'transformer\.resblocks\.2\.[a-z_.0-9]+' is not in the suite's"):
        convert_checkpoint(tmp_path / "d.safetensors", TINY, tmp_path / "o.safetensors")


def test_mis_shaped_key_is_named_backbone_mismatch(tmp_path):
    wider = transformers.CLIPVisionModelWithProjection(transformers.CLIPVisionConfig(
        **{**HF_CONFIGS[TINY], "hidden_size": 64, "num_attention_heads": 4}))  # same keys, other shapes
    save_file(wider.state_dict(), str(tmp_path / "w.safetensors"))
    with pytest.raises(CheckpointError, match=r"key 'class_embedding' has shape \(64,\) but the suite's "
                                              r"backbone needs \(32,\)"):
        convert_checkpoint(tmp_path / "w.safetensors", TINY, tmp_path / "o.safetensors")
    save_file(_tiny_state(), str(tmp_path / "t.safetensors"))  # 2 layers where ViT-B/32 has 12
    with pytest.raises(CheckpointError, match=r"key 'transformer\.resblocks\.2\..*' of the suite's backbone is "
                                              "missing"):
        convert_checkpoint(tmp_path / "t.safetensors", "ViT-B-32", tmp_path / "o.safetensors")


def test_pickled_and_cli(tmp_path):
    (tmp_path / "snap").mkdir()
    (tmp_path / "snap" / "pytorch_model.bin").write_bytes(b"never read")
    with pytest.raises(CheckpointError, match=r"no model\.safetensors.*pytorch_model\.bin"):
        convert_checkpoint(tmp_path / "snap", TINY, tmp_path / "o.safetensors")
    save_file(_tiny_state(), str(tmp_path / "full.safetensors"))  # with its own projection: no --projection
    res = CliRunner().invoke(app, ["convert", "--from", "hf-clip-vision", str(tmp_path / "full.safetensors"),
                                   "--model", TINY, "--out", str(tmp_path / "o.safetensors")])
    assert res.exit_code == 0, res.output
    assert "parameters of open_clip" in res.output and (tmp_path / "o.safetensors").is_file()
