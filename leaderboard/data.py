"""Cached, parameterised, read-only queries for the leaderboard.

Every entry point takes the database path first and is cached with ``st.cache_data`` on (path, the file's
last-modified state, arguments), so a page rerun costs no query and a finished unit of a run shows up on the
next rerun. Values reach SQL only as parameters. While a run holds DuckDB's write lock, a read gives up
after a moment and the same query runs on the last consistent copy of the database (see :func:`snapshot`).
"""

import contextlib
import functools
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import duckdb
import pandas as pd
import streamlit as st

from analysis import ranking_view
from analysis.stats import StatisticsError
from benchmark.errors import StoreError
from benchmark.store import Store
from leaderboard import snapshots

LOCK_WAIT_S = 2.0
_BUSY_UNTIL: dict[str, float] = {}
RESULT_VIEWS = ("merge_eval", "transfer_metrics", "backdoor_metrics")


class DatabaseBusy(StoreError):
    """A run holds the write lock right now."""


class Reader(Store):
    """A read-only :class:`Store` that waits at most ``LOCK_WAIT_S`` for a writer's lock."""

    @contextmanager
    def connect(self, read_only: bool = True) -> Iterator[duckdb.DuckDBPyConnection]:
        if not read_only:
            raise StoreError("the leaderboard only reads the results database")
        if not self.path.exists():
            raise StoreError(f"no results database at {self.path}")
        key = str(self.path.resolve())
        # Once a query found the lock held, the next ones of the same page run try once and give up.
        deadline = time.monotonic() + (0.0 if time.monotonic() < _BUSY_UNTIL.get(key, 0.0) else LOCK_WAIT_S)
        while True:
            try:
                con = duckdb.connect(str(self.path), read_only=True)
                break
            except duckdb.IOException as e:
                if "lock" not in str(e).lower():
                    raise StoreError(f"cannot open {self.path}: {e}") from e
                if time.monotonic() >= deadline:
                    _BUSY_UNTIL[key] = time.monotonic() + 2 * LOCK_WAIT_S
                    raise DatabaseBusy(f"{self.path} is being written by a run") from e
                time.sleep(0.1)
            except duckdb.Error as e:
                raise StoreError(f"cannot open {self.path}: {e}") from e
        try:
            yield con
        finally:
            con.close()


def db_state(db: str) -> tuple:
    """:func:`leaderboard.snapshots.file_state` of the database: the cache key of every query."""
    return snapshots.file_state(db)


def _mark_stale() -> None:
    with contextlib.suppress(Exception):  # outside a script run (plain function calls in tests)
        st.session_state["_stale"] = True


class _Raised(NamedTuple):
    """A call's StatisticsError, cached like a result: too few settings for a ranking is an answer too."""

    error: StatisticsError


