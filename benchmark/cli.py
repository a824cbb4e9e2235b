"""The `mergesec` command line. Every command prints one clear error (problem + fix) on bad input."""

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from benchmark.errors import MergesecError, UnknownNameError

app = typer.Typer(
    help="mergesec: a statistical benchmark for the security of model merging.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)

SuiteOpt = Annotated[str, typer.Option("--suite", "-s", help="Suite name or path to a suite YAML.")]
DbOpt = Annotated[Path | None, typer.Option("--db", help="DuckDB file [env MERGESEC_DB, default results/mergesec.duckdb].")]
CacheOpt = Annotated[Path | None, typer.Option("--cache", help="Artefact cache dir [env MERGESEC_CACHE, default ./cache].")]
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table | csv | json | markdown")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]

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
    from benchmark.store import Store

    return Store(db)


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
) -> None:
    """Run a suite's tracks end to end into DuckDB (resumes; never duplicates rows)."""
    from benchmark import runner
    from benchmark.suites import load_suite
    from benchmark.tracks import TRACKS, get_track

    s = load_suite(suite)
    tracks = track or list(TRACKS)
    for t in tracks:
        get_track(t)
    store = _store(db)
    summary = runner.run(s, tracks, store, _cache(cache), _methods(s, methods), progress=not quiet,
                         command=" ".join(["mergesec", *sys.argv[1:]]))
    typer.echo(f"run {summary.run_id}: {summary.units_run} units run, {summary.units_skipped} already stored, "
               f"{summary.seconds:.0f} s -> {store.path}")
    typer.echo("Browse the results: mergesec leaderboard" + (f" --db {db}" if db else ""))


@app.command()
def zoo(suite: SuiteOpt = "digits", cache: CacheOpt = None, quiet: QuietOpt = False,
        fmt: FormatOpt = "table") -> None:
    """Build (or load) the suite's model zoo and print its quality bars."""
    import time

    from benchmark.suites import load_suite
    from benchmark.zoo import build_zoo, zoo_report

    s = load_suite(suite)
    t0 = time.perf_counter()
    z = build_zoo(s, _cache(cache), progress=not quiet)
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


@app.command("list")
def list_(what: Annotated[str | None, typer.Argument(help="suites | methods | tracks | attacks | defenses")] = None,
          fmt: FormatOpt = "table") -> None:
    """List suites, merge methods, tracks, attacks and defenses."""
    from benchmark.registries import catalogue

    cat = catalogue()
    if what is not None and what not in cat:
        raise UnknownNameError("listing", what, list(cat))
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


def main() -> None:
    """Console entry point: MergesecError -> one line on stderr, exit status 2."""
    try:
        app()
    except MergesecError as e:
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
