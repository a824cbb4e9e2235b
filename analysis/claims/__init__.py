"""The findings: each published claim about merging security, tested on the stored results with
the default inference design where the data allow (claims 1, 3, 4 and 5: the image bootstrap, "this
benchmark's tasks"; the task-clustered test as the "new tasks" view) and a power statement on every
verdict (docs/analysis.md).

Every claim function is pure (DataFrames in, a :class:`Finding` out) and never raises on missing or thin
data. :data:`CLAIMS` lists them in report order.
"""

from analysis.claims.backdoor_survival import F6, backdoor_asr_after_merging
from analysis.claims.core import (
    INCONCLUSIVE,
    NEW_TASKS,
    NO_DATA,
    NOT_SUPPORTED,
    OTHER_METHODS,
    SUPPORTED,
    THESE_TASKS,
    UNDERPOWERED,
    VERDICTS,
    Claim,
    Finding,
    fmt_p,
    pct,
    peq,
    pp,
)
from analysis.claims.defenses import F7, defense_effects
from analysis.claims.image_design import ImageSample
from analysis.claims.level import F1, relative_asr_above
from analysis.claims.surgery import F3, SURGERY, TASK_ARITHMETIC, surgery_more_vulnerable
from analysis.claims.surrogate import F5, FINETUNED, pretrained_surrogate_transfers_less
from analysis.claims.trend import F2, stronger_more_vulnerable
from analysis.claims.weight_averaging import F4, WEIGHT_AVERAGING, weight_averaging_most_vulnerable

CLAIMS = (F1, F2, F3, F4, F5, F6, F7)

__all__ = [
    "CLAIMS",
    "F1",
    "F2",
    "F3",
    "F4",
    "F5",
    "F6",
    "F7",
    "FINETUNED",
    "INCONCLUSIVE",
    "NEW_TASKS",
    "NOT_SUPPORTED",
    "NO_DATA",
    "OTHER_METHODS",
    "SUPPORTED",
    "SURGERY",
    "TASK_ARITHMETIC",
    "THESE_TASKS",
    "UNDERPOWERED",
    "VERDICTS",
    "WEIGHT_AVERAGING",
    "Claim",
    "Finding",
    "ImageSample",
    "backdoor_asr_after_merging",
    "defense_effects",
    "fmt_p",
    "pct",
    "peq",
    "pp",
    "pretrained_surrogate_transfers_less",
    "relative_asr_above",
    "stronger_more_vulnerable",
    "surgery_more_vulnerable",
    "weight_averaging_most_vulnerable",
]
