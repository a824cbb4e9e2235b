"""The `mergesec` Typer app and what its commands share: the common options, output formats and how the
store, the cache and the method list are opened."""

from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from benchmark.errors import UnknownNameError

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


def open_store(db: Path | None):
    """The results database; an existing one is brought to the current schema first (idempotent), so a
    database written by an older mergesec is read with the columns this one expects."""
    from benchmark.store import Store

    store = Store(db)
    if store.path.exists():
        store.migrate()
    return store


def open_cache(cache: Path | None):
    from benchmark.cache import Cache

    return Cache(cache)


def method_names(suite, methods: str | None) -> list[str]:
    from benchmark.merging import get_method

    names = [m.strip() for m in methods.split(",")] if methods else list(suite.merge_methods)
    for n in names:
        get_method(n)
    return names

