"""The transfer track: metric definitions, CKA, the attack wrappers, and the no-re-attack property."""

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch import nn

import benchmark.attacks.transfer as attacks_mod
from benchmark import runner
from benchmark.attacks import (
    ATTACKS,
    TransferAttack,
    get_attack,
    list_attacks,
    make_attack,
    quantize,
    ti_kernel_length,
    to_float,
)
from benchmark.cache import Cache
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.metrics import (
    aasr,
    aggregate,
    attack_success_rate,
    counted_mask,
    gradient_cosine,
    linear_cka,
    metrics_from_examples,
    relative_asr,
    setting_metrics,
)
from benchmark.results import track_table
from benchmark.store import Store
from tests.conftest import tiny_suite_raw, write_suite

EPS = 8 / 255
PROTOCOL_ATTACKS = ["fgsm", "pgd", "mifgsm", "difgsm", "tifgsm", "vmifgsm"]


# -- metric definitions ---------------------------------------------------------------------------------------


def _flags(s: str) -> np.ndarray:
    return np.array([c == "1" for c in s])


def test_setting_metrics_on_hand_made_flags():
    sc, tc = _flags("11110101"), _flags("11101101")
    sa, ta = _flags("00100100"), _flags("01111101")
    assert counted_mask(sc, tc).tolist() == [c == "1" for c in "11100101"]
    m = setting_metrics(sc, tc, sa, ta)
    # counted = {0, 1, 2, 5, 7}; the surrogate stays right on 2 and 5 -> 3/5 fooled; the target stays right
    # on 1, 2, 5, 7 -> 1/5 fooled
    assert m["n"] == 5 and m["n_subset"] == 8
    assert m["clean_acc_surrogate"] == 6 / 8 and m["clean_acc_target"] == 6 / 8
    assert m["asr_whitebox"] == pytest.approx(3 / 5)
    assert m["asr_transfer"] == pytest.approx(1 / 5)
    assert m["relative_asr"] == pytest.approx(1 / 3)
    # all-samples variants: fooled among all 8, whatever the clean prediction was
    assert m["asr_whitebox_all"] == pytest.approx(6 / 8)
    assert m["asr_transfer_all"] == pytest.approx(2 / 8)


def test_metrics_undefined_cases_are_nan():
    none = setting_metrics(_flags("0011"), _flags("1100"), _flags("0000"), _flags("0000"))
    assert none["n"] == 0 and math.isnan(none["asr_whitebox"]) and math.isnan(none["asr_transfer"])
    assert math.isnan(none["relative_asr"])
    assert none["asr_whitebox_all"] == 1.0  # the all-samples variant is still defined
    robust = setting_metrics(_flags("11"), _flags("11"), _flags("11"), _flags("01"))
    assert robust["asr_whitebox"] == 0 and robust["asr_transfer"] == 0.5 and math.isnan(robust["relative_asr"])
    assert math.isnan(relative_asr(0.3, 0.0)) and relative_asr(0.3, 0.6) == pytest.approx(0.5)
    assert attack_success_rate(_flags("0101"), _flags("0000")) != attack_success_rate(_flags("0101"))
    with pytest.raises(TypeError):
        attack_success_rate(np.array([0, 1]))
    with pytest.raises(ValueError):
        setting_metrics(_flags("1"), _flags("11"), _flags("11"), _flags("11"))


def test_metrics_from_example_rows_match():
    df = pd.DataFrame({"surrogate_clean_correct": _flags("11110101"), "target_clean_correct": _flags("11101101"),
                       "surrogate_adv_correct": _flags("00100100"), "target_adv_correct": _flags("01111101")})
    assert metrics_from_examples(df) == setting_metrics(*(df[c].to_numpy() for c in df.columns))


