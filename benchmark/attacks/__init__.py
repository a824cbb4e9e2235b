"""Attacks: transfer attacks (registered torchattacks 3.5.1 wrappers, `benchmark.attacks.transfer`).

Importing this package checks the installed torchattacks version (MergesecError with the fix if wrong).
"""

from benchmark.attacks.transfer import (
    ATTACKS,
    TORCHATTACKS_VERSION,
    TransferAttack,
    get_attack,
    list_attacks,
    make_attack,
    register_attack,
)

__all__ = [
    "ATTACKS",
    "TORCHATTACKS_VERSION",
    "TransferAttack",
    "get_attack",
    "list_attacks",
    "make_attack",
    "register_attack",
]
