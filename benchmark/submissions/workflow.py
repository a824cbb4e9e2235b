"""`mergesec submit` and `mergesec reproduce`.

submit: validate, register the submission, run every track its manifest claims on the suite into a
*staging* database (same cache), and only when every unit succeeded copy the rows, the run's provenance
and the method row into the results database in one transaction, replacing the rows an earlier version of
the same submission left for that suite. A failed submission therefore changes nothing in the database.
Units are keyed by content (the submission's content hash included): re-submitting unchanged code runs
nothing.

reproduce: re-run the same tracks from scratch (a fresh temporary cache, so the zoo is retrained, and a
fresh temporary database) with the torch thread count the stored rows were computed with, compare every
stored metric of the submission's rows with the re-run, within an absolute tolerance, check the row
digests (`benchmark.store.digest`: the stored rows are unedited and the re-run's are bitwise identical),
and record the verdict in the `reproductions` table with the combined digest of the rows it checked.
`reproduce all` shares one fresh cache across submissions, so the
zoo is rebuilt once.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from benchmark.cache import Cache
from benchmark.store import Store
from benchmark.store.digest import combined, recompute
from benchmark.store.schema import RESULT_TABLES
from benchmark.submissions.loader import Submission, list_slugs, load_submission
from benchmark.submissions.manifest import SubmissionError
from benchmark.submissions.registration import register_submission
from benchmark.submissions.sandbox import Limits
from benchmark.suites import Suite, load_suite

DEFAULT_TOLERANCE = 1e-9
"""Absolute tolerance of `reproduce`: the digits zoo and every track are bitwise deterministic on one machine
and thread count (see docs/submitting.md), so only float formatting noise is allowed by default."""

ID_COLUMNS = frozenset({"seed", "example_id", "target_class", "label"})
"""Integer columns that identify a row rather than measure something (they join stored and re-run rows)."""


# -- helpers ---------------------------------------------------------------------------------------------


def resolve_suite(sub: Submission, suite: str | Path | None) -> Suite:
    """The suite to run: `suite` if given (it must be one the manifest claims), else the manifest's first."""
    s = load_suite(suite if suite is not None else sub.manifest.suites[0])
    if s.name not in sub.manifest.suites:
        raise SubmissionError(
            f"submission {sub.slug!r} claims results for suites {sub.manifest.suites}, not {s.name!r}; add "
            f"{s.name!r} to `suites` in submission.toml, or pass --suite {sub.manifest.suites[0]}"
        )
    return s


def _tracks(sub: Submission) -> list[str]:
    from benchmark.tracks import get_track

    for t in sub.manifest.tracks:
        get_track(t)
    return list(sub.manifest.tracks)


def _methods_for(sub: Submission, suite: Suite) -> list[str]:
    """The merge methods a run of `sub` evaluates: the submission itself, or for a defense the suite's
    methods (the backdoor track pairs each with the defense)."""
    return [sub.name] if sub.kind == "merge" else list(suite.merge_methods)


def _evaluates(unit: Any, sub: Submission) -> bool:
    d = unit.description
    return d.get("defense") == sub.name if sub.kind == "defense" else d.get("method") == sub.name


def _units_of(store: Store, suite_hash: str, sub: Submission) -> pd.DataFrame:
    """unit_key and description of the units in `store` that evaluate the submission's method or defense
    (any version of its code) on the suite."""
    if not store.path.exists():
        return pd.DataFrame(columns=["unit_key", "track", "description"])
    df = store.read("SELECT unit_key, track, description FROM units_done WHERE suite_hash = ?", [suite_hash])
    field = "defense" if sub.kind == "defense" else "method"
    keep = pd.Series([json.loads(d).get(field) == sub.name for d in df.description], index=df.index, dtype=bool)
    return df[keep].reset_index(drop=True)