def test_aasr_and_aggregate():
    assert aasr([0.2, float("nan"), 0.4]) == pytest.approx(0.3) and math.isnan(aasr([float("nan")]))
    df = pd.DataFrame({
        "method": ["a", "a", "a", "b"], "surrogate": ["finetuned"] * 4,
        "asr_whitebox": [0.8, 0.4, 0.0, 1.0], "asr_transfer": [0.4, 0.4, 0.3, 0.9],
        "relative_asr": [0.5, 1.0, float("nan"), 0.9], "asr_transfer_all": [0.5] * 4,
        "clean_acc_target": [0.9] * 4, "clean_acc_surrogate": [1.0] * 4, "grad_cosine": [0.1, 0.3, 0.2, 0.0],
        "cka": [0.5] * 4})
    out = aggregate(df, ["surrogate", "method"]).set_index("method")
    assert out.loc["a", "n_settings"] == 3
    assert out.loc["a", "aasr_whitebox"] == pytest.approx(0.4)
    assert out.loc["a", "aasr_transfer"] == pytest.approx(1.1 / 3)
    assert out.loc["a", "relative_asr_mean"] == pytest.approx(0.75)  # NaN setting skipped
    assert out.loc["a", "relative_aasr"] == pytest.approx((1.1 / 3) / 0.4)
    assert out.loc["b", "relative_aasr"] == pytest.approx(0.9)
    assert out.loc["a", "grad_cosine"] == pytest.approx(0.2)


# -- diagnostics ----------------------------------------------------------------------------------------------


def _cka_reference(x: np.ndarray, y: np.ndarray) -> float:
    """CKA via centred Gram matrices (HSIC form), independent of the feature-space formula under test."""
    n = len(x)
    h = np.eye(n) - np.ones((n, n)) / n
    k, l_ = h @ x @ x.T @ h, h @ y @ y.T @ h
    return float((k * l_).sum() / np.sqrt((k * k).sum() * (l_ * l_).sum()))


def test_linear_cka_properties():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 12))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-10)
    q, _ = np.linalg.qr(rng.normal(size=(12, 12)))
    assert linear_cka(x, 3.7 * x @ q) == pytest.approx(1.0, abs=1e-10)  # orthogonal + isotropic scaling
    assert linear_cka(x, x @ q + 5.0) == pytest.approx(1.0, abs=1e-10)  # translation (centred)
    assert linear_cka(x, x * np.linspace(0.1, 10, 12)) < 0.99  # not invariant to anisotropic scaling
    big = rng.normal(size=(4000, 6))
    assert linear_cka(big, rng.normal(size=(4000, 5))) < 0.02  # independent features -> near 0
    y = x[:, :5] + 0.5 * rng.normal(size=(200, 5))
    assert linear_cka(x, y) == pytest.approx(_cka_reference(x, y), rel=1e-9)
    assert linear_cka(torch.tensor(x, dtype=torch.float32), torch.tensor(y)) == pytest.approx(
        _cka_reference(x, y), rel=1e-5)
    assert math.isnan(linear_cka(np.ones((10, 3)), x[:10]))
    with pytest.raises(ValueError):
        linear_cka(x, x[:10])


def test_gradient_cosine():
    g = torch.randn(6, 3, 4, 4)
    assert gradient_cosine(g, g) == pytest.approx(1.0)
    assert gradient_cosine(g, -2 * g) == pytest.approx(-1.0)
    mixed = torch.cat([g[:3], -g[3:]])
    mask = np.array([True, True, True, False, False, False])
    assert gradient_cosine(g, mixed, mask) == pytest.approx(1.0)
    assert gradient_cosine(g, mixed) == pytest.approx(0.0, abs=1e-9)
    assert math.isnan(gradient_cosine(g, g, np.zeros(6, bool)))


# -- attacks --------------------------------------------------------------------------------------------------


