"""The report's markdown document: header, summary of verdicts with their power, ranking, claim sections
and the reading notes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import pandas as pd

from analysis import claims as C
from analysis.report.tables import effect_text


@dataclass(frozen=True)
class Settings:
    """The analysis settings the report states: the vulnerability metric (and its label), the claims'
    surrogate, α, the rankings' bootstrap resamples and seed, and claim 2's "stayed" band."""

    metric: str
    label: str
    surrogate_text: str
    alpha: float
    n_boot: int
    seed: int
    tol: float


VERDICT_LEGEND = (
    "Verdicts: **supported** = the test rejects at α (Holm within the claim) in the claimed direction; **not "
    "supported** = it rejected the other way, or it could have detected the stated effect (MDD ≤ effect) and did "
    "not; **underpowered** = not significant and the minimum detectable difference at 80% power exceeds the "
    "stated effect, so the data could not have shown it; **inconclusive** = the claim's parts disagree; **no "
    "data** = the results the claim needs are not stored."
)


def markdown(ref, store, fs: Sequence[C.Finding], numbers: Mapping[str, str], ranking_md: str,
             body: Sequence[str], rows: Mapping[str, int], notes: Sequence[str], s: Settings,
             has_heatmap: bool, backdoor_md: str = "") -> str:
    """The whole report.md (``backdoor_md``: the table of backdoor ASR against its floor, if any)."""
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    summary = pd.DataFrame([
        {"#": numbers[f.key], "claim": f.title, "verdict": f"**{f.verdict}**",
         "minimum detectable (80% power)": effect_text(f.key, f.mdd), "stated effect": effect_text(f.key, f.effect),
         "verdict about": f.population or "–"}
        for f in fs
    ])
    head = [
        f"# mergesec findings: suite `{ref.name}` ({ref.hash})",
        "",
        f"Generated {when} from `{store.path}` by `mergesec analyze`. Significance level α = {s.alpha}. "
        f"Transfer vulnerability measure for claims 2–4: **{s.label}** (`{s.metric}`), {s.surrogate_text}. "
        "Settings are not independent replicates. Claims 1 and 3–5 are decided as the ranking is, for this "
        "benchmark's tasks (test images resampled within each task) and give the task-level test (new tasks) "
        "beside it; claim 2 and the backdoor claims test merging-method values. The summary's last column "
        "says which population each verdict is about. Definitions: docs/analysis.md, \"The inference unit\".",
        "",
        f"Rows stored: merge {rows['merge_eval']}, transfer {rows['transfer_metrics']}, backdoor "
        f"{rows['backdoor_metrics']}.",
        "",
        *[f"> {n}" for n in notes], *([""] if notes else []),
        "## Summary", "", summary.to_markdown(index=False), "", VERDICT_LEGEND, "",
        f"## Transfer ranking, per surrogate (bootstrap {s.n_boot} resamples, seed {s.seed})", "", ranking_md, "",
    ]
    if has_heatmap:
        head += [f"![{s.label} heatmap](transfer_heatmap.png)", "",
                 f"{s.label} per merging method and task (mean over attacks), {s.surrogate_text}, most vulnerable "
                 "method on top.", ""]
    if backdoor_md:
        head += ["## Backdoor ASR against its floor", "",
                 "`asr_floor`: the target-class rate on the same images without the trigger; `asr_minus_floor` is "
                 "what the trigger adds. Means over merge methods and seeds; `baseline` rows (every contributor "
                 "benign) are no attack and enter no claim (docs/backdoor.md). CSV: `tables/backdoor_floor.csv`.",
                 "", backdoor_md, ""]
    tail = [
        "## Reading this report", "",
        "- Every p-value is two-sided except claim 6b's accuracy half (H1: cost below the margin).",
        "- Cohen's d is signed (> 0: above the reference, or the first-named sample larger).",
        "- The intervals and tests describe these tasks and backdoored models, not a population of tasks.",
        f"- Claim 2's case count: one case per (stronger/weaker method pair, task), the task's {s.metric} "
        f"averaged over attacks; 'stayed' = |Δ| ≤ {100 * s.tol:.1f} percentage points.",
        "",
    ]
    return "\n".join([*head, *body, *tail])
