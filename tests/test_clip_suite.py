"""The paper-scale `clip-vit-b32` suite's whole loading path, offline: a tiny open_clip architecture with
random weights saved as a local .safetensors checkpoint, tiny local `datasets` copies, the same code path
(hf_task -> zero-shot heads -> build_zoo) the real suite runs."""

import hashlib
import json

import datasets
import huggingface_hub.constants as hub_constants
import numpy as np
import open_clip
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image
from safetensors.torch import load_file, save_file

from benchmark.cache import Cache
from benchmark.data import load_task
from benchmark.data.hf import DATA_DIR_ENV
from benchmark.errors import CheckpointError, MergesecError, MissingResourceError
from benchmark.suites import SUITE_DIR, load_suite
from benchmark.zoo import build_zoo
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.clip import CHECKPOINT_ENV, load_clip, zero_shot_head
from tests.conftest import write_suite

TINY_MODEL = "mergesec-test-tiny-clip"
TINY_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "patch_size": 8, "head_width": 16},
    "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}
# Two tasks: (classes, train rows, test rows, source image size, image mode).
TASKS = {
    "alpha": (["cat", "dog", "sea_lion"], 20, 9, (40, 36), "RGB"),
    "beta": (["zero", "one"], 12, 6, (28, 28), "L"),
}


@pytest.fixture(autouse=True)
def _offline(monkeypatch, tmp_path):
    """No network, and an empty private datasets cache, in every test of this module."""
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", str(tmp_path / "hf-datasets-cache"))
    monkeypatch.delenv(CHECKPOINT_ENV, raising=False)
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    """A tiny open_clip architecture registered under TINY_MODEL; its random full CLIP state dict on disk."""
    folder = tmp_path_factory.mktemp("tiny-clip")
    (folder / f"{TINY_MODEL}.json").write_text(json.dumps(TINY_CONFIG))
    open_clip.add_model_config(folder / f"{TINY_MODEL}.json")
    torch.manual_seed(0)
    model = open_clip.create_model(TINY_MODEL, quick_gelu=True)
    path = folder / "tiny-clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def _image_split(rng, names, n, size, mode) -> datasets.Dataset:
    """`n` random images of `size` and `mode` with labels 0, 1, ... cycling over the ClassLabel `names`."""
    (w, h), channels = size, 3 if mode == "RGB" else 1
    images = [Image.fromarray(rng.integers(0, 256, (h, w, channels), dtype=np.uint8).squeeze()) for _ in range(n)]
    features = datasets.Features({"image": datasets.Image(), "label": datasets.ClassLabel(names=names)})
    return datasets.Dataset.from_dict({"image": images, "label": [i % len(names) for i in range(n)]},
                                      features=features)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """Tiny image-classification DatasetDicts, one folder per task, written by save_to_disk."""
    root = tmp_path_factory.mktemp("hf-data")
    rng = np.random.default_rng(0)
    for task, (names, n_train, n_test, size, mode) in TASKS.items():
        splits = {"train": _image_split(rng, names, n_train, size, mode),
                  "test": _image_split(rng, names, n_test, size, mode)}
        datasets.DatasetDict(splits).save_to_disk(str(root / task))
    return root


def tiny_clip_raw(checkpoint) -> dict:
    """clip-vit-b32.yaml with the tiny model and the two tiny local tasks; everything else as shipped."""
    raw = yaml.safe_load((SUITE_DIR / "clip-vit-b32.yaml").read_text())
    raw["name"] = "clip-tiny"
    raw["data"]["image_size"] = 32
    raw["tasks"] = [
        {"name": task, "n_classes": len(names), "hf_id": f"mergesec-test/{task}", "train_split": "train",
         "test_split": "test", "image_column": "image", "label_column": "label",
         "templates": ["a photo of a {c}.", "a blurry photo of the {c}."]}
        for task, (names, *_rest) in TASKS.items()
    ]
    raw["backbone"].update(model_name=TINY_MODEL, pretrained=str(checkpoint))
    raw["recipe"]["finetune"].update(epochs={t: 1 for t in TASKS}, batch_size=64, warmup_steps=0)
    del raw["recipe"]["finetuned"]  # fine-tune here; the published-checkpoint path has tests of its own
    return raw


