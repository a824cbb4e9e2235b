"""The `mergesec` command line. Every command prints one clear error (problem + fix) on bad input."""

import os
import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from benchmark.errors import MergesecError, UnknownNameError, run_main

app = typer.Typer(
    help="mergesec: a statistical benchmark for the security of model merging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)

SuiteOpt = Annotated[str, typer.Option("--suite", "-s", help="Suite name or path to a suite YAML.")]
DbOpt = Annotated[
    Path | None, typer.Option("--db", help="DuckDB file [env MERGESEC_DB, default results/mergesec.duckdb].")
]
CacheOpt = Annotated[
    Path | None, typer.Option("--cache", help="Artefact cache dir [env MERGESEC_CACHE, default ./cache].")
]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table | csv | json | markdown")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
WorkersOpt = Annotated[int, typer.Option(
    "--workers", "-j", min=1, envvar="MERGESEC_WORKERS",
    help="Worker processes computing units (each on $MERGESEC_THREADS threads); results are identical.")]
ExecutorOpt = Annotated[str | None, typer.Option(
    "--executor", envvar="MERGESEC_EXECUTOR",
    help="serial | process | ray [env MERGESEC_EXECUTOR; default process with -j > 1, else serial].")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--ray-address", envvar="MERGESEC_RAY_ADDRESS",
    help="Ray cluster for --executor ray: auto | HOST:PORT [default $RAY_ADDRESS, else a local cluster].")]
DeviceOpt = Annotated[str | None, typer.Option(
    "--device", help="auto | cpu | cuda | cuda:<i> [env MERGESEC_DEVICE, default cpu]; torch's thread pin "
    "($MERGESEC_THREADS, default 1) applies on the CPU only.")]

FORMATS = ("table", "csv", "json", "markdown")


def emit(df: pd.DataFrame, fmt: str) -> None:
    """Print a DataFrame in one of FORMATS."""
    if fmt not in FORMATS:
        raise UnknownNameError("format", fmt, list(FORMATS))
    if fmt == "csv":
        typer.echo(df.to_csv(index=False), nl=False)
    elif fmt == "json":
        typer.echo(df.to_json(orient="records", indent=1))
    elif fmt == "markdown":
        typer.echo(df.to_markdown(index=False, floatfmt=".4f"))
    else:
        with pd.option_context("display.max_rows", 500, "display.width", 200, "display.max_columns", 50):
            typer.echo(df.to_string(index=False, float_format=lambda v: f"{v:.4f}"))


def _store(db: Path | None):
    """The results database; an existing one is brought to the current schema first (idempotent), so a
    database written by an older mergesec is read with the columns this one expects."""
    from benchmark.store import Store

    store = Store(db)
    if store.path.exists():
        store.migrate()
    return store


def _cache(cache: Path | None):
    from benchmark.cache import Cache

    return Cache(cache)


def _methods(suite, methods: str | None) -> list[str]:
    from benchmark.merging import get_method

    names = [m.strip() for m in methods.split(",")] if methods else list(suite.merge_methods)
    for n in names:
        get_method(n)
    return names


@app.command()
def run(
    suite: SuiteOpt = "digits",
    track: Annotated[list[str] | None, typer.Option("--track", "-t", help="Track(s) to run; default all.")] = None,
    methods: Annotated[str | None, typer.Option(help="Comma-separated merge methods; default the suite's.")] = None,
    db: DbOpt = None,
    cache: CacheOpt = None,
    quiet: QuietOpt = False,
    workers: WorkersOpt = 1,
    executor: ExecutorOpt = None,
    ray_address: RayAddressOpt = None,
    device: DeviceOpt = None,
) -> None:
    """Run a suite's tracks end to end into DuckDB (resumes; never duplicates rows). Units run in this
    process, in -j worker processes, or as Ray tasks on a cluster (--executor ray); the rows are the same."""
    from benchmark import runner
    from benchmark.device import use_device
    from benchmark.suites import load_suite
    from benchmark.tracks import TRACKS, get_track

    use_device(device)
    s = load_suite(suite)
    tracks = track or list(TRACKS)
    for t in tracks:
        get_track(t)
    store = _store(db)
    summary = runner.run(s, tracks, store, _cache(cache), _methods(s, methods), progress=not quiet,
                         command=" ".join(["mergesec", *sys.argv[1:]]), workers=workers, executor=executor,
                         ray_address=ray_address)
    from benchmark.results import TRACK_TABLES, track_table

    for t in tracks:
        if t in TRACK_TABLES:
            typer.echo(f"\n== {t} track ({s.name} {s.hash})")
            emit(track_table(store, s, t), "table")
    typer.echo(f"run {summary.run_id}: {summary.units_run} units run, {summary.units_skipped} already stored, "
               f"{summary.seconds:.0f} s -> {store.path}")
    typer.echo("Browse the results: mergesec leaderboard" + (f" --db {db}" if db else ""))


