"""`mergesec leaderboard`, `rank` and `analyze`: serving and summarising stored results."""

from pathlib import Path
from typing import Annotated

import typer

from benchmark.cli.app import DbOpt, FormatOpt, SuiteOpt, app, open_store


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
    res = rank_summary(open_store(db), suite, track, metric, parse_filters(track, opts), n_boot=n_boot, seed=seed,
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

    rep = build_report(open_store(db), suite, out or Path("reports") / Path(suite).stem, metric=metric,
                       surrogate=surrogate, n_boot=n_boot, seed=seed)
    for f in rep.findings:
        typer.echo(f"{f.title}: {f.verdict}")
    typer.echo(f"report: {rep.out_dir / 'report.md'} ({len(rep.figures)} figures)")
