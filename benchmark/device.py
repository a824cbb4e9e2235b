"""Which torch device a run computes on, and the CPU thread policy that goes with it.

`--device auto|cpu|cuda|cuda:i` (or `$MERGESEC_DEVICE`; the option wins; default `cpu`, whose numbers are
bitwise reproducible at a fixed thread count): `auto` is the first CUDA device when one is available, else
the CPU. The CLI writes the resolved device back to `$MERGESEC_DEVICE`, so worker processes and the
submission workflow inherit it; `RunContext` reads it through `default_device()`.
Models and the tensors they see live on that device; results come back to the CPU only to be stored. On the
CPU, torch is pinned to `$MERGESEC_THREADS` threads (default 1: float results are bitwise reproducible only
at a fixed thread count, and the digits models are tiny); on an accelerator the host threads only feed it,
so the pin is lifted (`$MERGESEC_THREADS` still applies if set).
"""

import os

import torch

from benchmark.errors import MergesecError

DEVICE_ENV = "MERGESEC_DEVICE"
THREADS_ENV = "MERGESEC_THREADS"
CHOICES = "auto | cpu | cuda | cuda:<index>"


def resolve_device(spec: str | torch.device | None = None) -> torch.device:
    """The device `spec` names (default `$MERGESEC_DEVICE`, else the CPU). A CUDA device that this machine
    lacks, or a name that is no device, raises one `MergesecError` with the fix."""
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = (spec or os.environ.get(DEVICE_ENV, "") or "cpu").strip().lower()
    if text == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(text)
    except RuntimeError:
        raise MergesecError(f"--device {text!r} is not a device; use {CHOICES} (or set ${DEVICE_ENV})") from None
    if device.type == "cpu":
        return torch.device("cpu")
    if device.type != "cuda":
        raise MergesecError(f"--device {text!r}: mergesec runs on {CHOICES}, not {device.type!r}")
    if not torch.cuda.is_available():
        raise MergesecError(
            f"--device {text!r} asks for CUDA, but this torch ({torch.__version__}) sees no CUDA device "
            f"(torch.cuda.is_available() is False). Fix: run with --device cpu (or auto), or install a CUDA "
            "build of torch on a machine with an NVIDIA GPU and driver"
        )
    index = 0 if device.index is None else device.index
    if index >= torch.cuda.device_count():
        raise MergesecError(
            f"--device {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0 .. "
            f"cuda:{torch.cuda.device_count() - 1}); pick one of those"
        )
    return torch.device("cuda", index)


def default_device() -> torch.device:
    """The device of this process's runs: `$MERGESEC_DEVICE` resolved, the CPU when unset."""
    return resolve_device(os.environ.get(DEVICE_ENV) or "cpu")


def use_device(spec: str | None) -> torch.device:
    """Resolve `spec` (a `--device` value; None: `$MERGESEC_DEVICE`), export it as `$MERGESEC_DEVICE` for
    the workers this process starts, and apply the thread policy. What the CLI commands call."""
    device = resolve_device(spec)
    os.environ[DEVICE_ENV] = str(device)
    configure_threads(device)
    return device


def configure_threads(device: torch.device) -> int:
    """Apply the thread policy for `device` (see the module docstring); returns torch's thread count."""
    threads = os.environ.get(THREADS_ENV, "").strip()
    if threads:
        torch.set_num_threads(int(threads))
    elif device.type == "cpu":
        torch.set_num_threads(1)
    else:
        torch.set_num_threads(len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count())
    return torch.get_num_threads()


def describe(device: torch.device) -> str:
    """A human-readable name of `device` for provenance and the benchmark scripts."""
    if device.type == "cuda":
        return f"{device} ({torch.cuda.get_device_name(device)})"
    return f"cpu ({torch.get_num_threads()} torch threads)"