class TinyNet(nn.Module):
    """A small conv net on [0, 1] inputs, its parameters frozen like the zoo's classifiers."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 16 * 16, 5))

    def forward(self, x):
        return self.net((x - 0.5) / 0.5)


@pytest.fixture(scope="module")
def tiny_model_data():
    model = TinyNet().eval().requires_grad_(False)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(24, 3, 16, 16, generator=g)
    x[:4] = 0.0  # pixels at the box boundary must stay inside [0, 1]
    x[4:8] = 1.0
    with torch.no_grad():
        y = model(x).argmax(-1)  # labels the model gets right: the loss starts low
    return model, x, y


def test_registry_lists_the_protocol_attacks():
    rows = {r["attack"]: r for r in list_attacks()}
    assert set(PROTOCOL_ATTACKS) <= set(rows)
    assert rows["pgd"]["torchattacks"] == "torchattacks.PGD" and "Madry" in rows["pgd"]["paper"]
    assert all(r["paper"] for r in rows.values())
    assert make_attack("pgd", EPS, 10).params()["random_start"] is False
    assert make_attack("mifgsm", EPS, 10).params()["alpha"] == pytest.approx(EPS / 10)
    assert make_attack("tifgsm", EPS, 10, len_kernel=5).params()["len_kernel"] == 5
    with pytest.raises(UnknownNameError, match="pgd"):
        get_attack("cw")
    with pytest.raises(MergesecError, match="valid"):
        make_attack("pgd", EPS, 10, momentum=3)


def test_wrong_torchattacks_version_says_how_to_fix(monkeypatch):
    import torchattacks

    monkeypatch.setattr(torchattacks, "__version__", "3.4.0")
    with pytest.raises(MergesecError, match=r"pip install --no-deps torchattacks==3\.5\.1"):
        attacks_mod._import_torchattacks()


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_attack_stays_in_budget_and_raises_loss(name, tiny_model_data):
    model, x, y = tiny_model_data
    attack = make_attack(name, EPS, 10)
    adv8 = attack.craft(model, x, y, seed=0)
    assert adv8.shape == x.shape and adv8.dtype == torch.uint8  # an 8-bit image
    adv = to_float(adv8)
    assert (adv - x).abs().max() <= EPS + 1e-6
    assert adv.min() >= 0 and adv.max() <= 1
    assert not torch.equal(adv, x)
    with torch.no_grad():
        assert F.cross_entropy(model(adv), y) > F.cross_entropy(model(x), y)
    assert torch.equal(adv8, attack.craft(model, x, y, seed=0))  # seeded: reproducible, random attacks included
    assert not model.training


def test_attack_rejects_unnormalised_inputs(tiny_model_data):
    model, x, y = tiny_model_data
    with pytest.raises(MergesecError, match=r"\[0, 1\]"):
        make_attack("fgsm", EPS, 10).craft(model, (x - 0.5) / 0.5, y, seed=0)


# -- the track end to end: a new method runs no attack --------------------------------------------------------


@pytest.fixture(scope="module")
def transfer_suite(tmp_path_factory):
    raw = tiny_suite_raw()
    raw["transfer"].update(attacks=PROTOCOL_ATTACKS, subset_size=32)
    return write_suite(tmp_path_factory.mktemp("transfer") / "digits-tiny-transfer.yaml", raw)


@pytest.fixture(scope="module")
def two_methods(transfer_suite, tiny_cache, tmp_path_factory):
    """The track run for one method (counting attack runs), then for a second one with every attack made
    to raise."""
    import torchattacks

    # The zoo is shared, but not the adversarial sets: other tests may already have crafted some of them
    # (their keys do not depend on the suite), and this test counts every attack run.
    own = tmp_path_factory.mktemp("own-cache")
    shutil.copytree(tiny_cache, own, dirs_exist_ok=True,
                    ignore=lambda d, names: [n for n in names if n in ("adversarial", "surrogate_eval")])
    suite, cache = transfer_suite, Cache(own)
    store = Store(tmp_path_factory.mktemp("db") / "t.duckdb")
    crafted = []
    real_craft = TransferAttack.craft

    def counting_craft(self, *a, **k):
        crafted.append(self.name)
        return real_craft(self, *a, **k)

    def no_attack(*a, **k):
        raise AssertionError("an attack ran while evaluating a new merging method")

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(TransferAttack, "craft", counting_craft)
        first = runner.run(suite, ["transfer"], store, cache, ["weight_averaging"], progress=False)
        before = store.read("SELECT * FROM transfer_metrics ORDER BY ALL")
        n_crafted = len(crafted)
        mp.setattr(TransferAttack, "craft", no_attack)
        mp.setattr(torchattacks.attack.Attack, "__call__", no_attack)
        second = runner.run(suite, ["transfer"], store, cache, ["task_arithmetic"], progress=False)
    return {"store": store, "first": first, "second": second, "before": before, "crafted": crafted[:n_crafted],
            "crafted_after": len(crafted) - n_crafted}


@pytest.mark.slow
def test_new_method_runs_no_attack(transfer_suite, two_methods):
    suite, store = transfer_suite, two_methods["store"]
    n_tasks, n_settings = len(suite.task_names), len(suite.task_names) * 2 * len(PROTOCOL_ATTACKS)
    crafted = two_methods["crafted"]
    assert two_methods["first"].units_run == n_settings
    assert sorted(set(crafted)) == sorted(PROTOCOL_ATTACKS) and len(crafted) == n_settings  # once per setting
    assert two_methods["second"].units_run == n_settings and two_methods["crafted_after"] == 0

    df = store.read("SELECT * FROM transfer_metrics ORDER BY ALL")
    assert len(df) == 2 * n_settings
    keys = ["method", "task", "attack", "surrogate", "seed"]
    assert not df.duplicated(keys).any()
    pd.testing.assert_frame_equal(df[df.method == "weight_averaging"].reset_index(drop=True),
                                  two_methods["before"])
    ex = store.read("SELECT * FROM transfer_examples")
    assert len(ex) == 2 * n_settings * 32 and not ex.duplicated([*keys, "example_id"]).any()

    # the adversarial examples are shared: the surrogate's per-example outcomes are the same for both methods
    sur = ex.pivot_table(index=["task", "attack", "surrogate", "example_id"], columns="method",
                         values="surrogate_adv_correct", aggfunc="first")
    assert (sur.weight_averaging == sur.task_arithmetic).all()
    # stored metrics are exactly recomputable from the stored per-example flags
    for _, row in df.iterrows():
        rows = ex[(ex[keys] == row[keys]).all(axis=1)]
        m = metrics_from_examples(rows)
        assert m["n"] == row.n == int(rows.counted.sum())
        for k in ("asr_whitebox", "asr_transfer", "relative_asr", "asr_transfer_all", "clean_acc_target"):
            assert m[k] == pytest.approx(row[k], nan_ok=True)
    assert df.eps.eq(suite.transfer.eps).all() and df.n_subset.eq(32).all()
    assert df.cka.between(0, 1 + 1e-9).all() and df.grad_cosine.between(-1, 1).all()
    # a fine-tuned surrogate is itself a strong white-box attacker on the tiny zoo
    assert df.asr_whitebox.mean() > 0.3

    table = track_table(store, suite, "transfer")
    assert set(table.method) == {"weight_averaging", "task_arithmetic"} and set(table.surrogate) == {
        "finetuned", "pretrained"}
    assert {"relative_asr_mean", "relative_aasr", "aasr_transfer", "aasr_whitebox"} <= set(table.columns)
    assert (table.n_settings == n_tasks * len(PROTOCOL_ATTACKS)).all()


@pytest.mark.slow
def test_cli_shows_transfer_results_and_attacks(transfer_suite, two_methods, tmp_path):
    path = tmp_path / "suite.yaml"
    write_suite(path, transfer_suite.raw)
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "results", "--track", "transfer", "--suite",
                          str(path), "--db", str(two_methods["store"].path), "--format", "json"],
                         capture_output=True, text=True, check=True)
    rows = json.loads(out.stdout)
    assert {r["method"] for r in rows} == {"weight_averaging", "task_arithmetic"} and "relative_aasr" in rows[0]
    out = subprocess.run([sys.executable, "-m", "benchmark.cli", "list", "attacks", "--format", "json"],
                         capture_output=True, text=True, check=True)
    assert set(PROTOCOL_ATTACKS) <= {r["attack"] for r in json.loads(out.stdout.split("\n", 1)[1])}


# -- the literature's attack settings (Transfer track 2.0) ------------------------------------------------------


def test_attacks_use_the_literature_settings():
    """DIM and TIM on MI-FGSM (decay 1.0), VMI with 20 neighbours within 1.5 eps, as the papers and
    TransferAttack run them; TI's kernel scales with the image (15 at 224 px)."""
    assert [ti_kernel_length(n) for n in (16, 32, 64, 224, 299)] == [3, 3, 5, 15, 21]
    di = make_attack("difgsm", EPS, 10, image_size=16).params()
    assert (di["decay"], di["diversity_prob"], di["resize_rate"]) == (1.0, 0.5, 0.9)
    ti = make_attack("tifgsm", EPS, 10, image_size=224).params()
    assert (ti["decay"], ti["len_kernel"], ti["nsig"], ti["kernel_name"], ti["diversity_prob"]) == (
        1.0, 15, 3, "gaussian", 0.0)
    assert make_attack("tifgsm", EPS, 10, image_size=16).params()["len_kernel"] == 3
    vmi = make_attack("vmifgsm", EPS, 10).params()
    assert (vmi["decay"], vmi["N"], vmi["beta"]) == (1.0, 20, 1.5)
    assert make_attack("mifgsm", EPS, 10).params()["decay"] == 1.0
    with pytest.raises(MergesecError, match="8-bit"):
        make_attack("fgsm", 0.4 / 255, 10)


