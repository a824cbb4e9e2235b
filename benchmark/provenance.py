"""Provenance recorded with every run: code version, package versions, hardware."""

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

import benchmark

PACKAGES = (
    "torch", "torchvision", "open_clip_torch", "torchattacks", "datasets", "safetensors", "numpy", "scipy",
    "pandas", "pingouin", "scikit-learn", "duckdb", "streamlit",
)


def git_commit() -> str | None:
    """HEAD of the checkout mergesec runs from, suffixed '-dirty' when tracked files differ; None outside git."""
    root = Path(benchmark.__file__).resolve().parent.parent
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return head + ("-dirty" if dirty else "")


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def hardware() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "device": os.environ.get("MERGESEC_DEVICE") or "cpu",  # benchmark.device: where the models computed
    }


def provenance() -> dict[str, Any]:
    """Everything a reader needs to say where a number came from."""
    return {
        "git_commit": git_commit(),
        "mergesec_version": benchmark.__version__,
        "packages": package_versions(),
        "hardware": hardware(),
    }