@pytest.fixture
def tiny_suite(tmp_path, tiny_checkpoint, data_dir, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    return write_suite(tmp_path / "clip-tiny.yaml", tiny_clip_raw(tiny_checkpoint))


def test_shipped_suite_parses_with_eight_tasks():
    s = load_suite("clip-vit-b32")
    assert s.name == "clip-vit-b32" and len(s.tasks) == 8 and len(s.hash) == 16
    assert s.hash == load_suite("clip-vit-b32").hash
    assert s.data["source"] == "huggingface" and s.data["image_size"] == 224
    assert s.data["dev"] == {"fraction": 0.1, "max_size": 5000, "seed": 0}
    assert s.backbone.kind == "open_clip" and s.backbone.model_name == "ViT-B-32"
    assert s.backbone.pretrained == "openai" and s.recipe["finetuned"] == {"source": "fusionbench"}
    assert s.backbone.mean == open_clip.OPENAI_DATASET_MEAN and s.backbone.std == open_clip.OPENAI_DATASET_STD
    assert set(s.recipe["finetune"]["epochs"]) == set(s.task_names)
    assert set(s.merge_methods) == set(load_suite("digits").merge_methods)
    assert set(s.backdoor) == set(load_suite("digits").backdoor)
    off_task = [a["target_task"] for a in s.backdoor["attacks"] if a.get("variant") == "off_task"]
    assert {s.backdoor["adversary_task"], *off_task} <= set(s.task_names) and off_task
    for t in s.tasks:
        assert t.options["hf_id"] and t.options["templates"]
        assert all("{c}" in tpl for tpl in t.options["templates"])
        if "classnames" in t.options:
            assert len(t.options["classnames"]) == t.n_classes


def test_hf_task_splits_shapes_and_classes(tiny_suite):
    for task, (names, n_train, n_test, *_rest) in TASKS.items():
        data = load_task(tiny_suite, task)
        n_dev = max(1, int(0.1 * n_train))
        assert (len(data.train), len(data.dev), len(data.test)) == (n_train - n_dev, n_dev, n_test)
        assert not set(data.train.indices) & set(data.dev.indices)
        assert sorted([*data.train.indices, *data.dev.indices]) == list(range(n_train))
        assert data.n_classes == len(names)
        assert data.classnames == [n.replace("_", " ") for n in names]
        x, y = data.test[0]
        assert x.shape == (3, 32, 32) and x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
        assert y.dtype == torch.int64 and int(y) == 0
        assert torch.equal(data.test.targets, torch.arange(n_test) % len(names))
    again = load_task(tiny_suite, "alpha")
    assert list(again.dev.indices) == list(load_task(tiny_suite, "alpha").dev.indices)


def test_hub_snapshot_folder_is_read(tiny_suite, tmp_path, monkeypatch, data_dir):
    """`$MERGESEC_DATA_DIR/<task>` may also be a Hub repository snapshot (parquet files, `hf download`)."""
    local = datasets.load_from_disk(str(data_dir / "beta"))
    for split in ("train", "test"):
        (tmp_path / "beta" / "data").mkdir(parents=True, exist_ok=True)
        local[split].to_parquet(str(tmp_path / "beta" / "data" / f"{split}-00000-of-00001.parquet"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    data = load_task(tiny_suite, "beta")
    assert (len(data.train) + len(data.dev), len(data.test), data.classnames) == (12, 6, ["zero", "one"])
    assert data.train[0][0].shape == (3, 32, 32)


def test_zero_shot_head_is_normalised_mean_text_embedding_times_scale(tiny_suite):
    model = load_clip(tiny_suite.backbone)
    tokenizer = open_clip.get_tokenizer(TINY_MODEL)
    names, templates = ["cat", "dog", "sea lion"], ["a photo of a {c}.", "a blurry photo of the {c}."]
    head = zero_shot_head(model, tokenizer, names, templates, classes_per_batch=2)
    assert head.weight.shape == (3, TINY_CONFIG["embed_dim"]) and not head.weight.requires_grad
    assert torch.equal(head.bias, torch.zeros(3))
    with torch.no_grad():
        for c, name in enumerate(names):
            emb = F.normalize(model.encode_text(tokenizer([t.format(c=name) for t in templates])), dim=-1)
            expected = F.normalize(emb.mean(0), dim=0) * model.logit_scale.exp()
            torch.testing.assert_close(head.weight[c], expected)
        image = torch.rand(2, 3, 32, 32)
        feats = model.encode_image(image)
        torch.testing.assert_close(head(feats), model.logit_scale.exp() * F.normalize(feats, dim=-1)
                                   @ (head.weight / head.weight.norm(dim=-1, keepdim=True)).T)


def test_badmerging_shadow_classes_are_seeded_imagenet_names_with_target_first():
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES

    from benchmark.attacks.backdoor.badmerging import shadow_classnames

    shuffled = list(IMAGENET_CLASSNAMES)
    np.random.seed(1)  # the official code's global-seed shuffle
    np.random.shuffle(shuffled)
    outside = shadow_classnames("sea lion")
    assert outside == ["sea lion", *shuffled[:300]] and len(outside) == 301
    inside = shadow_classnames(shuffled[7])  # a name among the 300 is swapped to index 0, not repeated
    assert len(inside) == 300 and inside[0] == shuffled[7] and inside[7] == shuffled[0]
    assert sorted(inside) == sorted(shuffled[:300])


def test_badmerging_shadow_head_is_text_embeddings_with_target_first(tiny_suite, tmp_path):
    """BadMerging's off-task h′ on CLIP: zero-shot rows of the pretrained text tower (OpenAI ImageNet
    templates) for the target class name (index 0) and the shadow classes."""
    from open_clip.zero_shot_metadata import OPENAI_IMAGENET_TEMPLATES

    from benchmark.attacks.backdoor.badmerging import shadow_classnames, shadow_head
    from benchmark.attacks.backdoor.base import BackdoorEnv

    zoo = build_zoo(tiny_suite, Cache(tmp_path / "cache"), progress=False)
    env = BackdoorEnv(zoo, lambda t: load_task(tiny_suite, t), Cache(tmp_path / "cache"))
    head = shadow_head(env, "alpha", "beta", 1, 3, seed=0)
    names = shadow_classnames("one")  # beta's class 1
    model, tokenizer = load_clip(tiny_suite.backbone), open_clip.get_tokenizer(TINY_MODEL)
    target_row = zero_shot_head(model, tokenizer, ["one"], [t("{c}") for t in OPENAI_IMAGENET_TEMPLATES])
    assert head.weight.shape == (len(names), TINY_CONFIG["embed_dim"])
    torch.testing.assert_close(head.weight[0], target_row.weight[0])


def test_build_zoo_clip_path(tiny_suite, tiny_checkpoint, tmp_path, monkeypatch):
    cache = Cache(tmp_path / "cache")
    zoo = build_zoo(tiny_suite, cache, progress=False)
    clip_model = load_clip(tiny_suite.backbone)
    expected = clip_model.visual.state_dict()
    assert set(zoo.pretrained) == set(expected) == set(build_encoder(tiny_suite.backbone).state_dict())
    assert all(torch.equal(zoo.pretrained[k], expected[k]) for k in expected)
    for task, (names, *_rest) in TASKS.items():
        ft = zoo.finetuned[task]
        assert set(ft) == set(zoo.pretrained)
        assert all(ft[k].shape == zoo.pretrained[k].shape for k in ft)
        assert any(not torch.equal(ft[k], zoo.pretrained[k]) for k in ft)  # one AdamW step moved it
        assert zoo.heads[task].weight.shape == (len(names), TINY_CONFIG["embed_dim"])
        x, _ = load_task(tiny_suite, task).test[0]
        assert zoo.classifier(ft, task)(x[None]).shape == (1, len(names))
    # Everything is cached: a rebuild needs neither the weights nor any training.
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "gone.safetensors"))
    again = build_zoo(tiny_suite, cache, progress=False)
    assert all(torch.equal(again.finetuned["alpha"][k], zoo.finetuned["alpha"][k]) for k in zoo.pretrained)


def test_every_track_runs_on_a_huggingface_suite(tiny_checkpoint, data_dir, tmp_path, monkeypatch):
    """The tracks read Hugging Face splits through `benchmark.data` (batches, or the small subsets the protocol
    fixes), never `.tensors`: a whole run of the three tracks into DuckDB."""
    from benchmark import runner
    from benchmark.store import Store

    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    raw = tiny_clip_raw(tiny_checkpoint)
    raw["transfer"].update(attacks=["fgsm", "pgd"], subset_size=4)
    bd = raw["backdoor"]
    # two tasks: the defender injects into alpha (task 0), not the off-task target beta
    bd.update(adversary_task="alpha", methods=["task_arithmetic"],
              defenses={"ibvs": {**bd["defenses"]["ibvs"], "inject_task": 0}})
    bd["attacks"] = [{**bd["attacks"][0], "patch_size": 4},
                     {**bd["attacks"][2], "target_task": "beta", "patch_size": 4, "n_target_images": 3}]
    suite = write_suite(tmp_path / "clip-tiny.yaml", raw)
    store = Store(tmp_path / "results.duckdb")
    summary = runner.run(suite, ["merge", "transfer", "backdoor"], store, Cache(tmp_path / "cache"),
                         ["task_arithmetic", "ties"], progress=False)
    assert summary.units_run == summary.units_total > 0
    merge = store.read("SELECT method, task, n, clean_acc FROM merge_eval ORDER BY method, task")
    assert len(merge) == 2 * len(TASKS)
    assert dict(zip(merge.task, merge.n, strict=False)) == {t: v[2] for t, v in TASKS.items()}  # full test splits
    assert merge.clean_acc.between(0, 1).all()
    transfer = store.read("SELECT DISTINCT method, task, attack, surrogate FROM transfer_metrics")
    assert len(transfer) == 2 * len(TASKS) * 2 * 2  # methods x tasks x attacks x surrogates
    examples = store.read("SELECT task, count(*) AS n FROM transfer_examples GROUP BY task")
    assert (examples.n > 0).all() and set(examples.task) == set(TASKS)
    backdoor = store.read("SELECT attack, variant, defense, target_task, backdoor_asr, n_asr FROM backdoor_metrics")
    assert {("naive", "alpha"), ("badmerging", "beta")} <= set(zip(backdoor.attack, backdoor.target_task, strict=True))
    assert set(backdoor.defense) == {"none", "ibvs"} and backdoor.backdoor_asr.between(0, 1).all()


def test_missing_data_names_dataset_and_fix(tiny_suite, tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path / "empty"))
    with pytest.raises(MissingResourceError) as e:
        load_task(tiny_suite, "beta")
    msg = str(e.value)
    for needle in ("mergesec-test/beta", f"{DATA_DIR_ENV}=DIR", "save_to_disk('DIR/beta')", "no such folder",
                   "hf download --repo-type dataset mergesec-test/beta", "HF_DATASETS_OFFLINE=1",
                   "datasets cache", "offline mode is on"):
        assert needle in msg, needle