def _ti_mi_fgsm_reference(model, x, y, eps, steps, klen, nsig=3):
    """TI-MI-FGSM from the papers (Dong et al. 2018, 2019), written independently of torchattacks: a
    normalised Gaussian kernel over [-nsig, nsig], gradient convolved per channel, L1-normalised, momentum 1."""
    t = np.linspace(-nsig, nsig, klen)
    k = np.exp(-t ** 2 / 2)
    k = np.outer(k, k)
    w = torch.tensor(k / k.sum(), dtype=torch.float32).expand(3, 1, klen, klen)
    alpha, g, adv = eps / steps, torch.zeros_like(x), x.clone()
    for _ in range(steps):
        adv.requires_grad_(True)
        grad = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)[0]
        grad = F.conv2d(grad, w, padding=klen // 2, groups=3)
        g = g + grad / grad.abs().mean(dim=(1, 2, 3), keepdim=True)
        adv = (x + (adv.detach() + alpha * g.sign() - x).clamp(-eps, eps)).clamp(0, 1)
    return adv.detach()


@pytest.mark.parametrize("image_size", [16, 64])
def test_tifgsm_matches_an_independent_ti_mi_fgsm(image_size, tiny_model_data):
    model, x, y = tiny_model_data
    attack = make_attack("tifgsm", EPS, 10, image_size=image_size)
    ours = attack.build(model)(x, y)
    ref = _ti_mi_fgsm_reference(model, x, y, EPS, 10, ti_kernel_length(image_size))
    assert ((ours - ref).abs() > 1e-5).float().mean() < 1e-3  # equal but for rare sign flips of ~0 gradients
    assert not torch.equal(ref, _ti_mi_fgsm_reference(model, x, y, EPS, 10, 1))  # the kernel matters


def test_disjoint_subsets_attack_every_test_image_once_and_refuse_a_missing_block(tiny_cache, tmp_path):
    """`transfer.subsets: disjoint` (digits since 2.3): seed s takes block s of one permutation, so the seeds'
    subsets never share an image and digits' three seeds of 99 cover its 297 test images; a seed whose block
    does not exist, or an unknown design, is refused before any unit runs, with the fix."""
    from benchmark.context import RunContext
    from benchmark.suites import load_suite
    from benchmark.tracks.transfer import validate
    from benchmark.tracks.transfer_cache import transfer_subset

    digits = load_suite("digits")
    spec, n_test = digits.transfer, digits.data["splits"]["test"]
    assert spec.subsets == "disjoint" and spec.subset_size * len(spec.seeds) == n_test
    blocks = [transfer_subset(n_test, spec.subset_size, s, "disjoint") for s in spec.seeds]
    assert all(torch.equal(b, b.sort().values) and len(b) == spec.subset_size for b in blocks)
    assert torch.equal(torch.cat(blocks).sort().values, torch.arange(n_test))
    assert torch.equal(blocks[1], transfer_subset(n_test, spec.subset_size, 1, "disjoint"))  # fixed
    # the independent design (every other suite): each seed its own draw, and two draws share images
    a, b = (transfer_subset(n_test, 200, s) for s in (0, 1))
    assert len(set(a.tolist()) & set(b.tolist())) > 0 and not torch.equal(a, b)
    with pytest.raises(MergesecError, match=r"use seeds 0 to 2 or a smaller transfer\.subset_size"):
        transfer_subset(n_test, spec.subset_size, 3, "disjoint")

    def ctx(**transfer):
        raw = tiny_suite_raw()
        raw["transfer"].update(subset_size=40, **transfer)
        return RunContext(write_suite(tmp_path / "s.yaml", raw), Cache(tiny_cache), progress=False)

    n = len(ctx().data(ctx().suite.task_names[0]).test)
    validate(ctx(seeds=list(range(n // 40))))
    with pytest.raises(MergesecError, match=f"seed {n // 40} needs"):
        validate(ctx(seeds=[0, n // 40]))
    with pytest.raises(UnknownNameError, match="overlapping"):
        validate(ctx(seeds=[0], subsets="overlapping"))


def test_quantize_is_the_nearest_8bit_image_in_the_ball():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(4, 3, 8, 8, generator=g)
    x[0], x[1] = 0.0, 1.0
    x_adv = (x + (torch.rand(x.shape, generator=g) - 0.5) * 4 * EPS).clamp(0, 1)  # partly outside the ball
    q = quantize(x_adv, x, EPS)
    assert q.dtype == torch.uint8 and torch.equal(to_float(q), q.float() / 255)
    levels = torch.arange(256, dtype=torch.float64) / 255
    xd, ad = x.double().reshape(-1, 1), x_adv.double().reshape(-1, 1)
    admissible = (levels - xd).abs() <= EPS + 1e-9  # brute force: every level inside the eps-ball
    best = torch.where(admissible, (levels - ad).abs(), torch.inf).argmin(1)
    assert torch.equal(q.reshape(-1).long(), best)
    assert ((q.double() / 255 - x.double()).abs() <= EPS + 1e-9).all()


# -- cache artefacts: checksums and complete keys ---------------------------------------------------------------


def test_cache_checksum_detects_a_modified_artefact(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from benchmark.errors import CheckpointError
    from benchmark.hashing import content_hash

    cache, spec, builds = Cache(tmp_path), {"artefact": "x"}, []

    def build():
        builds.append(1)
        return {"w": torch.arange(6.0)}

    cache.get_or_build("kind", spec, build)
    assert torch.equal(cache.get_or_build("kind", spec, build)["w"], torch.arange(6.0)) and len(builds) == 1
    path = cache.path("kind", content_hash(spec))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    save_file({"w": torch.arange(6.0) * 2}, str(path), metadata=meta)  # poisoned: same header, other numbers
    with pytest.raises(CheckpointError, match=r"corrupt or was modified.*delete it"):
        cache.get_or_build("kind", spec, build)
    path.unlink()
    assert torch.equal(cache.get_or_build("kind", spec, build)["w"], torch.arange(6.0)) and len(builds) == 2


@pytest.fixture(scope="module")
def key_setup(tiny_cache, tmp_path_factory):
    """A tiny one-attack suite, its zoo, and a private cache holding only the zoo."""
    from benchmark.context import RunContext

    raw = tiny_suite_raw()
    raw["transfer"].update(attacks=["difgsm"], subset_size=16)
    tmp = tmp_path_factory.mktemp("keys")
    suite = write_suite(tmp / "s.yaml", raw)
    _ = RunContext(suite, Cache(tiny_cache), progress=False).zoo
    own = tmp / "cache"
    for kind in ("pretrained", "head", "finetuned"):
        shutil.copytree(tiny_cache / kind, own / kind)
    return raw, tmp, Cache(own)


@pytest.mark.slow
def test_adversarial_key_covers_weights_arguments_batch_size_and_code(key_setup, monkeypatch):
    import copy

    import benchmark.cache as cache_mod
    from benchmark.context import RunContext
    from benchmark.tracks.transfer_cache import adversarial, state

    raw, tmp, cache = key_setup

    def crafted(suite_raw, tweak=lambda ctx: None) -> int:
        ctx = RunContext(write_suite(tmp / "v.yaml", suite_raw), cache, progress=False)
        tweak(ctx)
        adversarial(ctx, "digit", "finetuned", "difgsm", 0)
        return state(ctx).crafted

    assert crafted(raw) == 1 and crafted(raw) == 0  # built once, then loaded

    def other_weights(ctx):  # same recipe, other numbers (e.g. another MERGESEC_CLIP_CHECKPOINT)
        ctx.zoo.finetuned["digit"] = {k: v + 1e-3 if v.is_floating_point() else v
                                      for k, v in ctx.zoo.finetuned["digit"].items()}

    assert crafted(raw, other_weights) == 1
    arg = copy.deepcopy(raw)
    arg["transfer"]["attack_params"] = {"difgsm": {"diversity_prob": 0.7}}
    assert crafted(arg) == 1 and crafted(arg) == 0
    batch = copy.deepcopy(raw)
    batch["transfer"]["craft_batch_size"] = 4
    assert crafted(batch) == 1 and crafted(batch) == 0
    real = cache_mod._source_digest
    monkeypatch.setattr(cache_mod, "_source_digest", lambda o: "edited" if o is TransferAttack else real(o))
    assert crafted(raw) == 1  # an edit of the attack code
    monkeypatch.setattr(cache_mod, "_source_digest", real)
    assert crafted(raw) == 0


@pytest.mark.slow
def test_each_merge_and_forward_pass_once_whatever_the_workers(key_setup, monkeypatch):
    """A run in this process and `mergesec run -j 2` merge each (method, seed) once (Surgery's adapters
    included), evaluate each target once on the clean subset and once per adversarial set, and store the same
    rows."""
    from collections import Counter

    from benchmark import trace

    raw, tmp, zoo_cache = key_setup
    surgery = "surgery_task_arithmetic"
    raw = {**raw, "transfer": {**raw["transfer"], "attacks": ["fgsm", "pgd"]},
           "merging": {**raw["merging"], "methods": {**raw["merging"]["methods"], surgery: {"steps": 5}}}}
    path = tmp / "j.yaml"
    suite = write_suite(path, raw)
    methods, n_tasks = ["weight_averaging", "task_arithmetic", surgery], len(raw["tasks"])
    counts, rows = {}, {}
    for j in (1, 2):
        cache, log, db = tmp / f"cache-j{j}", tmp / f"trace-j{j}.jsonl", tmp / f"j{j}.duckdb"
        shutil.copytree(zoo_cache.root, cache)
        monkeypatch.setenv(trace.ENV, str(log))
        if j == 1:
            runner.run(suite, ["merge", "transfer"], Store(db), Cache(cache), methods, progress=False)
        else:  # spawned workers re-import __main__: run the CLI in its own process
            subprocess.run([sys.executable, "-m", "benchmark.cli", "run", "--suite", str(path), "-t", "merge", "-t",
                            "transfer", "--methods", ",".join(methods), "--db", str(db), "--cache", str(cache), "-q",
                            "-j", "2"], check=True, capture_output=True)
        counts[j] = Counter((e["event"], e.get("what"), e["method"]) for e in trace.read(log))
        rows[j] = Store(db).read("SELECT method, task, attack, surrogate, example_id, target_clean_correct, "
                                 "target_adv_correct FROM transfer_examples ORDER BY ALL")
    assert counts[1] == counts[2]
    for m in methods:
        assert counts[1][("merge", None, m)] == 1
        assert counts[1][("forward", "target_clean", m)] == n_tasks
        assert counts[1][("forward", "target_adv", m)] == n_tasks * 2 * 2  # one per setting
        assert counts[1][("forward", "merge_clean", m)] == n_tasks
    pd.testing.assert_frame_equal(rows[1], rows[2])


def test_docs_list_every_attack_argument():
    """docs/transfer.md's attack table lists every argument each attack passes to torchattacks."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "transfer.md").read_text()
    rows = {line.split("|")[1].strip().strip("`"): line.split("|") for line in doc.splitlines()
            if line.startswith("| `") and line.count("|") == 6}
    for name in ATTACKS:
        row = rows[name]
        assert row[2].strip() == f"`{get_attack(name).torchattacks_class}`", name
        for k, v in make_attack(name, EPS, 10, image_size=16).params().items():
            if k not in ("eps", "alpha", "steps"):
                shown = "L(H)" if k == "len_kernel" else v
                assert f"`{k}={shown}`" in row[3], (name, k, v)
