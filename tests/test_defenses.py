"""Defenses: the registry's rules, `defended_merge`'s two stages, and the properties of the built-ins.

IBVS is checked as the published algorithm: the subtracted vector is exactly the defender's own Backdoor
Vector (white-square trigger, trained on its own data), scaled; it is the same whatever the contributors
uploaded, and nothing about the attacker (trigger, target, identity) can reach a defense through the API.
"""

import dataclasses
import inspect

import pytest
import torch
from torch.utils.data import TensorDataset

from benchmark.attacks.backdoor import backdoor_vector
from benchmark.data import load_task
from benchmark.defenses import (
    CleanedInputs,
    DefenseError,
    DefenseInputs,
    defended_merge,
    get_defense,
    list_defenses,
    register_defense,
)
from benchmark.defenses import registry as defense_registry
from benchmark.defenses.fine_pruning import last_mlp
from benchmark.errors import UnknownNameError
from benchmark.merging import MergeContext, MergeOutput, merge
from benchmark.zoo.train import finetune
from tests.test_backdoor import make_zoo, tiny_backdoor_suite


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    suite = tiny_backdoor_suite(tmp_path_factory.mktemp("def"))
    zoo = make_zoo(suite)
    tasks = suite.task_names
    dev = []
    for t in tasks:  # a small dev split keeps the defender's fine-tunes to a second
        x, y = load_task(suite, t).dev.tensors
        dev.append(TensorDataset(x[:64], y[:64]))
    def factory(sd, i, adapter=None):
        return zoo.classifier(sd, tasks[i], adapter)

    ctx = MergeContext(tasks=tasks, classifier_factory=factory, dev_data=dev, seed=0)
    return suite, zoo, tasks, ctx


@pytest.fixture
def scratch(monkeypatch):
    """Registrations made in a test disappear after it."""
    monkeypatch.setattr(defense_registry.DEFENSES, "_items", dict(defense_registry.DEFENSES._items))


def _models(zoo, tasks):
    return [zoo.finetuned[t] for t in tasks]


def test_builtins_registered():
    assert {"ibvs", "fine_pruning"} <= set(list_defenses())
    assert get_defense("ibvs").stage == "merge" and get_defense("fine_pruning").stage == "post"
    with pytest.raises(UnknownNameError, match="valid defenses"):
        get_defense("nope")


def test_registration_rules(scratch):
    with pytest.raises(DefenseError, match="stage"):
        register_defense("d1", stage="pre")(lambda inputs: None)
    with pytest.raises(DefenseError, match="signature"):
        register_defense("d2", stage="post")(lambda inputs: None)
    with pytest.raises(DefenseError, match="unknown needs"):
        register_defense("d3", stage="merge", needs=("trigger",))(lambda inputs: None)
    with pytest.raises(DefenseError, match="not 'none'"):
        register_defense("none", stage="merge")(lambda inputs: None)
    with pytest.raises(DefenseError, match="no default"):
        register_defense("d4", stage="merge")(lambda inputs, k: None)

    @register_defense("d5", stage="merge", hparams={"k": 1.0})
    def d5(inputs, k):
        return None

    assert get_defense("d5").source.startswith("plugin:")
    with pytest.raises(DefenseError, match="already registered"):
        register_defense("d5", stage="merge")(lambda inputs: None)


def test_none_is_plain_merging(setting):
    _, zoo, tasks, ctx = setting
    out = defended_merge("none", "task_arithmetic", zoo.pretrained, _models(zoo, tasks), ctx, {"scaling_coef": 0.3})
    ref = merge("task_arithmetic", zoo.pretrained, _models(zoo, tasks), scaling_coef=0.3)
    assert all(torch.equal(out.state_dict[k], ref[k]) for k in ref) and out.adapters == [None] * len(tasks)