@app.command()
def zoo(suite: SuiteOpt = "digits", cache: CacheOpt = None, quiet: QuietOpt = False,
        fmt: FormatOpt = "table", device: DeviceOpt = None, workers: WorkersOpt = 1) -> None:
    """Build (or load) the suite's model zoo (every fine-tuning seed its tracks use) and print its quality bars.
    The fine-tunes run in `--workers` processes (the same weights whatever the count)."""
    import time

    from benchmark.device import use_device
    from benchmark.suites import load_suite
    from benchmark.zoo import build_zoo, zoo_report

    dev = use_device(device)
    s = load_suite(suite)
    t0 = time.perf_counter()
    z = build_zoo(s, _cache(cache), progress=not quiet, device=dev, workers=workers)
    seconds = time.perf_counter() - t0
    df = pd.DataFrame(zoo_report(z))
    emit(df, fmt)
    ft_ok = bool((df.finetuned_acc >= 0.90).all())
    gap = float(df.finetuned_acc.mean() - df.pretrained_acc.mean())
    typer.echo(f"\nzoo ready in {seconds:.1f} s (suite {s.name} {s.hash})")
    typer.echo(f"quality bar: every fine-tuned model >= 90% test accuracy: {'MET' if ft_ok else 'NOT MET'}")
    typer.echo(f"quality bar: pretrained mean {df.pretrained_acc.mean():.1%} vs fine-tuned mean "
               f"{df.finetuned_acc.mean():.1%} (gap {gap:.1%}): {'MET' if gap >= 0.15 else 'NOT MET'}")
    if not ft_ok or gap < 0.15:
        raise typer.Exit(1)


@app.command()
def convert(
    src: Annotated[Path, typer.Argument(help="Checkpoint: a .safetensors file or a Hugging Face snapshot folder.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Where to write the converted FILE.safetensors.")],
    from_: Annotated[str, typer.Option("--from", help="Format of SRC: hf-clip-vision (transformers CLIP).")
                     ] = "hf-clip-vision",
    model: Annotated[str, typer.Option("--model", help="Target open_clip architecture.")] = "ViT-B-32",
    projection: Annotated[Path | None, typer.Option(
        help="Base CLIP model holding visual_projection.weight (e.g. openai/clip-vit-base-patch32), if SRC "
        "has none.")] = None,
) -> None:
    """Convert a checkpoint to open_clip's image tower (checked key by key against --model; safetensors)."""
    from benchmark.zoo.convert import convert_checkpoint

    state = convert_checkpoint(src, model, out, from_, projection)
    typer.echo(f"{src} -> {out}: {len(state)} tensors, {sum(v.numel() for v in state.values()):,} parameters "
               f"of open_clip {model}'s image tower")


@app.command("list")
def list_(what: Annotated[str | None, typer.Argument(
              help="suites | methods | tracks | attacks | defenses | submissions")] = None,
          fmt: FormatOpt = "table", db: DbOpt = None) -> None:
    """List suites, merge methods, tracks, attacks, defenses, and the submissions in submissions/ (read from
    their manifests, with the reproduce verdicts in --db for their current code)."""
    from benchmark.catalogue import catalogue
    from benchmark.submissions.status import submissions_table

    cat = catalogue()
    if what is not None and what not in [*cat, "submissions"]:
        raise UnknownNameError("listing", what, [*cat, "submissions"])
    if what in (None, "submissions"):
        cat["submissions"] = submissions_table(_store(db))
    for name, df in cat.items():
        if what in (None, name):
            typer.echo(f"== {name}")
            emit(df, fmt)
            typer.echo("")


@app.command("merge-eval")
def merge_eval(suite: SuiteOpt = "digits", methods: Annotated[str | None, typer.Option(help="Comma-separated.")] = None,
               db: DbOpt = None, cache: CacheOpt = None, quiet: QuietOpt = False, fmt: FormatOpt = "table") -> None:
    """Merge with every method, store clean and normalized accuracy, print the method x task table."""
    from benchmark import runner
    from benchmark.results import merge_table
    from benchmark.suites import load_suite

    s = load_suite(suite)
    store = _store(db)
    runner.run(s, ["merge"], store, _cache(cache), _methods(s, methods), progress=not quiet,
               command=" ".join(["mergesec", *sys.argv[1:]]))
    emit(merge_table(store, s), fmt)