def snapshot(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Cache ``fn(db, state, *args)`` on the database state, a StatisticsError it raises included. While a
    run holds the write lock, the same call runs on the last consistent copy of the database
    (:mod:`leaderboard.snapshots`) and the page says so; with no copy yet, :class:`DatabaseBusy` reaches the
    page guard in app.py."""

    @functools.wraps(fn)
    def outcome(*args: Any) -> Any:
        try:
            return fn(*args)
        except StatisticsError as e:
            return _Raised(e)

    cached = st.cache_data(show_spinner=False, max_entries=256)(outcome)

    def call(db: str, *args: Any) -> Any:
        got = cached(db, db_state(db), *args)
        if isinstance(got, _Raised):
            raise got.error
        return got

    @functools.wraps(fn)
    def wrapper(db: str, *args: Any) -> Any:
        try:
            return call(db, *args)
        except DatabaseBusy:
            copy = snapshots.latest(db)
            if copy is None or str(copy) == db:
                raise
            _mark_stale()
            return call(str(copy), *args)

    wrapper.clear = cached.clear  # type: ignore[attr-defined]
    return wrapper


def freeze(filters: dict[str, list] | None) -> tuple:
    """Filters as a hashable, order-independent cache argument (empty selections dropped)."""
    return tuple(sorted((k, tuple(v)) for k, v in (filters or {}).items() if v))


def _read(db: str, sql: str, params: list | None = None) -> pd.DataFrame:
    return Reader(db).read(sql, params)


# -- database and suites ------------------------------------------------------------------------------------
@snapshot
def status(db: str, state: tuple) -> dict[str, Any]:
    """``{"ok": bool, "reason": "missing" | "unreadable" | "empty" | None, "detail": str}``."""
    if not Path(db).exists():
        return {"ok": False, "reason": "missing", "detail": f"There is no results database at `{db}`."}
    try:
        tables = set(_read(db, "SELECT table_name FROM information_schema.tables").table_name)
        if not {"units_done", *RESULT_VIEWS} <= tables:
            return {"ok": False, "reason": "empty", "detail": f"`{db}` holds no mergesec results schema."}
        done = int(_read(db, "SELECT count(*) AS n FROM units_done").n.iat[0])
    except DatabaseBusy:
        raise
    except StoreError as e:
        return {"ok": False, "reason": "unreadable", "detail": str(e)}
    if not done:
        return {"ok": False, "reason": "empty", "detail": f"`{db}` has no results yet."}
    return {"ok": True, "reason": None, "detail": ""}


@snapshot
def suites(db: str, state: tuple) -> pd.DataFrame:
    """Suites with results, most recently updated first: ``suite_hash, suite, version, units, last_update``."""
    df = _read(db, """
        WITH names AS (
            SELECT DISTINCT suite_hash, suite FROM merge_eval
            UNION SELECT DISTINCT suite_hash, suite FROM transfer_metrics
            UNION SELECT DISTINCT suite_hash, suite FROM backdoor_metrics)
        SELECT u.suite_hash, coalesce(any_value(s.suite), any_value(n.suite), '?') AS suite,
               coalesce(any_value(s.version), '') AS version, count(DISTINCT u.unit_key) AS units,
               max(u.finished_at) AS last_update, any_value(s.registered_at) AS registered_at
        FROM units_done u LEFT JOIN suites s USING (suite_hash) LEFT JOIN names n USING (suite_hash)
        GROUP BY u.suite_hash ORDER BY last_update DESC""")
    return df


@snapshot
def suite_spec(db: str, state: tuple, suite_hash: str) -> dict | None:
    df = _read(db, "SELECT spec FROM suites WHERE suite_hash = ?", [suite_hash])
    return json.loads(df.spec.iat[0]) if len(df) else None


@snapshot
def counts(db: str, state: tuple, suite_hash: str) -> dict[str, Any]:
    """Headline numbers of a suite: methods, settings and evaluated examples per track, last update."""
    row = _read(db, """
        SELECT
          (SELECT count(DISTINCT method) FROM (SELECT method FROM merge_eval WHERE suite_hash = $1
             UNION ALL SELECT method FROM transfer_metrics WHERE suite_hash = $1
             UNION ALL SELECT method FROM backdoor_metrics WHERE suite_hash = $1)) AS methods,
          (SELECT count(DISTINCT task) FROM merge_eval WHERE suite_hash = $1) AS merge_tasks,
          (SELECT count(*) FROM (SELECT DISTINCT task, attack, surrogate, eps FROM transfer_metrics
             WHERE suite_hash = $1)) AS transfer_settings,
          (SELECT count(*) FROM transfer_metrics WHERE suite_hash = $1) AS transfer_rows,
          (SELECT count(*) FROM (SELECT DISTINCT attack, variant, defense, adversary_task, target_task,
             target_class FROM backdoor_metrics WHERE suite_hash = $1)) AS backdoor_settings,
          (SELECT count(*) FROM backdoor_metrics WHERE suite_hash = $1) AS backdoor_rows,
          (SELECT coalesce(sum(n), 0) FROM merge_eval WHERE suite_hash = $1) AS merge_examples,
          (SELECT count(*) FROM transfer_examples WHERE suite_hash = $1) AS transfer_examples,
          (SELECT count(*) FROM backdoor_examples WHERE suite_hash = $1) AS backdoor_examples,
          (SELECT max(finished_at) FROM units_done WHERE suite_hash = $1) AS last_update,
          (SELECT count(*) FROM units_done WHERE suite_hash = $1) AS units""", [suite_hash])
    return row.iloc[0].to_dict()


@snapshot
def runs(db: str, state: tuple, suite_hash: str) -> pd.DataFrame:
    return _read(db, """SELECT run_id, status, started_at, ended_at, units_run, units_total, tracks,
        git_commit, mergesec_version, command FROM runs WHERE suite_hash = ? ORDER BY started_at DESC""",
                 [suite_hash])


# -- rankings and settings ----------------------------------------------------------------------------------
@snapshot
def ranking(db: str, state: tuple, suite_hash: str, track: str, metric: str, filters: tuple
            ) -> ranking_view.Ranking:
    """:func:`analysis.ranking_view.ranking` without the task-level view: the table, the pairwise decisions
    behind its ranks and letters, and the per-setting values they come from; raises StatisticsError."""
    return ranking_view.ranking(Reader(db), suite_hash, track, metric, dict(filters), task_level=False)


@snapshot
def ranked(db: str, state: tuple, suite_hash: str, track: str, metric: str, filters: tuple) -> pd.DataFrame:
    """:func:`analysis.ranking_view.ranked_table` (what `mergesec rank` prints); raises StatisticsError."""
    return ranking(db, suite_hash, track, metric, filters).table


@snapshot
def settings(db: str, state: tuple, suite_hash: str, track: str, metric: str, filters: tuple) -> pd.DataFrame:
    """:func:`analysis.ranking_view.settings_table`: one row per (method, setting)."""
    return ranking_view.settings_table(Reader(db), suite_hash, track, metric, dict(filters))


@snapshot
def filter_values(db: str, state: tuple, suite_hash: str, track: str, metric: str) -> dict[str, list]:
    return ranking_view.filter_values(Reader(db), suite_hash, track, metric)


@snapshot
def friedman(db: str, state: tuple, suite_hash: str, track: str, metric: str, filters: tuple) -> pd.DataFrame:
    """The Friedman test and Kendall's W on the ranking's own per-setting values (its methods, after the
    utility gate, and its common-example values), so the omnibus test is about the table beside it."""
    from analysis.stats import friedman_test

    rk = ranking(db, suite_hash, track, metric, filters)
    return friedman_test(rk.long, ranking_view.metric_spec(track, metric).name, rk.table.attrs["settings"])


@snapshot
def cd_inputs(db: str, state: tuple, suite_hash: str, track: str, metric: str, filters: tuple
              ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """What the CD diagram draws: the average ranks over the ranking's per-setting values
    (:func:`analysis.stats.nemenyi_critical_difference`) and the ranking's Holm-corrected pairwise p-values
    (:func:`analysis.stats.decisions.p_value_matrix`), so its bars are the decisions behind the CI-aware
    ranks and letters (the report draws the same)."""
    from analysis.stats import nemenyi_critical_difference, p_value_matrix

    rk = ranking(db, suite_hash, track, metric, filters)
    spec = ranking_view.metric_spec(track, metric)
    ranks = nemenyi_critical_difference(rk.long, spec.name, rk.table.attrs["settings"], spec.higher_is_better)
    return ranks, p_value_matrix(rk.pairs, list(rk.table.method))


@snapshot
def backdoor_rows(db: str, state: tuple, suite_hash: str) -> pd.DataFrame:
    return _read(db, "SELECT * FROM backdoor_metrics WHERE suite_hash = ?", [suite_hash])


# -- one method ---------------------------------------------------------------------------------------------
@snapshot
def methods(db: str, state: tuple, suite_hash: str) -> list[str]:
    df = _read(db, """SELECT DISTINCT method FROM (
        SELECT method FROM merge_eval WHERE suite_hash = $1 UNION ALL
        SELECT method FROM transfer_metrics WHERE suite_hash = $1 UNION ALL
        SELECT method FROM backdoor_metrics WHERE suite_hash = $1) ORDER BY method""", [suite_hash])
    return df.method.tolist()


@snapshot
def method_meta(db: str, state: tuple, method: str) -> dict[str, Any] | None:
    df = _read(db, "SELECT * FROM methods WHERE name = ? ORDER BY kind = 'merge' DESC LIMIT 1", [method])
    return df.iloc[0].to_dict() if len(df) else None


@snapshot
def method_hparams(db: str, state: tuple, suite_hash: str, method: str) -> list[str]:
    """The hyperparameters (JSON) the method ran with on this suite."""
    df = _read(db, "SELECT DISTINCT hparams FROM merge_eval WHERE suite_hash = ? AND method = ?",
               [suite_hash, method])
    return df.hparams.tolist()


@snapshot
def reproductions(db: str, state: tuple, suite_hash: str, subject: str) -> pd.DataFrame:
    """The `reproduce` verdicts of a submission on the suite, newest first, with the code hash each is for."""
    from benchmark.store.digest import CURRENT_DIGEST_SQL

    return _read(db, f"""SELECT verdict, json_extract_string(details, '$.code_hash') AS code_hash, max_abs_diff,
        n_compared, tolerance, checked_at, suite_hash, run_id, rows_digest, {CURRENT_DIGEST_SQL} AS current_digest
        FROM reproductions r WHERE subject = ? AND suite_hash = ? ORDER BY checked_at DESC""", [subject, suite_hash])


@snapshot
def method_runs(db: str, state: tuple, suite_hash: str, method: str, defense: bool = False) -> pd.DataFrame:
    """The runs that wrote this method's rows, or with ``defense`` the rows defended by it (provenance)."""
    keys = ("SELECT unit_key FROM backdoor_settings WHERE suite_hash = $1 AND defense = $2" if defense else """
            SELECT unit_key FROM merge_eval WHERE suite_hash = $1 AND method = $2
            UNION SELECT unit_key FROM transfer_settings WHERE suite_hash = $1 AND method = $2
            UNION SELECT unit_key FROM backdoor_settings WHERE suite_hash = $1 AND method = $2""")
    return _read(db, f"""
        WITH keys AS ({keys})
        SELECT r.run_id, any_value(r.status) AS status, any_value(r.started_at) AS started_at,
               any_value(r.git_commit) AS git_commit, any_value(r.mergesec_version) AS mergesec_version,
               any_value(r.command) AS command, any_value(r.hardware) AS hardware,
               count(DISTINCT u.unit_key) AS units
        FROM keys k JOIN units_done u USING (unit_key) JOIN runs r USING (run_id)
        GROUP BY r.run_id ORDER BY started_at DESC""", [suite_hash, method])


@snapshot
def method_rows(db: str, state: tuple, suite_hash: str, view: str, method: str) -> pd.DataFrame:
    """A method's rows of one results view (``view`` from RESULT_VIEWS, never user text)."""
    if view not in RESULT_VIEWS:
        raise StoreError(f"unknown results view {view!r}")
    df = _read(db, f"SELECT * EXCLUDE (suite, suite_hash) FROM {view} WHERE suite_hash = ? AND method = ?",
               [suite_hash, method])
    return df.drop(columns=["method"])


@snapshot
def outcomes(db: str, state: tuple, suite_hash: str, track: str, methods_: tuple[str, ...]) -> pd.DataFrame:
    """Per-example binary outcomes of ``methods_`` for McNemar: transfer ``fooled`` (the merged model
    misclassifies an adversarial example it classified correctly clean) or backdoor ``hit``."""
    if track == "transfer":
        sql = """SELECT method, task, attack, surrogate, eps, seed, example_id, NOT target_adv_correct AS fooled
                 FROM transfer_examples WHERE suite_hash = ? AND list_contains(?, method) AND counted"""
    elif track == "backdoor":
        sql = """SELECT method, attack, variant, defense, seed, example_id, hit
                 FROM backdoor_examples WHERE suite_hash = ? AND list_contains(?, method)"""
    else:
        raise StoreError(f"no per-example outcomes for track {track!r}")
    return _read(db, sql, [suite_hash, list(methods_)])


@snapshot
def head_to_head(db: str, state: tuple, suite_hash: str, track: str, metric: str, filters: tuple, a: str,
                 b: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """:func:`leaderboard.tables.head_to_head` on the metric's settings; raises StatisticsError."""
    from leaderboard.tables import head_to_head as h2h

    spec = ranking_view.metric_spec(track, metric)
    long = settings(db, suite_hash, track, metric, filters)
    return h2h(long, metric, list(spec.settings), a, b, spec.higher_is_better)


MCNEMAR_SETTINGS = {"transfer": ["task", "attack", "surrogate", "eps", "seed"],
                    "backdoor": ["attack", "variant", "defense", "seed"]}


@snapshot
def mcnemar(db: str, state: tuple, suite_hash: str, track: str, a: str, b: str) -> pd.DataFrame:
    """Exact McNemar tests of ``a`` vs ``b`` per setting on :func:`outcomes`; raises StatisticsError."""
    from analysis.stats import mcnemar_by_setting

    ex = outcomes(db, suite_hash, track, (a, b))
    return mcnemar_by_setting(ex, "fooled" if track == "transfer" else "hit", MCNEMAR_SETTINGS[track], a, b)


# -- standing of every method (badges, links) ---------------------------------------------------------------
@snapshot
def method_table(db: str, state: tuple) -> pd.DataFrame:
    """The registered methods and defenses (``methods``): name, kind, source, paper, code_url, code_hash, ..."""
    return _read(db, "SELECT * FROM methods ORDER BY name, kind")


@snapshot
def verdicts(db: str, state: tuple, suite_hash: str) -> pd.DataFrame:
    """Every `reproduce` verdict on the suite: ``subject, suite_hash, verdict, code_hash, checked_at,
    rows_digest, current_digest`` (the digest of the rows the verdict checked, as they are stored now)."""
    from benchmark.store.digest import CURRENT_DIGEST_SQL

    return _read(db, f"""SELECT subject, suite_hash, verdict, json_extract_string(details, '$.code_hash') AS code_hash,
        checked_at, rows_digest, {CURRENT_DIGEST_SQL} AS current_digest FROM reproductions r
        WHERE suite_hash = ?""", [suite_hash])


def badges(db: str, suite_hash: str) -> dict[str, str]:
    """:func:`leaderboard.tables.badge` of every registered name (merge methods and defenses)."""
    from leaderboard.tables import badge

    meta, ver = method_table(db), verdicts(db, suite_hash)
    return {r["name"]: badge(r, ver[ver.subject == r["name"]]) for r in meta.to_dict("records")}


@snapshot
def defenses(db: str, state: tuple, suite_hash: str) -> list[str]:
    """Defenses with backdoor results on the suite (``none`` excluded)."""
    df = _read(db, "SELECT DISTINCT defense FROM backdoor_metrics WHERE suite_hash = ? AND defense <> 'none' "
                   "ORDER BY defense", [suite_hash])
    return df.defense.tolist()


@snapshot
def backdoor_attack_names(db: str, state: tuple, suite_hash: str) -> list[str]:
    """The suite's backdoor attacks, baselines excluded (:func:`leaderboard.tables.is_baseline`)."""
    from leaderboard.tables import is_baseline

    rows = backdoor_rows(db, suite_hash)
    return sorted(rows[~is_baseline(rows)].attack.unique()) if len(rows) else []


@snapshot
def method_names_in(db: str, state: tuple, suite_hash: str, view: str) -> list[str]:
    """Methods with rows in one results view (``view`` from RESULT_VIEWS, never user text)."""
    if view not in RESULT_VIEWS:
        raise StoreError(f"unknown results view {view!r}")
    return _read(db, f"SELECT DISTINCT method FROM {view} WHERE suite_hash = ?", [suite_hash]).method.tolist()


@snapshot
def defense_effects(db: str, state: tuple, suite_hash: str, defense: str | None = None) -> pd.DataFrame:
    """:func:`leaderboard.tables.defense_effects` on the suite's attack rows (baselines excluded), for one
    defense or all; cached, since it bootstraps every (attack, defense) pair."""
    from leaderboard.tables import defense_effects as effects
    from leaderboard.tables import is_baseline

    rows = backdoor_rows(db, suite_hash)
    rows = rows[~is_baseline(rows)]
    if defense is not None:
        rows = rows[rows.defense.isin([defense, "none"])]
    return effects(rows)