def test_merge_stage_cleaned_inputs_are_merged_by_the_method(setting, scratch):
    _, zoo, tasks, ctx = setting

    @register_defense("drop_last", stage="merge")
    def drop_last(inputs):
        """Replace the last contributor by the pretrained model."""
        return CleanedInputs(inputs.pretrained, [*inputs.finetuned[:-1], inputs.pretrained])

    out = defended_merge("drop_last", "task_arithmetic", zoo.pretrained, _models(zoo, tasks), ctx)
    ref = merge("task_arithmetic", zoo.pretrained, [*_models(zoo, tasks)[:-1], zoo.pretrained])
    assert all(torch.allclose(out.state_dict[k], ref[k]) for k in ref)


def test_post_stage_receives_the_merged_model_and_output_is_checked(setting, scratch):
    _, zoo, tasks, ctx = setting
    seen = {}

    @register_defense("shift", stage="post", hparams={"delta": 0.5})
    def shift(merged, inputs, delta):
        seen["merged"] = {k: v.clone() for k, v in merged.state_dict.items()}
        return {k: v + delta for k, v in merged.state_dict.items()}

    out = defended_merge("shift", "weight_averaging", zoo.pretrained, _models(zoo, tasks), ctx,
                         defense_hparams={"delta": 0.25})
    ref = merge("weight_averaging", zoo.pretrained, _models(zoo, tasks))
    assert all(torch.equal(seen["merged"][k], ref[k]) for k in ref)
    assert all(torch.allclose(out.state_dict[k], ref[k] + 0.25) for k in ref)
    with pytest.raises(DefenseError, match="no hyperparameter"):
        defended_merge("shift", "weight_averaging", zoo.pretrained, _models(zoo, tasks), ctx,
                       defense_hparams={"delat": 1.0})

    @register_defense("broken", stage="post")
    def broken(merged, inputs):
        return {k: v for k, v in list(merged.state_dict.items())[1:]}

    with pytest.raises(DefenseError, match="missing key"):
        defended_merge("broken", "weight_averaging", zoo.pretrained, _models(zoo, tasks), ctx)


def test_needs_are_enforced(setting):
    _, zoo, tasks, _ = setting
    with pytest.raises(DefenseError, match="needs dev_data"):
        defended_merge("ibvs", "task_arithmetic", zoo.pretrained, _models(zoo, tasks), MergeContext(tasks=tasks))


def test_no_attack_information_reaches_a_defense():
    fields = {f.name for f in dataclasses.fields(DefenseInputs)}
    assert fields == {"pretrained", "finetuned", "method", "method_hparams", "context", "merge",
                      "finetune_recipe", "cache", "memo"}
    assert {f.name for f in dataclasses.fields(MergeContext)} == {
        "pretrained", "finetuned", "tasks", "classifier_factory", "dev_data", "seed"}
    for fn in (defended_merge, get_defense("ibvs").fn):
        names = set(inspect.signature(fn).parameters)
        assert not {n for n in names if "trigger" in n or "attack" in n or "adversary" in n}, names


