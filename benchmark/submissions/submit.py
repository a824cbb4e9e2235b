"""`mergesec submit`: validate, register the submission, run every track its manifest claims on the suite into
a *staging* database (same cache), and only when every unit succeeded copy the rows, the run's provenance and
the method row into the results database in one transaction, replacing the rows an earlier version of the
same submission left for that suite. A failed submission therefore changes nothing in the database. Units
are keyed by content (the submission's content hash included): re-submitting unchanged code runs nothing.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from benchmark.cache import Cache
from benchmark.store import Store
from benchmark.store.schema import RESULT_TABLES
from benchmark.submissions.loader import Submission
from benchmark.submissions.registration import register_submission
from benchmark.submissions.sandbox import Limits
from benchmark.submissions.units import (
    DEFAULT_EXECUTION,
    Execution,
    claimed_tracks,
    plan_units,
    resolve_suite,
    run_tracks,
    units_in_store,
)
from benchmark.suites import Suite


def _promote(main: Store, staging: Store, stale_keys: list[str]) -> int:
    """Copy everything in `staging` into `main` in one transaction; delete `stale_keys`' rows first."""
    main.migrate()
    with main.connect() as con:
        con.execute("ATTACH ? AS staging (READ_ONLY)", [str(staging.path)])
        try:
            con.execute("BEGIN TRANSACTION")
            new_keys = [r[0] for r in con.execute("SELECT unit_key FROM staging.units_done").fetchall()]
            drop = sorted(set(new_keys) | set(stale_keys))
            for table in [*sorted(RESULT_TABLES), "units_done"]:
                con.execute(f"DELETE FROM {table} WHERE list_contains(?, unit_key)", [drop])
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM staging.{table}")
            for table, keys in (("suites", ["suite_hash"]), ("models", ["model_key"]),
                                ("methods", ["name", "kind"]), ("runs", ["run_id"])):
                match = " AND ".join(f"m.{k} = s.{k}" for k in keys)
                con.execute(f"DELETE FROM {table} m WHERE EXISTS (SELECT 1 FROM staging.{table} s WHERE {match})")
                con.execute(f"INSERT INTO {table} BY NAME SELECT * FROM staging.{table}")
            con.execute("COMMIT")
        except Exception:
            con.execute("ROLLBACK")
            raise
        finally:
            con.execute("DETACH staging")
    return len(new_keys)


@dataclass
class SubmitReport:
    submission: Submission
    suite: Suite
    tracks: list[str]
    units_run: int
    units_skipped: int
    replaced: int
    seconds: float
    run_id: str | None
    db: Path


def submit(target: str | Path, suite: str | Path | None = None, db: Path | str | None = None,
           cache: Path | str | None = None, limits: Limits | None = None, progress: bool = True,
           command: str = "", execution: Execution = DEFAULT_EXECUTION) -> SubmitReport:
    """Validate, run (on `execution`'s executor) and store a submission (see the module docstring). Raises
    `SubmissionError` with the reason on failure, leaving the database unchanged."""
    from benchmark.submissions.check import validate

    t0 = time.perf_counter()
    limits = limits or Limits.from_env()
    sub = validate(target, limits).submission
    s = resolve_suite(sub, suite)
    tracks = claimed_tracks(sub)
    main, cache_ = Store(db), Cache(cache)
    stored = units_in_store(main, s.hash, sub)
    stale = stored[~stored.description.str.contains(sub.code_hash, regex=False)].unit_key.tolist()
    planned = _planned_keys(sub, s, tracks, cache_, limits)
    done = main.done_keys(planned)
    if planned and len(done) == len(planned) and not stale:  # this exact code is already stored
        return SubmitReport(sub, s, tracks, 0, len(done), 0, time.perf_counter() - t0, None, main.path)
    with tempfile.TemporaryDirectory(prefix="mergesec-submit-") as tmp:
        staging = Store(Path(tmp) / "staging.duckdb")
        summary = run_tracks(sub, s, staging, cache_, limits, progress, command or f"mergesec submit {sub.slug}",
                              execution)
        # promoted only now that every unit succeeded; a failure above leaves the main database untouched
        n = _promote(main, staging, stale)
    return SubmitReport(sub, s, tracks, n, 0, len(stale), time.perf_counter() - t0,
                        getattr(summary, "run_id", None), main.path)


