"""Published fine-tuned encoders instead of fine-tuning: a suite's `recipe.finetuned`.

    recipe:
      finetuned:
        source: fusionbench          # or a local folder (see below)
        revisions: {sun397: <commit>, ..., _pretrained_: <commit>}   # optional pins; default: the cached/main one

`fusionbench`: FusionBench's CLIP ViT-B/32 task models `tanganke/clip-vit-base-patch32_<task>` (transformers
`CLIPVisionModel` weights) and their base `openai/clip-vit-base-patch32` (the pretrained encoder and the image
projection), read from the Hugging Face hub cache, downloaded when not offline (`HF_HUB_OFFLINE=1` forbids
it). `repos` overrides the repository of a task (or `_pretrained_`). A local folder holds the same files:
`<folder>/<task>/model.safetensors` (or `<folder>/<task>.safetensors`) and `<folder>/_pretrained_/...`.

Only safetensors files are read. Each checkpoint is converted onto open_clip's image tower
(`benchmark.zoo.convert`) and checked key by key against the suite's backbone. What identifies a checkpoint
(the hub commit it resolved to, or the file's SHA-256 for a local folder) is part of the zoo's cache key and
of the `models` rows, so every stored number names the exact weights it came from. The pretrained encoder
comes from the same base checkpoint, so the task vectors are exactly FusionBench's.
"""

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from benchmark.errors import MergesecError, MissingResourceError
from benchmark.suites import Suite
from benchmark.types import StateDict
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.convert import check_state_dict, hf_clip_vision_to_open_clip, read_safetensors

PRETRAINED = "_pretrained_"
FUSIONBENCH_BASE = "openai/clip-vit-base-patch32"
# mergesec task name -> FusionBench's repository suffix (FusionBench calls Cars `stanford-cars`).
FUSIONBENCH_TASKS = {"sun397": "sun397", "cars": "stanford-cars", "resisc45": "resisc45", "eurosat": "eurosat",
                     "svhn": "svhn", "gtsrb": "gtsrb", "mnist": "mnist", "dtd": "dtd"}


@dataclass(frozen=True)
class Checkpoint:
    """One published checkpoint on disk: where it is and what pins it (hub repo + commit, or a file hash)."""

    path: Path
    identity: dict[str, str]


def _hub(repo: str, revision: str | None) -> Checkpoint:
    import huggingface_hub
    from huggingface_hub import constants

    try:
        folder = huggingface_hub.snapshot_download(
            repo, revision=revision, allow_patterns=["*.safetensors", "*.json"],
            local_files_only=bool(constants.HF_HUB_OFFLINE))
    except Exception as e:
        why = " ".join(str(e).split())[:300]
        raise MissingResourceError(
            f"checkpoint {repo}" + (f"@{revision}" if revision else "") + f" is not in the Hugging Face hub cache "
            f"{constants.HF_HUB_CACHE} and could not be downloaded ({type(e).__name__}: {why}). Fix: on a machine "
            f"with internet run `hf download {repo} --include '*.safetensors' '*.json'`"
            + (f" --revision {revision}" if revision else "")
            + ", copy the cache here ($HF_HUB_CACHE) and set HF_HUB_OFFLINE=1; or point recipe.finetuned.source at "
            "a local folder of the files (docs/suites.md)"
        ) from e
    return Checkpoint(Path(folder), {"repo": repo, "revision": Path(folder).name})


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def _local(folder: Path, name: str) -> Checkpoint:
    for path in (folder / name / "model.safetensors", folder / f"{name}.safetensors"):
        if path.is_file():
            return Checkpoint(path, {"file": f"{name}/{path.name}" if path.parent != folder else path.name,
                                     "sha256": _sha256(path)})
    raise MissingResourceError(
        f"recipe.finetuned.source {folder}: no {name}/model.safetensors or {name}.safetensors there; put the "
        f"converted or transformers checkpoint of {name!r} there (only safetensors files are read)"
    )


class PublicCheckpoints:
    """The suite's published checkpoints: the base (pretrained) one and one per task, resolved on creation."""

    def __init__(self, suite: Suite):
        cfg: dict[str, Any] = dict(suite.recipe["finetuned"])
        self.suite, self.source = suite, str(cfg.get("source", ""))
        revisions, repos = dict(cfg.get("revisions") or {}), dict(cfg.get("repos") or {})
        names = [PRETRAINED, *suite.task_names]
        if self.source == "fusionbench":
            unknown = [t for t in suite.task_names if t not in FUSIONBENCH_TASKS and t not in repos]
            if unknown:
                raise MergesecError(f"recipe.finetuned: FusionBench has no CLIP ViT-B/32 model for task(s) {unknown};"
                                    " name their repositories under recipe.finetuned.repos")
            repos = {PRETRAINED: FUSIONBENCH_BASE,
                     **{t: f"tanganke/clip-vit-base-patch32_{FUSIONBENCH_TASKS.get(t, t)}" for t in suite.task_names},
                     **repos}
            self.checkpoints = {n: _hub(repos[n], revisions.get(n)) for n in names}
        elif self.source and Path(os.path.expanduser(self.source)).is_dir():
            folder = Path(os.path.expanduser(self.source))
            self.checkpoints = {n: _local(folder, n) for n in names}
        else:
            raise MergesecError(
                f"recipe.finetuned.source {self.source!r} is neither 'fusionbench' nor an existing folder; see "
                "docs/suites.md (published checkpoints)"
            )

    def spec(self, name: str) -> dict[str, Any]:
        """What the zoo's cache key of `name` (a task, or PRETRAINED) records: the source and the pin."""
        return {"stage": "published", "source": "fusionbench" if self.source == "fusionbench" else "local",
                "name": name, **self.checkpoints[name].identity, "backbone": self.suite.raw["backbone"]}

    def encoder_state(self, name: str) -> StateDict:
        """`name`'s checkpoint on open_clip's image tower, checked against the suite's backbone. The image
        projection comes from the file itself or, for a `CLIPVisionModel`, from the base checkpoint."""
        state = read_safetensors(self.checkpoints[name].path)
        projection = None
        if "visual_projection.weight" not in state and "proj" not in state:
            projection = read_safetensors(self.checkpoints[PRETRAINED].path).get("visual_projection.weight")
        converted = state if "proj" in state else hf_clip_vision_to_open_clip(state, projection)
        with torch.device("meta"):
            expected = build_encoder(self.suite.backbone).state_dict()
        check_state_dict(converted, expected, f"{self.checkpoints[name].path} ({name})")
        return {k: v.float().contiguous() for k, v in converted.items()}