def test_local_copy_missing_split_is_reported(tiny_suite, tmp_path, monkeypatch, data_dir):
    (tmp_path / "alpha").mkdir()
    datasets.DatasetDict({"train": datasets.load_from_disk(str(data_dir / "alpha"))["train"]}).save_to_disk(
        str(tmp_path / "alpha"))
    monkeypatch.setenv(DATA_DIR_ENV, str(tmp_path))
    with pytest.raises(MissingResourceError, match=r"lacks split\(s\) \['test'\]"):
        load_task(tiny_suite, "alpha")


def test_missing_weights_name_the_fix(tiny_suite, tmp_path, monkeypatch):
    monkeypatch.setenv(CHECKPOINT_ENV, str(tmp_path / "nope.safetensors"))
    with pytest.raises(MissingResourceError) as e:
        load_clip(tiny_suite.backbone)
    assert "nope.safetensors" in str(e.value) and f"set {CHECKPOINT_ENV}=" in str(e.value)
    monkeypatch.delenv(CHECKPOINT_ENV)
    # The shipped suite's `openai` tag, with no hub cache and no network.
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "hub-cache"))
    with pytest.raises(MissingResourceError) as e:
        load_clip(load_suite("clip-vit-b32").backbone)
    msg = str(e.value)
    for needle in ("'openai'", "'ViT-B-32'", "create_model('ViT-B-32', pretrained='openai', quick_gelu=True)",
                   f"{CHECKPOINT_ENV}=/path/to/ViT-B-32-openai.safetensors",
                   "hf download timm/vit_base_patch32_clip_224.openai", "HF_HUB_OFFLINE=1"):
        assert needle in msg, needle


