"""Defenses against backdoors in model merging: the registry, `defended_merge()` and the built-ins
(docs/backdoor.md).

Built-in: `ibvs` (merge stage; Injection Backdoor Vector Subtraction, Pawlak et al. 2025) and
`fine_pruning` (post-merge; Liu et al., RAID 2018). Plugins register with `@register_defense` from a
`submissions/<slug>/` folder or a package's `mergesec.defenses` entry point.
"""

from benchmark.defenses import fine_pruning, ibvs  # noqa: F401  (registers the built-ins)
from benchmark.defenses.api import CleanedInputs, DefenseInputs, as_output, defended_merge
from benchmark.defenses.registry import (
    ENTRY_POINT_GROUP,
    Defense,
    DefenseError,
    check_defense_hparams,
    get_defense,
    list_defenses,
    register,
    register_defense,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "CleanedInputs",
    "Defense",
    "DefenseError",
    "DefenseInputs",
    "as_output",
    "check_defense_hparams",
    "defended_merge",
    "get_defense",
    "list_defenses",
    "register",
    "register_defense",
]
