"""Read-only queries the findings report needs, scoped to one suite hash (values always as parameters).

Seeds are averaged within a setting, exactly as :func:`analysis.ranking_view.settings_table` (which the
leaderboard and `mergesec rank` use) does, so the report, the CLI and the leaderboard count the same
settings. Every function returns an empty DataFrame, never raises, when its view holds no rows.
"""

import json
import re
from dataclasses import dataclass

import pandas as pd

from benchmark.errors import MergesecError, UnknownNameError
from benchmark.store import Store

BACKDOOR_PAIR_KEYS = ["attack", "variant", "method", "adversary_task", "target_task", "target_class", "seed"]
"""A backdoor setting with and without a defense is the same row of these columns (the leaderboard's key)."""
NO_DEFENSE = "none"

_HEX16 = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class SuiteRef:
    """The suite a command reads: its name, the hash its rows carry, and other stored hashes of that name."""

    name: str
    hash: str
    other_hashes: tuple[str, ...] = ()
    note: str = ""


def resolve_suite(store: Store, suite: str) -> SuiteRef:
    """``suite`` as a shipped suite name or YAML path (its current hash), a stored 16-hex suite hash, or the
    name of a suite registered in the database (its most recent hash)."""
    stored = store.read(
        "SELECT s.suite_hash, s.suite, max(u.finished_at) AS t FROM suites s LEFT JOIN "
        "units_done u USING (suite_hash) GROUP BY ALL ORDER BY t DESC NULLS LAST"
    )
    if _HEX16.match(suite) and suite in set(stored.suite_hash):
        name = stored.loc[stored.suite_hash == suite, "suite"].iat[0]
        return SuiteRef(name, suite)
    try:
        from benchmark.suites import load_suite

        s = load_suite(suite)
        name, suite_hash = s.name, s.hash
    except UnknownNameError:
        same = stored[stored.suite == suite]
        if same.empty:
            known = sorted(set(stored.suite))
            raise MergesecError(
                f"no suite {suite!r}: not a shipped suite, a suite YAML, or a suite stored in {store.path} "
                f"(stored: {', '.join(known) or 'none'}); pass --suite with one of those or a suite hash"
            ) from None
        name, suite_hash = suite, same.suite_hash.iat[0]
    others = tuple(h for h in stored.loc[stored.suite == name, "suite_hash"] if h != suite_hash)
    has_rows = suite_hash in set(stored.loc[stored.t.notna(), "suite_hash"])
    if not has_rows and others:
        # the suite's spec changed since these results were stored: read the latest stored version, loudly
        note = (
            f"suite `{name}` as defined now (hash {suite_hash}) has no results in {store.path}; using "
            f"the most recently stored version {others[0]} (pass --suite <hash> to choose another)"
        )
        return SuiteRef(name, others[0], tuple(h for h in others[1:]), note)
    return SuiteRef(name, suite_hash, others)


def count_rows(store: Store, view: str, suite_hash: str) -> int:
    """Rows of ``view`` (one of the results views) for the suite."""
    if view not in {"merge_eval", "transfer_metrics", "backdoor_metrics"}:
        raise MergesecError(f"unknown results view {view!r}")
    return int(store.read(f"SELECT count(*) AS n FROM {view} WHERE suite_hash = ?", [suite_hash]).n.iat[0])


def transfer_long(
    store: Store, suite_hash: str, metric: str = "relative_asr", surrogate: str | None = None
) -> pd.DataFrame:
    """One row per (method, task, attack, surrogate, eps), ``metric`` averaged over seeds (NaN dropped);
    :func:`analysis.ranking_view.settings_table` with an optional surrogate filter."""
    from analysis.ranking_view import settings_table

    filters = {"surrogate": [surrogate]} if surrogate else None
    df = settings_table(store, suite_hash, "transfer", metric, filters)
    attrs = dict(df.attrs)
    df = df.dropna(subset=[metric]).reset_index(drop=True)
    df.attrs = attrs
    return df


def surrogates(store: Store, suite_hash: str) -> list[str]:
    """The surrogates present in the transfer results of the suite."""
    df = store.read(
        "SELECT DISTINCT surrogate FROM transfer_metrics WHERE suite_hash = ? ORDER BY surrogate",
        [suite_hash],
    )
    return df.surrogate.tolist()


def merge_accuracy(store: Store, suite_hash: str) -> pd.DataFrame:
    """Clean accuracy of each merged model: ``method, clean_acc`` (mean over tasks of the seed-averaged
    per-task accuracy, merge track) and ``source``. Falls back to the transfer track's target accuracy on the
    attack subsets (``clean_acc_target``) when the merge track is absent."""
    df = store.read(
        """SELECT method, avg(acc) AS clean_acc, 'merge_eval.clean_acc' AS source FROM (
        SELECT method, task, avg(clean_acc) AS acc FROM merge_eval WHERE suite_hash = ? GROUP BY method, task)
        GROUP BY method ORDER BY method""",
        [suite_hash],
    )
    if df.empty:
        df = store.read(
            """SELECT method, avg(acc) AS clean_acc, 'transfer_metrics.clean_acc_target' AS source
            FROM (SELECT method, task, avg(clean_acc_target) AS acc FROM transfer_metrics WHERE suite_hash = ?
            GROUP BY method, task) GROUP BY method ORDER BY method""",
            [suite_hash],
        )
    return df


def split_counts(store: Store, suite_hash: str) -> pd.DataFrame:
    """Each merged model's clean correct count on the whole test split of each task (merge track):
    ``method, task, seed, n, correct`` (what :func:`analysis.chance_gate.below_chance` tests)."""
    return store.read(
        """SELECT method, task, seed, any_value(n) AS n, CAST(round(any_value(clean_acc * n)) AS INTEGER) AS correct
        FROM merge_eval WHERE suite_hash = ? GROUP BY method, task, seed ORDER BY ALL""",
        [suite_hash],
    )


def backdoor_rows(store: Store, suite_hash: str, baselines: bool = False) -> pd.DataFrame:
    """Rows of ``backdoor_metrics`` for the suite (seeds kept: defenses are paired on the exact setting);
    only attacks (``role = 'attack'``) unless ``baselines``."""
    role = "" if baselines else "AND role = 'attack'"
    return store.read(
        f"""SELECT {", ".join(BACKDOOR_PAIR_KEYS)}, defense, role, clean_acc, backdoor_asr, asr_floor,
        asr_minus_floor, n_asr FROM backdoor_metrics WHERE suite_hash = ? {role} ORDER BY ALL""",
        [suite_hash],
    )


def suite_spec(store: Store, suite_hash: str) -> dict:
    """The stored spec of the suite with ``suite_hash`` (empty when the suite is not stored)."""
    spec = store.read("SELECT spec FROM suites WHERE suite_hash = ?", [suite_hash])
    return {} if spec.empty else json.loads(spec.spec.iat[0])


def task_classes(store: Store, suite_hash: str) -> dict[str, int]:
    """Number of classes of each task of the stored suite spec (empty when the suite is not stored)."""
    return {t["name"]: int(t.get("n_classes") or 0) for t in suite_spec(store, suite_hash).get("tasks", [])}