def test_pickled_checkpoint_is_refused(tiny_suite, tmp_path, monkeypatch):
    path = tmp_path / "model.pt"
    path.write_bytes(b"not read")
    monkeypatch.setenv(CHECKPOINT_ENV, str(path))
    with pytest.raises(CheckpointError, match=r"only \.safetensors.*model\.safetensors"):
        load_clip(tiny_suite.backbone)


# -- published checkpoints (recipe.finetuned) ------------------------------------------------------------------
def _hf_tiny(seed: int):
    """A transformers CLIP vision model (+ projection) of TINY_CONFIG's image tower, seeded."""
    transformers = pytest.importorskip("transformers")
    v = TINY_CONFIG["vision_cfg"]
    cfg = transformers.CLIPVisionConfig(
        hidden_size=v["width"], intermediate_size=4 * v["width"], num_hidden_layers=v["layers"],
        num_attention_heads=v["width"] // v["head_width"], image_size=v["image_size"], patch_size=v["patch_size"],
        projection_dim=TINY_CONFIG["embed_dim"], hidden_act="quick_gelu")
    torch.manual_seed(seed)
    return transformers.CLIPVisionModelWithProjection(cfg).eval()


def _write_hub_files(folder, model, base: bool) -> None:
    """As on the hub: a task model is a CLIPVisionModel (transformers 4.x keys, no projection); the base file
    (openai/clip-vit-base-patch32) has the projection (and a text tower, ignored)."""
    state = {k: v.contiguous() for k, v in model.state_dict().items() if base or k.startswith("vision_model.")}
    if base:
        state["text_projection.weight"] = torch.zeros(2, 2)
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, str(folder / "model.safetensors"))


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """A local folder and a Hugging Face hub cache holding the same tiny published checkpoints."""
    root = tmp_path_factory.mktemp("published")
    models = {"_pretrained_": _hf_tiny(0), "alpha": _hf_tiny(1), "beta": _hf_tiny(2)}
    for name, model in models.items():
        _write_hub_files(root / "local" / name, model, base=name == "_pretrained_")
        repo = root / "hub" / f"models--org--{name.strip('_')}"
        _write_hub_files(repo / "snapshots" / f"{name.strip('_')}c0ffee", model, base=name == "_pretrained_")
        (repo / "refs").mkdir()
        (repo / "refs" / "main").write_text(f"{name.strip('_')}c0ffee")
    return root, models


