"""`mergesec run`, `zoo`, `convert`, `list`, `merge-eval` and `results`: building the zoo, running a
suite's units into the store and reading them back."""

import sys
from pathlib import Path
from typing import Annotated

import pandas as pd
import typer

from benchmark.cli.app import (
    CacheOpt,
    DbOpt,
    DeviceOpt,
    ExecutorOpt,
    FormatOpt,
    QuietOpt,
    RayAddressOpt,
    SuiteOpt,
    WorkersOpt,
    app,
    emit,
    method_names,
    open_cache,
    open_store,
)
from benchmark.errors import UnknownNameError


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
    store = open_store(db)
    summary = runner.run(s, tracks, store, open_cache(cache), method_names(s, methods), progress=not quiet,
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
    z = build_zoo(s, open_cache(cache), progress=not quiet, device=dev, workers=workers)
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
        cat["submissions"] = submissions_table(open_store(db))
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
    store = open_store(db)
    runner.run(s, ["merge"], store, open_cache(cache), method_names(s, methods), progress=not quiet,
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

    emit(track_table(open_store(db), load_suite(suite), track), fmt)
