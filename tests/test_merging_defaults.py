"""Published defaults: the registry, every shipped suite and docs/merging.md against the one record of sources
(`benchmark/merging/published.py`).

The registry's defaults are declared where each method is registered and the suites' values in their YAML;
the record names the source of each value. Changing a default in a method module, or fixing an unrecorded
value in a suite, fails here.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmark.merging import get_method, list_methods
from benchmark.merging.published import PUBLISHED, SUITE_DEVIATIONS, defaults_table
from benchmark.suites import list_suites, load_suite

DOCS = Path(__file__).resolve().parents[1] / "docs" / "merging.md"
BUILTINS = [name for name in list_methods() if get_method(name).source == "builtin"]


def test_every_builtin_has_a_recorded_source():
    assert sorted(PUBLISHED) == sorted(BUILTINS)
    for method, params in PUBLISHED.items():
        assert all(s.source for s in params.values()), method


@pytest.mark.parametrize("name", BUILTINS)
def test_registered_defaults_equal_the_cited_source(name):
    registered = dict(get_method(name).hparams)
    published = {p: s.value for p, s in PUBLISHED[name].items()}
    assert registered.keys() == published.keys(), name
    for param, value in published.items():
        got = registered[param]
        assert type(got) is type(value) and got == value, (
            f"{name}.{param} is {got!r} in the registry but {value!r} in {PUBLISHED[name][param].source}")


@pytest.mark.parametrize("suite", list_suites())
def test_suites_fix_only_published_values_or_recorded_deviations(suite):
    s = load_suite(suite)
    deviations = SUITE_DEVIATIONS.get(s.name, {})
    for method, overrides in s.merge_methods.items():
        if get_method(method).source != "builtin":
            continue
        for param, value in overrides.items():
            recorded = deviations.get(method, {}).get(param) or PUBLISHED[method][param]
            assert value == recorded.value, (
                f"suite {suite} sets {method}.{param} = {value!r}; {recorded.source} says {recorded.value!r}: use the "
                "published value or record the deviation in benchmark/merging/published.py SUITE_DEVIATIONS")
    for method, params in deviations.items():
        for param in params:
            assert param in s.merge_methods.get(method, {}), f"stale deviation {s.name}.{method}.{param}"


def test_docs_table_of_defaults_is_the_generated_one():
    """docs/merging.md embeds `python -m benchmark.merging.published` verbatim."""
    assert defaults_table() in DOCS.read_text()