def _published_suite(tmp_path, tiny_checkpoint, source):
    raw = tiny_clip_raw(tiny_checkpoint)
    raw["recipe"]["finetuned"] = source
    return write_suite(tmp_path / "clip-published.yaml", raw)


@pytest.mark.parametrize("where", ["local", "hub"])
def test_published_checkpoints_are_the_zoo_with_pins_recorded(where, published, tiny_suite, tiny_checkpoint,
                                                              tmp_path, monkeypatch):
    from benchmark.context import RunContext
    from benchmark.runner import register_suite
    from benchmark.store import Store

    root, models = published
    if where == "local":
        source = {"source": str(root / "local")}
    else:
        monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(root / "hub"))
        source = {"source": "fusionbench", "repos": {n: f"org/{n.strip('_')}" for n in models}}
    suite = _published_suite(tmp_path, tiny_checkpoint, source)
    zoo = build_zoo(suite, Cache(tmp_path / "cache"), progress=False)
    x = torch.rand(2, 3, 32, 32)
    for name, model in models.items():
        state = zoo.pretrained if name == "_pretrained_" else zoo.finetuned[name]
        with torch.no_grad():  # the zoo's encoder is the published model, projection from the base file
            projection = models["_pretrained_"].visual_projection.weight
            expected = model.vision_model(pixel_values=x).pooler_output @ projection.T
            torch.testing.assert_close(zoo.encoder(state)(x), expected, atol=2e-5, rtol=1e-4)
    pin = zoo.sources["finetuned/alpha"]
    if where == "hub":
        assert pin == {"repo": "org/alpha", "revision": "alphac0ffee"}
    else:
        digest = hashlib.sha256((root / "local" / "alpha" / "model.safetensors").read_bytes()).hexdigest()
        assert pin == {"file": "alpha/model.safetensors", "sha256": digest}
    store = Store(tmp_path / "r.duckdb")
    store.migrate()
    register_suite(store, RunContext(suite, Cache(tmp_path / "cache"), progress=False))
    rows = store.read("SELECT spec FROM models WHERE task = 'alpha' AND role = 'finetuned'")
    specs = [json.loads(s) for s in rows.spec]
    assert specs == [{"name": "finetuned/alpha", **pin}]