def _planned_keys(sub: Submission, suite: Suite, tracks: list[str], cache: Cache, limits: Limits) -> list[str]:
    """The unit keys a run of the submission writes (checked up front: a claimed track without units fails)."""
    from benchmark.context import RunContext

    register_submission(sub, limits)
    return [u.key for u in plan_units(sub, suite, tracks, RunContext(suite, cache, progress=False))]


def method_rows(store: Store, suite: Suite, name: str, kind: str = "merge",
                tracks: list[str] | None = None) -> dict[str, pd.DataFrame]:
    """What `submit` prints: per track, the submission's row and rank among all methods in `store`. Uses the
    leaderboard's ranking (`analysis.ranking_view.ranked_table`: mean over settings, paired bootstrap 95%
    CI, rank, letters) where it applies, else a plain mean per method (or per defense)."""
    out: dict[str, pd.DataFrame] = {}
    tables = set(store.read("SELECT table_name FROM information_schema.tables").table_name)
    for track in tracks or (["merge", "transfer", "backdoor"] if kind == "merge" else ["backdoor"]):
        if kind == "merge":
            ranked = _ranked(store, suite, track, name)
            if ranked is not None:
                out[ranked[0]] = ranked[1]
                continue
        if track == "merge" and "merge_eval" in tables:
            from benchmark.results import merge_table

            mt = merge_table(store, suite)
            if not mt.empty:
                methods = mt[~mt.method.str.startswith("(")].reset_index(drop=True)
                methods.insert(0, "rank", methods.avg_acc.rank(ascending=False, method="min").astype(int))
                out["merge: mean clean accuracy (higher is better)"] = methods[methods.method == name].assign(
                    of=len(methods))
        elif track == "transfer" and "transfer_settings" in tables:
            df = store.read("SELECT method, avg(relative_asr) AS relative_asr, avg(asr_transfer) AS asr_transfer, "
                            "count(*) AS settings FROM transfer_settings WHERE suite_hash = ? GROUP BY method",
                            [suite.hash])
            if not df.empty:
                df.insert(0, "rank", df.relative_asr.rank(ascending=True, method="min").astype(int))
                out["transfer: mean relative transfer ASR (lower is better)"] = df[df.method == name].assign(
                    of=len(df))
        elif track == "backdoor" and "backdoor_settings" in tables:
            col = "method" if kind == "merge" else "defense"
            df = store.read(f"SELECT {col}, avg(backdoor_asr) AS backdoor_asr, avg(clean_acc) AS clean_acc, "
                            f"count(*) AS settings FROM backdoor_metrics WHERE suite_hash = ? AND role = 'attack' "
                            f"GROUP BY {col}", [suite.hash])
            if not df.empty:
                df.insert(0, "rank", df.backdoor_asr.rank(ascending=True, method="min").astype(int))
                what = "merge methods" if kind == "merge" else "defenses ('none' = no defense)"
                out[f"backdoor: mean backdoor ASR over attacks, lower is better; rank among {what}"] = (
                    df[df[col] == name].assign(of=len(df)))
    return out


def _ranked(store: Store, suite: Suite, track: str, name: str) -> tuple[str, pd.DataFrame] | None:
    try:
        from analysis.ranking_view import ranked_table

        r = ranked_table(store, suite.hash, track, n_boot=1000)
    except Exception:  # no analysis package, too few methods or complete settings: plain means instead
        return None
    row = r[r.method == name]
    if row.empty:
        return None
    better = "higher" if r.attrs.get("higher_is_better") else "lower"
    title = (f"{track}: {r.attrs.get('label', r.attrs.get('metric'))} ({better} is better), rank among "
             f"{len(r)} methods over {int(row.n_settings.iloc[0])} settings, bootstrap 95% CI")
    return title, row.assign(of=len(r))
