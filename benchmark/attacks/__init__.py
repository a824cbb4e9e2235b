"""Attacks: transfer attacks (registered torchattacks 3.5.1 wrappers, 8-bit outputs, `benchmark.attacks.transfer`).

Importing this package checks the installed torchattacks version (MergesecError with the fix if wrong).
"""

from benchmark.attacks.transfer import (
    ATTACKS,
    CRAFT_BATCH_SIZE,
    TORCHATTACKS_VERSION,
    TransferAttack,
    get_attack,
    list_attacks,
    make_attack,
    quantize,
    register_attack,
    ti_kernel_length,
    to_float,
)

__all__ = [
    "ATTACKS",
    "CRAFT_BATCH_SIZE",
    "TORCHATTACKS_VERSION",
    "TransferAttack",
    "get_attack",
    "list_attacks",
    "make_attack",
    "quantize",
    "register_attack",
    "ti_kernel_length",
    "to_float",
]
