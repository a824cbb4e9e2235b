"""The generated numbers of docs/backdoor.md: every table of results there is written by this command, between
`<!-- begin generated: NAME -->` and `<!-- end generated: NAME -->` markers, and `--check` fails when the
document drifts from what the stored sweep gives.

    python -m benchmark.tracks.backdoor_docs --db results/mergesec.duckdb --cache cache          # rewrite
    python -m benchmark.tracks.backdoor_docs --db results/mergesec.duckdb --cache cache --check  # verify

Blocks: `results` (the backdoor table of the stored sweep: ASR, floor and ASR − floor without a defense, and
ASR − floor under each defense, means over seeds) and `patch` (each stage-1 patch on the *pretrained* model:
the target-class rate with and without the patch, per seed; needs the cache, where the sweep left the
triggers).
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from benchmark.errors import MergesecError

DOC = Path(__file__).resolve().parents[2] / "docs" / "backdoor.md"
BLOCK = re.compile(r"(<!-- begin generated: (\w+) -->\n)(.*?)(<!-- end generated: \2 -->)", re.S)


def results_block(metrics: pd.DataFrame, methods: list[str]) -> str:
    """The `results` table from rows of `backdoor_metrics` (one suite hash)."""
    from benchmark.tracks.backdoor import summary_table

    t = summary_table(metrics, methods)
    if t.empty:
        raise MergesecError("no backdoor rows for this suite in the database; run `mergesec run --track backdoor`")
    defenses = [c[len("asr-floor["):-1] for c in t.columns if c.startswith("asr-floor[") and c != "asr-floor[none]"]
    cols = ["role", "attack", "variant", "target", "method", "acc[none]", "asr[none]", "floor[none]",
            "asr-floor[none]", *(f"asr-floor[{d}]" for d in defenses), "seeds"]
    return t[cols].to_markdown(index=False, floatfmt=".3f")


def patch_block(suite, cache) -> str:
    """Each optimised stage-1 patch of the suite's attacks, per seed, on the pretrained encoder with the target
    task's head: `with_patch` = the ASR of the pretrained model, `without` = its floor (same images)."""
    from benchmark.attacks.backdoor import BackdoorEnv, make_backdoor
    from benchmark.data import load_task
    from benchmark.metrics.backdoor import backdoor_asr
    from benchmark.tracks.backdoor_settings import backdoor_config, settings
    from benchmark.zoo import build_zoo

    zoo = build_zoo(suite, cache, progress=False)
    env = BackdoorEnv(zoo, lambda t: load_task(suite, t), cache)
    rows = []
    for s in settings(suite):
        if s.attack not in ("clean_inherent", "clean_fixed_trigger"):
            continue
        src, variant, params = s.trigger_of
        for seed in backdoor_config(suite)["seeds"]:
            bd = make_backdoor(env, src, variant, {**json.loads(params), "seed": seed}, clean=True)
            r = backdoor_asr(env.pretrained_classifier(bd.target_task), load_task(suite, bd.target_task).test,
                             bd.target_class, bd.trigger.apply)
            rows.append({"patch": f"{s.attack}/{s.variant}", "target": f"{bd.target_task}:{bd.target_class}",
                         "seed": seed, "with_patch": r.asr, "without": r.floor, "n": r.n})
    return pd.DataFrame(rows).to_markdown(index=False, floatfmt=".3f")


def render(text: str, blocks: dict[str, str]) -> str:
    """`text` with the body of every generated block named in `blocks` replaced."""
    def sub(m: re.Match) -> str:
        name = m.group(2)
        return m.group(1) + (blocks[name].rstrip("\n") + "\n" if name in blocks else m.group(3)) + m.group(4)

    return BLOCK.sub(sub, text)


def block_names(text: str) -> list[str]:
    return [m.group(2) for m in BLOCK.finditer(text)]


def main(argv: list[str] | None = None) -> int:
    from benchmark.cache import Cache
    from benchmark.store import Store
    from benchmark.suites import load_suite

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", type=Path, default=Path("results/mergesec.duckdb"))
    ap.add_argument("--cache", type=Path, default=Path("cache"))
    ap.add_argument("--suite", default="digits")
    ap.add_argument("--doc", type=Path, default=DOC)
    ap.add_argument("--check", action="store_true", help="exit 1 if the document differs from the regenerated one")
    a = ap.parse_args(argv)
    try:
        if not a.db.exists():
            raise MergesecError(f"no database at {a.db}; run `mergesec run --track backdoor --db {a.db}` first")
        suite = load_suite(a.suite)
        metrics = Store(a.db).read("SELECT * FROM backdoor_metrics WHERE suite_hash = ?", [suite.hash])
        blocks = {"results": results_block(metrics, list(suite.merge_methods)),
                  "patch": patch_block(suite, Cache(a.cache))}
    except MergesecError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    old = a.doc.read_text()
    new = render(old, blocks)
    if a.check:
        drifted = [n for n in block_names(old) if _body(old, n) != _body(new, n)]
        if drifted:
            print(f"{a.doc}: generated block(s) {drifted} drifted; rerun without --check", file=sys.stderr)
            return 1
        return 0
    a.doc.write_text(new)
    return 0


def _body(text: str, name: str) -> str:
    return next((m.group(3) for m in BLOCK.finditer(text) if m.group(2) == name), "")


if __name__ == "__main__":
    raise SystemExit(main())