def plan_units(sub: Submission, suite: Suite, tracks: list[str], ctx: Any) -> list[Any]:
    """The units of the claimed tracks that evaluate the submission; a claimed track with none is an error."""
    from benchmark import runner

    units = [u for u in runner.plan(ctx, tracks, _methods_for(sub, suite)) if _evaluates(u, sub)]
    empty = [t for t in tracks if not any(u.track == t for u in units)]
    if empty:
        raise SubmissionError(
            f"submission {sub.slug!r} claims track(s) {empty}, but on suite {suite.name} they evaluate no "
            f"{sub.kind} like it (e.g. the suite's backdoor section restricts its methods); remove them from "
            "`tracks` in submission.toml"
        )
    return units


def _register_rows(sub: Submission, store: Store, ctx: Any) -> None:
    from benchmark import runner

    store.migrate()
    runner.register_suite(store, ctx)
    if sub.kind == "merge":
        runner.register_methods(store, [sub.name])
        return
    m = sub.manifest
    store.upsert("methods", ["name", "kind"], {
        "name": m.name, "kind": "defense", "source": f"submission:{sub.slug}", "hparams": m.hyperparameters,
        "needs": [], "paper": f"{m.title or m.name} ({m.paper_url})", "code_url": m.code_url,
        "authors": ", ".join(m.authors), "code_hash": sub.code_hash, "updated_at": runner._now()})


@dataclass(frozen=True)
class Execution:
    """Where a submission's units run: `benchmark.executors.make_executor`'s `name` (serial, process, ray),
    `workers` and `ray_address`; every worker registers the submission first (`RegisterInWorker`)."""

    name: str | None = None
    workers: int = 1
    ray_address: str | None = None


def _run_tracks(sub: Submission, suite: Suite, store: Store, cache: Cache, limits: Limits, progress: bool,
                command: str, execution: Execution = Execution()) -> Any:
    """Run the units of the claimed tracks that evaluate `sub` into `store` with `benchmark.runner.run_units`
    (a `runs` row with the provenance), restricted to the submission's units (so a defense's run does not
    recompute the rest of the backdoor sweep), on `execution`'s executor. A crash inside a track becomes a
    `SubmissionError`."""
    from benchmark import runner
    from benchmark.context import RunContext
    from benchmark.executors import make_executor
    from benchmark.submissions.registration import RegisterInWorker

    register_submission(sub, limits)
    tracks = _tracks(sub)
    ctx = RunContext(suite, cache, progress)
    units = plan_units(sub, suite, tracks, ctx)
    _register_rows(sub, store, ctx)
    config = {"submission": sub.slug, "code_hash": sub.code_hash}
    try:
        executor = make_executor(execution.name, ctx, execution.workers, execution.ray_address,
                                 setup=RegisterInWorker(str(sub.folder), limits))
        return runner.run_units(ctx, tracks, units, store, config, command, f"{sub.slug} on {suite.name}",
                                executor)
    except SubmissionError:
        raise
    except Exception as e:
        raise SubmissionError(f"submission {sub.slug!r} failed while running the tracks: "
                              f"{type(e).__name__}: {e}") from e


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