@app.command()
def results(
    track: Annotated[str, typer.Option("--track", "-t", help="merge | transfer | backdoor")] = "merge",
    suite: SuiteOpt = "digits",
    db: DbOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Print stored results of a track as a table."""
    from benchmark.results import track_table
    from benchmark.suites import load_suite

    emit(track_table(_store(db), load_suite(suite), track), fmt)


@app.command()
def leaderboard(
    db: DbOpt = None,
    port: Annotated[int, typer.Option("--port", "-p", help="Port to serve on.")] = 8501,
    address: Annotated[str, typer.Option(
        "--address", help="Interface to listen on; 0.0.0.0 = every interface (share on a network).")] = "127.0.0.1",
    headless: Annotated[bool, typer.Option("--headless/--browser", help="--browser also opens a browser tab.")] = True,
) -> None:
    """Open the Streamlit leaderboard on the results database (read-only; fine while a run writes)."""
    from leaderboard.serve import exec_streamlit

    exec_streamlit(db, port, address, headless)


@app.command()
def rank(
    track: Annotated[str, typer.Option("--track", "-t", help="merge | transfer | backdoor")] = "transfer",
    metric: Annotated[str | None, typer.Option(
        help="Default relative_asr | clean_acc | backdoor_asr. ASR: lower = less vulnerable = better."
    )] = None,
    suite: SuiteOpt = "digits",
    surrogate: Annotated[str | None, typer.Option(
        help="Transfer surrogate, one (never pooled) [finetuned].")] = None,
    task: Annotated[str | None, typer.Option(help="Task(s), comma-separated; default all.")] = None,
    attack: Annotated[str | None, typer.Option(help="Attack(s), comma-separated; default all.")] = None,
    variant: Annotated[str | None, typer.Option(help="Backdoor variant(s); default all.")] = None,
    defense: Annotated[str | None, typer.Option(help="Backdoor defense(s) [none]; 'all' = every.")] = None,
    methods: Annotated[str | None, typer.Option(
        help="Methods to rank, comma-separated; default all (fewer methods, larger common set).")] = None,
    pairwise: Annotated[bool, typer.Option("--pairwise", help="Also print the pairwise decisions.")] = False,
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples for the 95% CIs.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOpt = None,
    fmt: FormatOpt = "table",
) -> None:
    """Rank merging methods: CIs, CI-aware ranks, letters, Friedman test (the leaderboard's table).

    Transfer attack metrics compare methods on common examples, one surrogate at a time."""
    from analysis.report_rank import parse_filters, rank_summary, render

    opts = {"surrogate": surrogate, "task": task, "attack": attack, "variant": variant, "defense": defense,
            "method": methods}
    res = rank_summary(_store(db), suite, track, metric, parse_filters(track, opts), n_boot=n_boot, seed=seed,
                       pairwise=pairwise)
    out, err = render(res, fmt)
    typer.echo(out, nl=False)
    if err:
        typer.echo(err, err=True, nl=False)


@app.command()
def analyze(
    suite: SuiteOpt = "digits",
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Report folder [reports/<suite>].")] = None,
    metric: Annotated[str, typer.Option(
        help="Vulnerability measure of claims 2-4: relative_asr | asr_transfer | aasr.")] = "relative_asr",
    surrogate: Annotated[str, typer.Option(
        help="Surrogate for claims 1-4 (never pooled; 'all' = finetuned); the report ranks each.")] = "finetuned",
    n_boot: Annotated[int, typer.Option("--n-boot", help="Bootstrap resamples.")] = 2000,
    seed: Annotated[int, typer.Option(help="Bootstrap seed.")] = 0,
    db: DbOpt = None,
) -> None:
    """Test the published claims on the stored results; write report.md, findings.json and PNG figures."""
    from analysis.report import build_report

    rep = build_report(_store(db), suite, out or Path("reports") / Path(suite).stem, metric=metric,
                       surrogate=surrogate, n_boot=n_boot, seed=seed)
    for f in rep.findings:
        typer.echo(f"{f.title}: {f.verdict}")
    typer.echo(f"report: {rep.out_dir / 'report.md'} ({len(rep.figures)} figures)")


# -- submissions (benchmark/submissions; guide: submissions/README.md) ------------------------------------
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
    for title, df in method_rows(_store(db), r.suite, sub.name, sub.kind, r.tracks).items():
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


def main() -> None:
    """Console entry point: MergesecError -> one line on stderr, exit status 2.

    Torch runs on `$MERGESEC_THREADS` threads (default 1): the digits models are tiny, so more threads only
    add contention, and float results are bitwise reproducible only at a fixed thread count.
    """
    import torch

    from benchmark.submissions.lifecycle import on_sigterm, os_error_message

    torch.set_num_threads(int(os.environ.get("MERGESEC_THREADS", "1")))
    on_sigterm()

    def commands() -> None:
        try:
            app()
        except MergesecError:
            raise
        except Exception as e:  # a full disk or an unreadable file: the same one line as a MergesecError
            msg = os_error_message(e)
            if msg is None:
                raise
            raise MergesecError(msg) from e

    run_main(commands)


if __name__ == "__main__":
    main()
