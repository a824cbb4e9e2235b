"""Backdoor track fidelity on the CLIP code path (issue 14): a tiny random open_clip model and tiny synthetic
Hugging Face datasets, as tests/test_clip_suite.py builds them, run through the paper-scale code."""

import pytest
import torch

from benchmark.attacks.backdoor import badmerging as bm
from benchmark.attacks.backdoor import resolve_params
from benchmark.attacks.backdoor.base import BackdoorEnv, get_backdoor_attack
from benchmark.cache import Cache
from benchmark.data import load_task
from benchmark.defenses.fine_pruning import dormant_units, last_mlp
from benchmark.suites import load_suite
from benchmark.tracks.backdoor import _check_inject_tasks
from benchmark.tracks.backdoor_settings import BackdoorTrackError, settings
from benchmark.zoo import ImageClassifier, build_zoo
from tests.test_clip_suite import _offline, data_dir, tiny_checkpoint, tiny_suite  # noqa: F401  (fixtures)

pytestmark = pytest.mark.slow


@pytest.fixture
def env(tiny_suite, tmp_path):  # noqa: F811
    zoo = build_zoo(tiny_suite, Cache(tmp_path / "cache"), progress=False)
    return BackdoorEnv(zoo, lambda t: load_task(tiny_suite, t), Cache(tmp_path / "cache"))


def _clip_off_task_params() -> dict:
    """The shipped clip-vit-b32 off-task entry, resolved as the track resolves it."""
    (s,) = [s for s in settings(load_suite("clip-vit-b32")) if s.attack == "badmerging" and s.variant == "off_task"]
    return resolve_params(get_backdoor_attack("badmerging"), {**s.params, "seed": 0})


def test_off_task_stage1_uses_the_official_crop_and_pgd_targets_over_the_whole_shadow_head(env, monkeypatch):
    p = _clip_off_task_params()
    assert (p["crop_scale_min"], p["crop_scale_max"]) == (0.2, 0.5)  # RandomResizedCrop(0.2-0.5)
    seen = {}

    def crop(x, gen, scale):
        seen["scale"] = scale
        return x

    def pgd(model, x, targets, *a):
        seen["targets"] = targets
        return x

    monkeypatch.setattr(bm, "random_resized_crop", crop)
    monkeypatch.setattr(bm, "pgd_targeted", pgd)
    head = bm.shadow_head(env, "alpha", "beta", 1, 4, seed=0)  # 301 rows: "one" + 300 ImageNet names
    b = env.zoo.suite.backbone
    model = ImageClassifier(env.zoo.encoder(env.zoo.pretrained), head, b.mean, b.std).eval()
    with torch.no_grad():
        pred = model(bm.target_images(env, "beta", 1, 4, 0).repeat(10, 1, 1, 1)).argmax(-1)
    bm.augmented_target_images(env, model, "alpha", "beta", 1, 0, 4, 40, p["crop_scale_min"], p["crop_scale_max"],
                               p["pgd_eps"], p["pgd_step"], p["pgd_steps"])
    t = seen["targets"]
    assert seen["scale"] == (0.2, 0.5)
    assert head.weight.shape[0] == 301 and len(t) == 40
    assert bool((t >= 1).all()) and bool((t <= 300).all()) and bool((t != pred).all())
    # the adversary's own task has 3 classes: the official code draws from all 300 shadow classes
    assert int(t.max()) > 3 and len(set(t.tolist())) > 10


def test_fine_pruning_ranks_units_with_the_suites_quick_gelu(env):
    enc = env.zoo.encoder(env.zoo.pretrained)
    _, fc, act, _ = last_mlp(enc)
    assert type(act).__name__ == "QuickGELU"  # the suite's OpenAI weights run QuickGELU, not GELU
    model = env.zoo.classifier(env.zoo.pretrained, "alpha")
    x = torch.stack([load_task(env.zoo.suite, "alpha").test[i][0] for i in range(6)])
    outs = []
    h = fc.register_forward_hook(lambda _m, _i, o: outs.append(o))
    with torch.no_grad():
        model.encoder = enc
        model(x)
    h.remove()
    o = outs[0].reshape(-1, fc.out_features)
    expected = torch.argsort((o * torch.sigmoid(1.702 * o)).mean(0))[: round(0.3 * fc.out_features)]
    assert dormant_units(model, fc, [x], 0.3, act).tolist() == expected.tolist()


def test_ibvs_never_injects_into_an_off_task_target():
    clip = load_suite("clip-vit-b32")
    rows = settings(clip)
    ibvs = clip.backdoor["defenses"]["ibvs"]
    _check_inject_tasks(clip, {"ibvs": ibvs}, rows)  # the shipped suite: resisc45, not cars
    assert clip.task_names[ibvs["inject_task"]] not in {s.params["target_task"] for s in rows}
    with pytest.raises(BackdoorTrackError, match="target task of an off-task attack"):
        _check_inject_tasks(clip, {"ibvs": {**ibvs, "inject_task": clip.task_names.index("cars")}}, rows)


@pytest.fixture
def no_whole_split(monkeypatch):
    """`tensors` (in every module that imported it) refuses to materialise a whole split; every decoded
    Hugging Face item is counted, by split size."""
    import sys

    from benchmark.data import hf, loader

    real = loader.tensors

    def guarded(ds, indices=None):
        if indices is None or len(indices) >= len(ds):
            raise AssertionError(f"a whole split of {len(ds)} items was materialised")
        return real(ds, indices)

    for module in list(sys.modules.values()):
        if getattr(module, "tensors", None) is real:
            monkeypatch.setattr(module, "tensors", guarded)
    reads: list[int] = []
    item = hf.HFImageDataset.__getitem__
    monkeypatch.setattr(hf.HFImageDataset, "__getitem__", lambda self, i: (reads.append(len(self)), item(self, i))[1])
    return reads


def test_poisoning_and_patch_optimisation_stream_the_split(env, no_whole_split):
    """Issue 15: BadNets poisoning, the on-task patch and the off-task target images never hold the
    adversary's training split: BadNets decodes each training image once per epoch, as it trains on it;
    the patch optimiser decodes only its own batches (and one probe of the channel count)."""
    reads = no_whole_split
    n_train = len(load_task(env.zoo.suite, "alpha").train)
    epochs = env.recipe("alpha")["epochs"]
    naive = get_backdoor_attack("naive")
    naive.build(env, **resolve_params(naive, {"adversary_task": "alpha", "target_task": "alpha",
                                              "target_class": 1, "seed": 0, "patch_size": 4}))
    assert reads == [n_train] * (epochs * n_train)
    reads.clear()
    badmerging = get_backdoor_attack("badmerging")
    p = resolve_params(badmerging, {"adversary_task": "alpha", "target_task": "alpha", "target_class": 1, "seed": 0,
                                    "patch_size": 4, "trigger_steps": 3})
    badmerging.trigger(env, **p)
    pool = int((load_task(env.zoo.suite, "alpha").train.targets != 1).sum())
    assert reads == [n_train] * (1 + 3 * min(128, pool))
    reads.clear()
    assert bm.target_images(env, "beta", 1, 4, 0).shape[0] == 4
    assert len(reads) == 4
