import pytest
import torch

from benchmark.cache import Cache
from benchmark.suites import load_suite
from benchmark.zoo import build_zoo, zoo_report
from benchmark.zoo import zoo as zoo_module


def test_zoo_is_cached_and_deterministic(tiny_suite, tiny_cache, tmp_path, monkeypatch):
    first = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    assert set(first.finetuned) == set(tiny_suite.task_names)
    assert all(set(sd) == set(first.pretrained) for sd in first.finetuned.values())
    assert all(not torch.equal(first.finetuned[t][k], first.pretrained[k])
               for t in tiny_suite.task_names for k in ["conv1.weight"])

    def boom(*a, **k):
        raise AssertionError("a cached zoo must not train again")

    with monkeypatch.context() as m:
        m.setattr(zoo_module, "finetune", boom)
        m.setattr(zoo_module, "pretrain_simclr", boom)
        m.setattr(zoo_module, "fit_probe", boom)
        again = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    assert again.keys == first.keys
    assert all(torch.equal(again.pretrained[k], first.pretrained[k]) for k in first.pretrained)

    fresh = build_zoo(tiny_suite, Cache(tmp_path / "fresh"), progress=False)  # from scratch: same numbers
    for t in tiny_suite.task_names:
        assert all(torch.equal(fresh.finetuned[t][k], first.finetuned[t][k]) for k in first.pretrained)



def test_zoo_fine_tunes_in_workers_are_bitwise_the_serial_ones(tiny_suite, tiny_cache, tmp_path, monkeypatch):
    """`workers=2`: this process fine-tunes every other task, a spawned process the rest; the weights equal a
    serial build's bit for bit."""
    serial = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    calls = []
    original = zoo_module.finetune
    monkeypatch.setattr(zoo_module, "finetune", lambda *a, **k: calls.append(k["desc"]) or original(*a, **k))
    parallel = build_zoo(tiny_suite, Cache(tmp_path / "parallel"), progress=False, workers=2)
    names = tiny_suite.task_names
    assert calls == [f"fine-tune {t}" for t in names[::2]]  # the others were trained in the worker process
    assert parallel.keys == serial.keys
    for t in names:
        assert all(torch.equal(parallel.finetuned[t][k], serial.finetuned[t][k]) for k in serial.pretrained)

def test_cache_files_are_safetensors_only(tiny_suite, tiny_cache):
    build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    files = [p for p in tiny_cache.rglob("*") if p.is_file()]
    # weights only as safetensors; .json sidecars and empty .lock files (the build locks) hold no weights
    assert files and {p.suffix for p in files} <= {".safetensors", ".json", ".lock"}
    assert all(p.stat().st_size == 0 for p in files if p.suffix == ".lock")


@pytest.mark.slow
def test_digits_quality_bars(digits_cache):
    """The issue's bars: every fine-tuned model >= 90%; the pretrained encoder clearly below."""
    rows = zoo_report(build_zoo(load_suite("digits"), Cache(digits_cache), progress=False))
    ft = [r["finetuned_acc"] for r in rows]
    pre = [r["pretrained_acc"] for r in rows]
    assert min(ft) >= 0.90, rows
    assert sum(ft) / len(ft) - sum(pre) / len(pre) >= 0.15, rows


def test_foreach_adamw_is_bitwise_the_single_tensor_step(tiny_suite, tiny_cache, monkeypatch):
    """Fine-tuning and SimCLR pretraining take AdamW's multi-tensor step (`train.FOREACH`) for speed: the
    weights must equal those of the single-tensor step bit for bit (so no cached or stored number moves)."""
    from benchmark.data import load_pretrain_images, load_task
    from benchmark.zoo import train
    from benchmark.zoo.backbone import build_encoder
    from benchmark.zoo.model import ImageClassifier
    from benchmark.zoo.zoo import finetune_recipe

    zoo = build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    b, task = tiny_suite.backbone, tiny_suite.task_names[1]
    images = load_pretrain_images(tiny_suite)[:128]

    def train_both() -> list[dict]:
        enc = build_encoder(b)
        enc.load_state_dict(zoo.pretrained)
        model = ImageClassifier(enc, zoo.heads[task], b.mean, b.std)
        train.finetune(model, load_task(tiny_suite, task).train, finetune_recipe(tiny_suite, task), 3, progress=False)
        enc = build_encoder(b)
        enc.load_state_dict(zoo.pretrained)
        cfg = {**tiny_suite.recipe["pretrain"], "batch_size": 64}
        pretrained = train.pretrain_simclr(enc, images, b.mean, b.std, cfg, 3, False)
        return [model.encoder.state_dict(), pretrained.state_dict()]

    assert train.FOREACH
    fast = train_both()
    monkeypatch.setattr(train, "FOREACH", False)
    slow = train_both()
    for f, s in zip(fast, slow, strict=True):
        assert all(torch.equal(f[k], s[k]) for k in s)
    assert not torch.equal(fast[0]["conv1.weight"], zoo.pretrained["conv1.weight"])  # it did train


@pytest.mark.parametrize("with_adapter", [False, True])
def test_classifier_is_classify_of_embed_bitwise(tiny_suite, with_adapter):
    """`forward` = `classify(embed(x))` and `features` = the adapter on `embed(x)`, bit for bit, and both are
    the encoder -> adapter -> head composition on normalised inputs written out by hand."""
    from benchmark.zoo import ClassificationHead, ImageClassifier
    from benchmark.zoo.backbone import build_encoder

    torch.manual_seed(0)
    b = tiny_suite.backbone
    width = b.config["output_dim"]
    adapter = torch.nn.Linear(width, width) if with_adapter else None
    model = ImageClassifier(build_encoder(b), ClassificationHead(width, 3), b.mean, b.std, adapter).eval()
    x = torch.rand(5, 3, b.config["image_size"], b.config["image_size"])
    with torch.no_grad():
        f = model.encoder((x - torch.tensor(b.mean).view(1, -1, 1, 1)) / torch.tensor(b.std).view(1, -1, 1, 1))
        adapted = adapter(f) if adapter is not None else f
        assert torch.equal(model.embed(x), f)
        assert torch.equal(model.features(x), adapted)
        assert torch.equal(model(x), model.classify(model.embed(x)))
        assert torch.equal(model(x), model.head(adapted))