def test_ibvs_subtracts_exactly_its_own_scaled_backdoor_vector(setting):
    suite, zoo, tasks, ctx = setting
    recipe = {**suite.recipe["finetune"], "epochs": 1}
    hp = {"scale": 0.7, "inject_task": 1, "target_class": 0, "patch_size": 3, "seed": 0}
    kw = dict(context=ctx, method_hparams={"scaling_coef": 0.3}, defense_hparams=hp, finetune_recipe=recipe)
    models = _models(zoo, tasks)
    merged = merge("task_arithmetic", zoo.pretrained, models, scaling_coef=0.3)
    out = defended_merge("ibvs", "task_arithmetic", zoo.pretrained, models, **kw).state_dict

    # the defender's BV, rebuilt independently: white square top-left, class 0 of task 1, its own dev data
    x, y = ctx.dev_data[1].tensors
    xp, yp = x.clone(), y.clone()  # BadNets: a seeded 20% of the images get the white 3x3 square, label 0
    idx = torch.randperm(len(y), generator=torch.Generator().manual_seed(0))[: round(0.2 * len(y))]
    xp[idx, :, :3, :3], yp[idx] = 1.0, 0

    def ft(xs, ys):
        m = zoo.classifier(zoo.pretrained, tasks[1])
        m.encoder.requires_grad_(True)
        return finetune(m, TensorDataset(xs, ys), recipe, 0, progress=False).encoder.state_dict()

    # the defender's warm-up is capped at 25% of its own steps (1 epoch x 1 batch of 64 here: no warm-up)
    recipe = {**recipe, "warmup_steps": min(recipe["warmup_steps"], int(0.25 * 1 * -(-len(y) // recipe["batch_size"])))}
    bv = backdoor_vector(ft(xp, yp), ft(x, y))
    assert sum(float(v.abs().sum()) for v in bv.values()) > 0
    for k in merged:
        assert torch.allclose(out[k].double(), merged[k].double() - 0.7 * bv[k], atol=1e-6), k

    # the same vector is subtracted whatever the contributors uploaded (it never looks at them)
    other = [{k: v + 0.1 for k, v in m.items()} for m in models]
    merged2 = merge("task_arithmetic", zoo.pretrained, other, scaling_coef=0.3)
    out2 = defended_merge("ibvs", "task_arithmetic", zoo.pretrained, other, **kw).state_dict
    for k in merged:
        assert torch.allclose(out2[k] - merged2[k], out[k] - merged[k], atol=1e-6)


def test_fine_pruning_zeroes_dormant_units(setting):
    _, zoo, tasks, ctx = setting
    out = defended_merge("fine_pruning", "task_arithmetic", zoo.pretrained, _models(zoo, tasks), ctx,
                         defense_hparams={"prune_ratio": 0.25, "epochs": 1})
    assert isinstance(out, MergeOutput)
    name, fc, _, _ = last_mlp(zoo.encoder(zoo.pretrained))
    w = out.state_dict[f"{name}.c_fc.weight"]
    dead = (w.abs().sum(1) == 0) & (out.state_dict[f"{name}.c_fc.bias"] == 0)
    assert int(dead.sum()) == round(0.25 * fc.out_features)
    assert (out.state_dict[f"{name}.c_proj.weight"][:, dead] == 0).all()



def test_fine_pruning_foreach_step_is_bitwise_the_single_tensor_one(setting, monkeypatch):
    """Fine-pruning's fine-tune takes AdamW's multi-tensor step (`benchmark.zoo.train.FOREACH`): the defended
    weights equal the single-tensor step's bit for bit."""
    from benchmark.defenses import fine_pruning

    _, zoo, tasks, ctx = setting

    def run():
        return defended_merge("fine_pruning", "task_arithmetic", zoo.pretrained, _models(zoo, tasks), ctx,
                              defense_hparams={"prune_ratio": 0.25, "epochs": 1}).state_dict

    assert fine_pruning.FOREACH
    fast = run()
    monkeypatch.setattr(fine_pruning, "FOREACH", False)
    slow = run()
    assert all(torch.equal(fast[k], slow[k]) for k in slow)

def test_ibvs_defender_trains_beyond_the_warm_up_on_the_clip_suite():
    from benchmark.defenses.ibvs import defender_recipe
    from benchmark.suites import load_suite
    from benchmark.zoo.zoo import task_recipe

    clip = load_suite("clip-vit-b32")
    task = clip.task_names[clip.backdoor["defenses"]["ibvs"]["inject_task"]]
    recipe = task_recipe(clip.recipe["finetune"], task)
    n_dev = 1890  # 10% of RESISC45's 18,900 training images (the suite's dev split)
    steps = recipe["epochs"] * -(-n_dev // recipe["batch_size"])
    assert recipe["warmup_steps"] >= steps  # the contributors' warm-up alone would cover every defender step
    cfg = defender_recipe(recipe, n_dev, 0.25)
    assert 0 < cfg["warmup_steps"] <= 0.25 * steps and cfg["epochs"] == recipe["epochs"]
    assert defender_recipe({**recipe, "warmup_steps": 3}, n_dev, 0.25)["warmup_steps"] == 3  # short ones kept