def test_published_checkpoint_of_another_backbone_names_the_key(published, tiny_checkpoint, data_dir, tmp_path,
                                                               monkeypatch):
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    root, _models = published
    folder = tmp_path / "wrong"
    for name in ("_pretrained_", "alpha", "beta"):
        (folder / name).mkdir(parents=True)
        state = load_file(str(root / "local" / name / "model.safetensors"))
        if name == "beta":  # one layer short
            state = {k: v for k, v in state.items() if ".layers.1." not in k}
        save_file(state, str(folder / name / "model.safetensors"))
    suite = _published_suite(tmp_path, tiny_checkpoint, {"source": str(folder)})
    with pytest.raises(CheckpointError, match=r"\(beta\): key 'transformer\.resblocks\.1\.[a-z_.0-9]+' of the "
                                              "suite's backbone is missing"):
        build_zoo(suite, Cache(tmp_path / "cache"), progress=False)


def test_published_checkpoints_not_cached_offline_say_how_to_get_them(tiny_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "empty-hub"))
    raw = tiny_clip_raw(tiny_checkpoint)
    raw["tasks"][0]["name"] = "sun397"
    raw["recipe"]["finetune"]["epochs"] = {"sun397": 1, "beta": 1}
    raw["recipe"]["finetuned"] = {"source": "fusionbench", "repos": {"beta": "org/beta"}}
    with pytest.raises(MissingResourceError, match=r"openai/clip-vit-base-patch32 is not in the Hugging Face "
                                                   r"hub cache.*hf download openai/clip-vit-base-patch32.*"
                                                   r"HF_HUB_OFFLINE=1"):
        build_zoo(write_suite(tmp_path / "s.yaml", raw), Cache(tmp_path / "cache"), progress=False)
    raw["tasks"][1]["name"] = "flowers"
    with pytest.raises(MergesecError, match=r"no CLIP ViT-B/32 model for task\(s\) \['flowers'\]"):
        build_zoo(write_suite(tmp_path / "s.yaml", raw), Cache(tmp_path / "cache"), progress=False)


