"""The autouse fixture `_isolated_registries` (tests/conftest.py): what one test registers is gone in the next,
so a test that sweeps in the pytest process sees the built-ins only, whatever ran before it. The two tests
run in this order (pytest keeps a file's order)."""

from benchmark.attacks.transfer import ATTACKS, PGD, register_attack
from benchmark.defenses import list_defenses, register_defense
from benchmark.merging import list_methods, register_merge

PROBE = "isolation_probe"


def test_a_test_can_register_plugins():
    register_merge(PROBE)(lambda pretrained, finetuned: pretrained)
    register_defense(PROBE, stage="post")(lambda pretrained, finetuned: finetuned)
    register_attack(PROBE)(type("Probe", (PGD,), {}))
    assert PROBE in list_methods() and PROBE in list_defenses() and PROBE in ATTACKS


def test_the_next_test_sees_only_what_was_registered_before_the_first():
    assert PROBE not in list_methods() and PROBE not in list_defenses() and PROBE not in ATTACKS
    assert {"weight_averaging", "regmean"} <= set(list_methods()) and "fine_pruning" in list_defenses()
    assert "pgd" in ATTACKS
