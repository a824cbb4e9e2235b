"""`mergesec reproduce`: re-run a submission's tracks from scratch (a fresh temporary cache, so the zoo is
retrained, and a fresh temporary database) with the torch thread count the stored rows were computed with,
compare every stored metric of the submission's rows with the re-run, within an absolute tolerance, check the
row digests (`benchmark.store.digest`: the stored rows are unedited and the re-run's are bitwise identical),
and record the verdict in the `reproductions` table with the combined digest of the rows it checked.
`reproduce all` shares one fresh cache across submissions, so the zoo is rebuilt once.
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
from benchmark.submissions.sandbox import Limits
from benchmark.submissions.units import (
    DEFAULT_EXECUTION,
    Execution,
    claimed_tracks,
    evaluates,
    resolve_suite,
    run_tracks,
    units_in_store,
)
from benchmark.suites import Suite

DEFAULT_TOLERANCE = 1e-9
"""Absolute tolerance of `reproduce`: the digits zoo and every track are bitwise deterministic on one machine
and thread count (see docs/submitting.md), so only float formatting noise is allowed by default."""


ID_COLUMNS = frozenset({"seed", "example_id", "target_class", "label"})
"""Integer columns that identify a row rather than measure something (they join stored and re-run rows)."""


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

    tracks = claimed_tracks(sub)
    ctx = RunContext(suite, cache, progress)
    planned = runner.plan(ctx, tracks, [m for m in list_methods() if get_method(m).source == "builtin"])
    stored = main.done_keys([u.key for u in planned])
    units = [u for u in planned if u.key in stored and not evaluates(u, sub)]
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
              execution: Execution = DEFAULT_EXECUTION) -> list[Verdict]:
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
            stored = units_in_store(main, s.hash, sub)
            current = stored[stored.description.str.contains(sub.code_hash, regex=False)]
            if current.empty:
                raise SubmissionError(
                    f"no stored results of submission {sub.slug!r} (content hash {sub.code_hash}) for suite "
                    f"{s.name} {s.hash} in {main.path}; run `mergesec submit {sub.folder}` first"
                    + _why_missing(main, s, sub, stored)
                )
            fresh = Store(Path(tmp) / f"{sub.slug}.duckdb")
            reason, run_id = "", None
            threads = _match_threads(main, current.unit_key.tolist())
            try:
                summary = run_tracks(sub, s, fresh, shared_cache, limits, progress,
                                      f"mergesec reproduce {sub.slug}", execution)
                run_id = getattr(summary, "run_id", None)
                fresh_units = units_in_store(fresh, s.hash, sub)
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
