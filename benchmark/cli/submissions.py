"""`mergesec validate`, `submit` and `reproduce`: the submission lifecycle (benchmark/submissions; guide:
submissions/README.md)."""

import sys
from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.app import (
    CacheOpt,
    DbOpt,
    DeviceOpt,
    ExecutorOpt,
    FormatOpt,
    QuietOpt,
    RayAddressOpt,
    WorkersOpt,
    app,
    emit,
    open_store,
)

TimeLimitOpt = Annotated[float | None, typer.Option(
    "--time-limit", help="Seconds one sandboxed call of the submitted code may take [env MERGESEC_SANDBOX_TIMEOUT_S, "
    "default 600].")]
MemoryLimitOpt = Annotated[int | None, typer.Option(
    "--memory-limit", help="Address-space limit of the sandbox in MiB, torch's ~3.5 GiB included "
    "[env MERGESEC_SANDBOX_MEMORY_MB, default 8192].")]
NoIsolationOpt = Annotated[bool, typer.Option(
    "--no-isolation", help="Run submitted code WITHOUT the bubblewrap sandbox (it can then read and write "
    "anything you can). Only for code you trust, on a machine without bubblewrap.")]


@app.command()
def validate(
    submission: Annotated[Path, typer.Argument(help="Submission folder, e.g. submissions/model_breadcrumbs.")],
    time_limit: TimeLimitOpt = None,
    memory_limit: MemoryLimitOpt = None,
    no_isolation: NoIsolationOpt = False,
) -> None:
    """Check a submission in seconds: manifest schema, files, import, signature, smoke run on tiny models."""
    from benchmark.submissions.check import validate as check
    from benchmark.submissions.sandbox import Limits

    report = check(submission, Limits.from_env(time_limit, memory_limit, not no_isolation))
    for line in report.checks:
        typer.echo(f"ok  {line}")
    typer.echo(f"submission {report.submission.slug!r} is valid ({report.seconds:.1f} s). "
               f"Next: mergesec submit {submission}")


@app.command()
def submit(
    submission: Annotated[Path, typer.Argument(help="Submission folder, e.g. submissions/model_breadcrumbs.")],
    suite: Annotated[str | None, typer.Option("--suite", "-s", help="Suite; default the manifest's first.")] = None,
    db: DbOpt = None,
    cache: CacheOpt = None,
    time_limit: TimeLimitOpt = None,
    memory_limit: MemoryLimitOpt = None,
    no_isolation: NoIsolationOpt = False,
    quiet: QuietOpt = False,
    fmt: FormatOpt = "table",
    device: DeviceOpt = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Validate a submission, run every track it claims (in this process, -j workers or on Ray; every worker
    registers the submission), store the results with provenance, print its ranks."""
    import time

    from benchmark.device import use_device
    from benchmark.submissions.sandbox import Limits
    from benchmark.submissions.submit import method_rows
    from benchmark.submissions.submit import submit as run_submission
    from benchmark.submissions.units import Execution

    use_device(device)
    t0 = time.perf_counter()
    r = run_submission(submission, suite, db, cache, Limits.from_env(time_limit, memory_limit, not no_isolation),
                       progress=not quiet, command=" ".join(["mergesec", *sys.argv[1:]]),
                       execution=Execution(executor, workers, ray_address))
    sub = r.submission
    if r.units_run == 0:
        typer.echo(f"{sub.slug} (content hash {sub.code_hash}) is already stored for suite {r.suite.name}: "
                   f"{r.units_skipped} units, nothing to run")
    else:
        typer.echo(f"{sub.slug} (content hash {sub.code_hash}): {r.units_run} units of {', '.join(r.tracks)} on "
                   f"{r.suite.name} stored in {r.db}" + (f", replacing {r.replaced} units of an earlier version"
                                                         if r.replaced else ""))
    for title, df in method_rows(open_store(db), r.suite, sub.name, sub.kind, r.tracks).items():
        typer.echo(f"\n== {title}")
        emit(df, fmt)
    typer.echo(f"\nsubmit took {time.perf_counter() - t0:.0f} s. Check it reproduces: mergesec reproduce {sub.slug}"
               + (f" --db {db}" if db else "") + "; browse: mergesec leaderboard" + (f" --db {db}" if db else ""))


@app.command()
def reproduce(
    targets: Annotated[list[str], typer.Argument(help="Submission slugs or folders, or 'all'.")],
    suite: Annotated[str | None, typer.Option("--suite", "-s", help="Suite; default the manifest's first.")] = None,
    db: DbOpt = None,
    tolerance: Annotated[float | None, typer.Option(help="Absolute tolerance per metric [default 1e-9].")] = None,
    time_limit: TimeLimitOpt = None,
    memory_limit: MemoryLimitOpt = None,
    no_isolation: NoIsolationOpt = False,
    skip_builtins: Annotated[bool, typer.Option(
        "--skip-builtins", help="Do not re-run the stored built-in rows the submission is ranked against.")] = False,
    quiet: QuietOpt = False,
    fmt: FormatOpt = "table",
    device: DeviceOpt = None,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
) -> None:
    """Re-run submissions from scratch (fresh cache and database) and compare every stored metric; exit 0 only
    if all match within the tolerance. The verdict is stored for the leaderboard's reproduced badge. The
    submission's units run on the chosen executor (a Ray cluster must see the fresh cache: pass none but a
    local cluster, or run reproduce on the head node with a shared TMPDIR)."""
    from benchmark.device import use_device
    from benchmark.submissions.reproduce import DEFAULT_TOLERANCE
    from benchmark.submissions.reproduce import reproduce as run_reproduce
    from benchmark.submissions.sandbox import Limits
    from benchmark.submissions.units import Execution

    use_device(device)
    tol = DEFAULT_TOLERANCE if tolerance is None else tolerance
    verdicts = run_reproduce("all" if targets == ["all"] else list(targets), suite, db, tol,
                             Limits.from_env(time_limit, memory_limit, not no_isolation), progress=not quiet,
                             builtins=not skip_builtins, execution=Execution(executor, workers, ray_address))
    failed = 0
    for v in verdicts:
        worst = "n/a" if v.max_abs_diff is None else f"{v.max_abs_diff:.3g}"
        typer.echo(f"{v.submission.slug} on {v.suite.name}: {v.verdict.upper()} — {v.n_compared} values compared, "
                   f"max |diff| {worst} (tolerance {tol:g}), {v.seconds:.0f} s" + (f"; {v.reason}" if v.reason else ""))
        if not v.ok:
            failed += 1
            if not v.diffs.empty:
                typer.echo(f"{len(v.diffs)} values differ (first 40):")
                emit(v.diffs.head(40), fmt)
    raise typer.Exit(1 if failed else 0)