# -- submit ----------------------------------------------------------------------------------------------


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
           command: str = "", execution: Execution = Execution()) -> SubmitReport:
    """Validate, run (on `execution`'s executor) and store a submission (see the module docstring). Raises
    `SubmissionError` with the reason on failure, leaving the database unchanged."""
    from benchmark.submissions.check import validate

    t0 = time.perf_counter()
    limits = limits or Limits.from_env()
    sub = validate(target, limits).submission
    s = resolve_suite(sub, suite)
    tracks = _tracks(sub)
    main, cache_ = Store(db), Cache(cache)
    stored = _units_of(main, s.hash, sub)
    stale = stored[~stored.description.str.contains(sub.code_hash, regex=False)].unit_key.tolist()
    planned = _planned_keys(sub, s, tracks, cache_, limits)
    done = main.done_keys(planned)
    if planned and len(done) == len(planned) and not stale:  # this exact code is already stored
        return SubmitReport(sub, s, tracks, 0, len(done), 0, time.perf_counter() - t0, None, main.path)
    with tempfile.TemporaryDirectory(prefix="mergesec-submit-") as tmp:
        staging = Store(Path(tmp) / "staging.duckdb")
        summary = _run_tracks(sub, s, staging, cache_, limits, progress, command or f"mergesec submit {sub.slug}",
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


# -- reproduce -------------------------------------------------------------------------------------------


@dataclass
class Verdict:
    submission: Submission
    suite: Suite
    verdict: str  # "reproduced" | "failed"
    n_compared: int
    max_abs_diff: float | None
    tolerance: float
    diffs: pd.DataFrame
    seconds: float
    reason: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """Every value within the tolerance ("within tolerance": not bitwise, so no badge)."""
        return self.verdict in ("reproduced", "within tolerance")


def _split_columns(df: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(key columns, compared columns) of a result table: strings and identifying integers join rows;
    every other numeric or boolean column is a measurement (timings excepted)."""
    keys, values = ["unit_key"], []
    for c in df.columns:
        if c == "unit_key":
            continue
        numeric = pd.api.types.is_numeric_dtype(df[c]) or pd.api.types.is_bool_dtype(df[c])
        if not numeric or c in ID_COLUMNS:
            keys.append(c)
        elif "seconds" not in c:
            values.append(c)
    return keys, values


def _describe_key(row: pd.Series, keys: list[str]) -> str:
    skip = {"unit_key", "suite", "suite_hash", "hparams"}
    return " ".join(f"{k}={row[k]}" for k in keys if k not in skip)


def compare(stored: Store, fresh: Store, unit_keys: list[str], tolerance: float) -> tuple[int, float, pd.DataFrame]:
    """Compare every measured value of the units' rows; returns (n compared, max |diff|, mismatches)."""
    n, worst, rows = 0, 0.0, []
    for table in sorted(RESULT_TABLES):
        a = stored.read(f"SELECT * FROM {table} WHERE list_contains(?, unit_key)", [unit_keys])
        b = fresh.read(f"SELECT * FROM {table} WHERE list_contains(?, unit_key)", [unit_keys])
        if a.empty and b.empty:
            continue
        keys, values = _split_columns(b if not b.empty else a)
        for df in (a, b):
            for k in keys:
                df[k] = df[k].astype(str)
        m = a.merge(b, on=keys, how="outer", suffixes=("_stored", "_rerun"), indicator=True)
        for _, r in m[m._merge != "both"].iterrows():
            side = "stored only" if r._merge == "left_only" else "re-run only"
            rows.append({"table": table, "row": _describe_key(r, keys), "column": f"(row {side})",
                         "stored": None, "reproduced": None, "abs_diff": math.inf})
            worst = math.inf
        both = m[m._merge == "both"]
        for c in values:
            x = pd.to_numeric(both[f"{c}_stored"], errors="coerce").astype(float)
            y = pd.to_numeric(both[f"{c}_rerun"], errors="coerce").astype(float)
            nan_x, nan_y = x.isna(), y.isna()
            diff = (x - y).abs().where(~(nan_x & nan_y), 0.0).where(~(nan_x ^ nan_y), math.inf)
            n += len(diff)
            if len(diff):
                worst = max(worst, float(diff.max()))
            for i in diff.index[diff > tolerance]:
                rows.append({"table": table, "row": _describe_key(both.loc[i], keys), "column": c,
                             "stored": x[i], "reproduced": y[i], "abs_diff": float(diff[i])})
    diffs = pd.DataFrame(rows, columns=["table", "row", "column", "stored", "reproduced", "abs_diff"])
    return n, worst, diffs


def _rerun_builtins(main: Store, fresh: Store, sub: Submission, suite: Suite, cache: Cache,
                    progress: bool) -> list[str]:
    """Re-run into `fresh` the units of built-in merge methods stored in `main` on the suite for the
    submission's tracks (the rows its ranking is computed against); returns their keys."""
    from benchmark import runner
    from benchmark.context import RunContext
    from benchmark.merging import get_method, list_methods

    tracks = _tracks(sub)
    ctx = RunContext(suite, cache, progress)
    planned = runner.plan(ctx, tracks, [m for m in list_methods() if get_method(m).source == "builtin"])
    stored = main.done_keys([u.key for u in planned])
    units = [u for u in planned if u.key in stored and not _evaluates(u, sub)]
    if units:
        runner.run_units(ctx, tracks, units, fresh, {"reproduce": "builtins"}, f"mergesec reproduce {sub.slug}",
                         f"built-in rows ranked with {sub.slug}")
    return [u.key for u in units]


def check_digests(stored: Store, fresh: Store, unit_keys: list[str]) -> tuple[dict[str, str], str]:
    """({unit_key: digest} of the stored rows, problem or ''): the stored rows must still match the digest
    written with them (no edit since), and the re-run's rows must have the same digest (bitwise equal)."""
    with stored.connect(read_only=True) as con:
        now = recompute(con, unit_keys)
        written = dict(con.execute("SELECT unit_key, rows_digest FROM units_done WHERE list_contains(?, unit_key)",
                                   [unit_keys]).fetchall())
    with fresh.connect(read_only=True) as con:
        rerun = recompute(con, unit_keys)
    edited = [k for k in unit_keys if written.get(k) != now[k]]
    if edited:
        return now, (f"the stored rows of {len(edited)} unit(s) (e.g. {edited[0]}) no longer match the digest "
                     "written with them: they were changed after they were stored")
    differ = [k for k in unit_keys if rerun[k] != now[k]]
    if differ:
        return now, (f"the re-run's rows of {len(differ)} unit(s) (e.g. {differ[0]}) are within the tolerance but "
                     "not bitwise identical to the stored ones")
    return now, ""


def _why_missing(main: Store, suite: Suite, sub: Submission, stored: pd.DataFrame) -> str:
    if len(stored):
        return " (the stored rows are of another version of its code)"
    other = main.read("SELECT DISTINCT u.suite_hash FROM units_done u JOIN suites s USING (suite_hash) "
                      "WHERE s.suite = ? AND u.suite_hash <> ? AND (json_extract_string(u.description, '$.method') = ? "
                      "OR json_extract_string(u.description, '$.defense') = ?)",
                      [suite.name, suite.hash, sub.name, sub.name])
    if len(other):
        return (f" (stored rows exist for suite hash(es) {', '.join(other.suite_hash)}: the suite's spec has changed "
                "since they were submitted)")
    return ""


@dataclass
class _Threads:
    stored: list[int]
    used: int
    before: int

    def restore(self) -> None:
        import torch

        torch.set_num_threads(self.before)


def _match_threads(main: Store, unit_keys: list[str]) -> _Threads:
    """Use the torch thread count of the runs that stored the rows: float reductions (training, attacks)
    are bitwise reproducible on one machine only at a fixed thread count."""
    import torch

    df = main.read("SELECT DISTINCT r.hardware FROM units_done u JOIN runs r USING (run_id) "
                   "WHERE list_contains(?, u.unit_key)", [unit_keys])
    stored = sorted({int(json.loads(h).get("torch_threads") or 0) for h in df.hardware} - {0})
    before = torch.get_num_threads()
    if len(stored) == 1 and stored[0] != before:
        torch.set_num_threads(stored[0])
    return _Threads(stored, torch.get_num_threads(), before)


def reproduce(targets: list[str | Path] | str, suite: str | Path | None = None, db: Path | str | None = None,
              tolerance: float = DEFAULT_TOLERANCE, limits: Limits | None = None, progress: bool = True,
              cache: Path | str | None = None, record: bool = True, builtins: bool = True,
              execution: Execution = Execution()) -> list[Verdict]:
    """Re-run submissions from scratch and compare with the stored rows (module docstring). `targets` is
    "all", or slugs/folders. With `builtins`, the stored rows of the built-in methods the submission is
    ranked against (same suite and tracks) are re-run and checked too. `cache` defaults to a fresh temporary
    folder (the point of reproducing);
    passing one is for tests. The submission's own units run on `execution`'s executor. Records one
    `reproductions` row per submission when `record`."""
    from benchmark.provenance import provenance

    limits = limits or Limits.from_env()
    main = Store(db)
    if not main.path.exists():
        raise SubmissionError(f"no results database at {main.path}; run `mergesec submit` first (or pass --db)")
    if targets == "all" or targets == ["all"]:
        targets = list_slugs()
        if not targets:
            raise SubmissionError("no submissions to reproduce (submissions/*/submission.toml)")
    subs = [load_submission(t) for t in targets]  # fail on a bad folder before any long run
    verdicts = []
    with tempfile.TemporaryDirectory(prefix="mergesec-reproduce-") as tmp:
        shared_cache = Cache(cache if cache is not None else Path(tmp) / "cache")
        for sub in subs:
            t0 = time.perf_counter()
            s = resolve_suite(sub, suite)
            stored_units = _units_of(main, s.hash, sub)
            current = stored_units[stored_units.description.str.contains(sub.code_hash, regex=False)]
            if current.empty:
                raise SubmissionError(
                    f"no stored results of submission {sub.slug!r} (content hash {sub.code_hash}) for suite "
                    f"{s.name} {s.hash} in {main.path}; run `mergesec submit {sub.folder}` first"
                    + _why_missing(main, s, sub, stored_units)
                )
            fresh = Store(Path(tmp) / f"{sub.slug}.duckdb")
            reason, run_id = "", None
            threads = _match_threads(main, current.unit_key.tolist())
            try:
                summary = _run_tracks(sub, s, fresh, shared_cache, limits, progress,
                                      f"mergesec reproduce {sub.slug}", execution)
                run_id = getattr(summary, "run_id", None)
                fresh_units = _units_of(fresh, s.hash, sub)
                keys = sorted(set(current.unit_key) | set(fresh_units.unit_key))
                if builtins:
                    keys = sorted(set(keys) | set(_rerun_builtins(main, fresh, sub, s, shared_cache, progress)))
                n, worst, diffs = compare(main, fresh, keys, tolerance)
                digests, digest_problem = check_digests(main, fresh, keys)
                ok = diffs.empty and n > 0
                if n == 0:
                    reason = "nothing to compare"
                elif digest_problem:
                    reason = digest_problem
            except SubmissionError as e:
                n, worst, ok, reason, digests, digest_problem = 0, math.inf, False, str(e), {}, ""
                diffs = pd.DataFrame(columns=["table", "row", "column", "stored", "reproduced", "abs_diff"])
            finally:
                threads.restore()
            prov = provenance()
            verdict = ("reproduced" if not digest_problem else "within tolerance") if ok else "failed"
            v = Verdict(sub, s, verdict, n, None if math.isinf(worst) else worst,
                        tolerance, diffs, time.perf_counter() - t0, reason)
            v.details = {
                "slug": sub.slug, "name": sub.name, "kind": sub.kind, "code_hash": sub.code_hash,
                "suite": s.name, "tracks": list(sub.manifest.tracks), "n_mismatches": len(diffs),
                "mismatches": diffs.head(50).replace({math.inf: None}).to_dict("records"), "reason": reason,
                "seconds": round(v.seconds, 1), "fresh_cache": cache is None, "torch_threads": threads.used,
                "stored_torch_threads": threads.stored, "git_commit": prov["git_commit"],
                "mergesec_version": prov["mergesec_version"], "packages": prov["packages"],
                "hardware": prov["hardware"], "unit_keys": sorted(digests),
            }
            if record:
                main.add_reproduction({
                    "subject": sub.slug, "suite_hash": s.hash, "verdict": v.verdict,
                    "max_abs_diff": v.max_abs_diff, "n_compared": n, "tolerance": tolerance,
                    "details": v.details, "run_id": run_id,
                    "rows_digest": combined(digests) if v.verdict == "reproduced" else None,
                })
            verdicts.append(v)
    return verdicts
