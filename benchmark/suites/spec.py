"""Suite specs: YAML files in this folder, loaded into frozen dataclasses.

A suite fixes the whole protocol (tasks, backbone, recipes, merge hyperparameters, attacks, subset sizes,
seeds). `Suite.hash` is the content hash of the full spec; every stored result carries it, so results of a
changed protocol never mix with old ones.
"""

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from benchmark.batch_sizes import check_batch_sizes
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.hashing import content_hash

SUITE_DIR = Path(__file__).parent
DEFAULT_SUITE = "digits"
OUTSIDE_HASH = ("execution", "batch_sizes")
FINETUNE_SEEDS = ("recipe", "run")
"""Values of `recipe.finetune_seed`: `recipe` (the default) trains every task's fine-tune once, with
`recipe.seed`; `run` trains one per run seed, and a unit of seed s uses the fine-tunes trained with seed s."""


@dataclass(frozen=True)
class TaskSpec:
    """One classification task: its name, class count, and source-specific fields (domain, labels, HF ids)."""

    name: str
    n_classes: int
    options: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class BackboneSpec:
    """The image encoder: an open_clip architecture (`config` for a custom one) and input normalisation."""

    kind: str
    config: dict[str, Any]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    model_name: str | None = None
    pretrained: str | None = None


@dataclass(frozen=True)
class TransferSpec:
    """Transfer-attack protocol: surrogates, attacks, L-inf budget, steps, subset size, seeds, and how the
    seeds' subsets are drawn (`subsets`: `independent`, each seed its own random subset; `disjoint`, seed s
    the s-th block of one permutation, so no image is attacked under two seeds)."""

    surrogates: tuple[str, ...]
    attacks: tuple[str, ...]
    eps: float
    steps: int
    subset_size: int
    seeds: tuple[int, ...]
    norm: str = "Linf"
    subsets: str = "independent"

    @property
    def alpha(self) -> float:
        """Step size eps/steps, as the protocol fixes it."""
        return self.eps / self.steps