# -- the smoke suite: random ViT-B-32 weights, synthetic data in the tasks' shapes --------------------------------
def test_smoke_suite_is_the_paper_protocol_on_synthetic_data():
    smoke, paper = load_suite("clip-vit-b32-smoke"), load_suite("clip-vit-b32")
    assert smoke.data["source"] == "synthetic" and smoke.data["image_size"] == 224
    assert smoke.backbone.pretrained == "random" and smoke.backbone.model_name == "ViT-B-32"
    assert [(t.name, t.n_classes) for t in smoke.tasks] == [(t.name, t.n_classes) for t in paper.tasks]
    assert smoke.merge_methods == paper.merge_methods and smoke.backdoor == paper.backdoor
    assert smoke.transfer.attacks == paper.transfer.attacks and smoke.transfer.eps == paper.transfer.eps
    assert smoke.recipe["finetune"] == paper.recipe["finetune"] and not smoke.recipe["finetuned"]
    data = load_task(smoke, "sun397")
    x, y = data.test[400 % len(data.test)]
    assert x.shape == (3, 224, 224) and x.min() >= 0 and x.max() <= 1 and int(y) == (400 % len(data.test)) % 397
    assert torch.equal(data.test[3][0], load_task(smoke, "sun397").test[3][0])  # generated, deterministically
    assert torch.equal(data.test.targets, torch.arange(len(data.test)) % 397)


def test_smoke_suite_runs_all_three_tracks_on_cpu(tiny_checkpoint, tmp_path):
    """The clip-vit-b32 smoke path end to end (tiny sizes): random weights, synthetic data, all three tracks."""
    from benchmark import runner
    from benchmark.store import Store

    raw = load_suite("clip-vit-b32-smoke").raw  # `extends` resolved: the whole protocol
    raw["backbone"]["model_name"] = TINY_MODEL
    raw["data"].update(image_size=32, synthetic={"train": 16, "test": 6, "seed": 0})
    raw["tasks"] = [t for t in raw["tasks"] if t["name"] in ("gtsrb", "cars")]  # the adversary and off-task target
    raw["recipe"]["finetune"].update(epochs=1, batch_size=16, warmup_steps=0)
    raw["transfer"].update(attacks=["pgd"], subset_size=3)
    bd = raw["backdoor"]
    # tasks [cars, gtsrb]: the defender injects into gtsrb (task 1), not the off-task target cars
    bd.update(methods=["task_arithmetic"], defenses={"ibvs": {**bd["defenses"]["ibvs"], "inject_task": 1}},
              adversary_task="gtsrb",
              attacks=[{**bd["attacks"][0], "patch_size": 4}])
    suite = write_suite(tmp_path / "smoke-tiny.yaml", raw)
    assert suite.backbone.pretrained == "random" and suite.data["source"] == "synthetic"
    store = Store(tmp_path / "r.duckdb")
    summary = runner.run(suite, ["merge", "transfer", "backdoor"], store, Cache(tmp_path / "cache"),
                         ["task_arithmetic"], progress=False)
    assert summary.units_run == summary.units_total > 0
    merge = store.read("SELECT task, n, clean_acc FROM merge_eval")
    assert sorted(merge.task) == ["cars", "gtsrb"] and set(merge.n) == {6}
    assert len(store.read("SELECT DISTINCT task, surrogate FROM transfer_metrics")) == 2 * 2
    assert store.read("SELECT backdoor_asr FROM backdoor_metrics").backdoor_asr.between(0, 1).all()


def test_docs_paper_scale_numbers_match_the_throughput_benchmark():
    """docs/suites.md quotes the work and disk of one seed that `benchmarks/throughput.py` prints."""
    import importlib.util

    path = SUITE_DIR.parents[1] / "benchmarks" / "throughput.py"
    spec = importlib.util.spec_from_file_location("throughput", path)
    throughput = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(throughput)
    work = throughput.workload(load_suite("clip-vit-b32"))
    docs = " ".join((SUITE_DIR.parents[1] / "docs" / "suites.md").read_text().split())
    assert f"{work['crafting_grads']:,} input gradients to craft" in docs
    assert f"{work['eval_forwards']:,} forwards and {work['eval_grads']:,} input gradients" in docs
    assert work["disk"].replace(" x ", " × ") in docs
    assert "VMI 210" in docs and "{'fgsm': 1, 'pgd': 10, 'mifgsm': 10, 'difgsm': 10, 'tifgsm': 10, 'vmifgsm': 210}" in \
        work["summary"]
