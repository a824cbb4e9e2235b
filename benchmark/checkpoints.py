"""Checkpoint I/O: safetensors only, validated on read, written atomically.

Pickled checkpoints are never loaded: they can run arbitrary code. A `.pt`/`.bin` file is rejected with the
command that converts it.
"""

import os
import uuid
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from benchmark.errors import CheckpointError
from benchmark.types import StateDict


def save_state(path: Path, state: StateDict, metadata: dict[str, str] | None = None) -> None:
    """Write `state` as safetensors atomically (temp file + rename), so a kill never leaves half a file."""
    check_finite(state, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{uuid.uuid4().hex}")  # unique across the nodes sharing a cache
    save_file({k: v.detach().contiguous().cpu() for k, v in state.items()}, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_state(path: Path, expected: StateDict | None = None) -> StateDict:
    """Read a safetensors checkpoint; check finiteness and, if given, keys and shapes against `expected`."""
    path = Path(path)
    if path.suffix != ".safetensors":
        raise CheckpointError(
            f"{path}: only .safetensors checkpoints are read (pickled .pt/.bin files can run code). Convert "
            "it where you trust it: python -c \"import torch, safetensors.torch as s; "
            f"s.save_file(torch.load('{path.name}', weights_only=True), '{path.stem}.safetensors')\""
        )
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint file not found")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e}); re-export it") from e
    check_finite(state, str(path))
    if expected is not None:
        check_compatible(state, expected, str(path))
    return state


def check_finite(state: StateDict, where: str) -> None:
    """Raise CheckpointError naming the first tensor with NaN or inf values."""
    for k, v in state.items():
        if v.is_floating_point() and not torch.isfinite(v).all():
            raise CheckpointError(f"{where}: tensor {k!r} has NaN/inf values; the checkpoint is corrupt")


def check_compatible(state: StateDict, expected: StateDict, where: str) -> None:
    """Raise CheckpointError if `state` does not have exactly `expected`'s keys and shapes."""
    missing, extra = sorted(set(expected) - set(state)), sorted(set(state) - set(expected))
    if missing or extra:
        raise CheckpointError(
            f"{where}: keys do not match the suite's backbone (missing {missing[:5]}, unexpected {extra[:5]}); "
            "the checkpoint must be fine-tuned from the suite's pretrained model"
        )
    for k, v in expected.items():
        if state[k].shape != v.shape:
            raise CheckpointError(f"{where}: {k!r} has shape {tuple(state[k].shape)}, expected {tuple(v.shape)}")