@dataclass(frozen=True)
class Suite:
    """A versioned benchmark protocol. Construct with `load_suite`; `raw` is the spec as written."""

    raw: dict[str, Any]

    @property
    def name(self) -> str:
        return self.raw["name"]

    @property
    def version(self) -> str:
        return str(self.raw["version"])

    @cached_property
    def hash(self) -> str:
        """Content hash of the whole protocol (16 hex chars): the spec without `execution` (how units are
        scheduled) and `batch_sizes` (how many images a pass takes on each device: the sizes that change floats
        are versions of the units and keys of the artefacts they change, `benchmark.batch_sizes`)."""
        return content_hash({k: v for k, v in self.raw.items() if k not in OUTSIDE_HASH})

    @property
    def execution(self) -> dict[str, Any]:
        """Scheduling hints, outside the protocol hash: `cpus_per_unit`, `gpus_per_unit` (Ray executor)."""
        return dict(self.raw.get("execution") or {})

    @property
    def data(self) -> dict[str, Any]:
        return self.raw["data"]

    @cached_property
    def tasks(self) -> tuple[TaskSpec, ...]:
        out = []
        for t in self.raw["tasks"]:
            opts = {k: v for k, v in t.items() if k not in ("name", "n_classes")}
            out.append(TaskSpec(name=t["name"], n_classes=int(t.get("n_classes", 0)), options=opts))
        return tuple(out)

    @property
    def task_names(self) -> list[str]:
        return [t.name for t in self.tasks]

    def task(self, name: str) -> TaskSpec:
        for t in self.tasks:
            if t.name == name:
                return t
        raise UnknownNameError("task", name, self.task_names)

    @cached_property
    def backbone(self) -> BackboneSpec:
        b = self.raw["backbone"]
        return BackboneSpec(
            kind=b["kind"],
            config=dict(b.get("config", {})),
            mean=tuple(b["mean"]),
            std=tuple(b["std"]),
            model_name=b.get("model_name"),
            pretrained=b.get("pretrained"),
        )

    @property
    def recipe(self) -> dict[str, Any]:
        return self.raw["recipe"]

    def finetune_seed(self, seed: int) -> int:
        """The training seed of the fine-tunes a unit of run seed `seed` uses: `seed` under
        `recipe.finetune_seed: run`, else `recipe.seed` (the pretrained encoder and the heads always stay at
        `recipe.seed`: they stand for the one public pretrained model and its zero-shot heads)."""
        mode = self.recipe.get("finetune_seed", "recipe")
        if mode not in FINETUNE_SEEDS:
            raise MergesecError(f"suite {self.name!r}: recipe.finetune_seed is {mode!r}; use one of "
                                f"{', '.join(FINETUNE_SEEDS)} (docs/suites.md)")
        if mode == "run" and self.recipe.get("finetuned"):
            raise MergesecError(f"suite {self.name!r} loads published fine-tuned checkpoints (recipe.finetuned), "
                                "which cannot be retrained per seed; remove recipe.finetune_seed: run or "
                                "recipe.finetuned")
        return int(seed) if mode == "run" else int(self.recipe["seed"])

    @property
    def finetune_seeds(self) -> tuple[int, ...]:
        """Every fine-tuning seed the suite's tracks use (merge, transfer and backdoor seeds, mapped by
        `finetune_seed`), `recipe.seed` first: the zoo builds a fine-tune of each task with each."""
        runs = [*self.merge_seeds, *self.transfer.seeds, *(self.backdoor.get("seeds", [0]) if self.backdoor else [])]
        base = int(self.recipe["seed"])
        return (base, *sorted({self.finetune_seed(s) for s in runs} - {base}))

    @property
    def merge_methods(self) -> dict[str, dict[str, Any]]:
        """Merge methods of this suite with the hyperparameters the suite fixes (defaults fill the rest)."""
        return {k: dict(v or {}) for k, v in self.raw["merging"]["methods"].items()}

    @property
    def merge_seeds(self) -> tuple[int, ...]:
        return tuple(self.raw["merging"].get("seeds", [0]))

    @cached_property
    def transfer(self) -> TransferSpec:
        t = self.raw["transfer"]
        return TransferSpec(
            surrogates=tuple(t["surrogates"]),
            attacks=tuple(t["attacks"]),
            eps=float(t["eps"]),
            steps=int(t["steps"]),
            subset_size=int(t["subset_size"]),
            seeds=tuple(t.get("seeds", [0])),
            norm=t.get("norm", "Linf"),
            subsets=t.get("subsets", "independent"),
        )

    @property
    def backdoor(self) -> dict[str, Any]:
        return self.raw.get("backdoor", {})


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`base` with `override` merged in: mappings recursively, anything else (lists included) replaced."""
    out = dict(base)
    for k, v in override.items():
        out[k] = _merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return out


def list_suites() -> list[str]:
    """Names of the suites shipped with mergesec."""
    return sorted(p.stem for p in SUITE_DIR.glob("*.yaml"))


def load_suite(name_or_path: str | Path | None = None) -> Suite:
    """Load a shipped suite by name, or any suite YAML by path; validates the required sections."""
    name_or_path = name_or_path or DEFAULT_SUITE
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.exists()):
        path = SUITE_DIR / f"{name_or_path}.yaml"
        if not path.exists():
            raise UnknownNameError("suite", str(name_or_path), list_suites())
    raw = yaml.safe_load(path.read_text())
    if isinstance(raw, dict) and "extends" in raw:  # a variant: the named suite with these sections merged in
        raw = _merge(load_suite(raw.pop("extends")).raw, raw)
    required = ("name", "version", "data", "tasks", "backbone", "recipe", "merging", "transfer")
    missing = [k for k in required if k not in (raw or {})]
    if missing:
        raise MergesecError(f"suite file {path} lacks section(s) {missing}; see docs/suites.md for the format")
    check_batch_sizes(raw["name"], raw.get("batch_sizes"))
    suite = Suite(raw=raw)
    suite.finetune_seed(0)  # validates recipe.finetune_seed now, not mid-run
    return suite
