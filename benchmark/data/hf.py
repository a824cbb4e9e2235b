"""Paper-scale task data through Hugging Face `datasets` (the `huggingface` data source).

Each task of the suite names a dataset (`hf_id`, optional `hf_config` and `revision`), its splits
(`train_split`, `test_split`) and columns (`image_column`, `label_column`). Where the data comes from, first
hit wins:

1. `$MERGESEC_DATA_DIR/<task>`: a folder written by `DatasetDict.save_to_disk` (read with `load_from_disk`),
   or a local snapshot of the dataset's Hub repository (`hf download --repo-type dataset <hf_id>
   --local-dir ...`, read with `load_dataset(folder)`);
2. the Hugging Face datasets cache (`$HF_DATASETS_CACHE`), read in offline mode: no network is touched;
3. a download from the Hub, unless offline mode is on (`HF_DATASETS_OFFLINE=1` / `HF_HUB_OFFLINE=1`).

If all fail, `MissingResourceError` names the dataset, what was tried and how to point mergesec at a copy.

Images are decoded lazily, one item at a time: RGB, `Resize` (shorter side, bicubic) and `CenterCrop` to the
suite's `image_size`, `ToTensor` (values in [0, 1]; normalisation is inside the model). The dev split is a
seeded fraction of the train split (`data.dev`: fraction, max_size, seed; task vectors' and AdaMerging's
10%, at most 5000, seed 0) and the train split the models are fine-tuned on is the rest, so the two are
disjoint. `data.test.max_size` optionally caps the test split to a seeded subset (null: the full split).
"""

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from torch.utils.data import Dataset
from torchvision import transforms

from benchmark.data.loader import TaskData
from benchmark.errors import MergesecError, MissingResourceError
from benchmark.suites import Suite, TaskSpec

DATA_DIR_ENV = "MERGESEC_DATA_DIR"


def _to_rgb(image: Any) -> Any:
    return image.convert("RGB")


def image_transform(image_size: int) -> Callable[[Any], torch.Tensor]:
    """PIL image -> float tensor (3, S, S) in [0, 1]: RGB, bicubic resize of the shorter side, centre crop."""
    return transforms.Compose([
        _to_rgb,
        transforms.Resize(image_size, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(image_size),
        transforms.ToTensor(),
    ])


class HFImageDataset(Dataset):
    """Rows `indices` of a Hugging Face dataset as (x, y): x the transformed image, y an int64 label."""

    def __init__(self, data: datasets.Dataset, indices: np.ndarray, image_column: str, label_column: str,
                 transform: Callable[[Any], torch.Tensor]):
        self.data = data.select_columns([image_column, label_column])
        self.indices = np.asarray(indices, dtype=np.int64)
        self.image_column, self.label_column, self.transform = image_column, label_column, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.data[int(self.indices[i])]
        return self.transform(row[self.image_column]), torch.tensor(int(row[self.label_column]))

    @property
    def targets(self) -> torch.Tensor:
        """All labels, in order, without decoding any image."""
        labels = np.asarray(self.data.select_columns([self.label_column])[self.label_column])
        return torch.as_tensor(labels[self.indices], dtype=torch.long)


def split_dev(n_train: int, fraction: float, max_size: int | None, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(train, dev) row indices: a seeded `fraction` of the rows (at most `max_size`, at least 1) is dev,
    the rest train; both sorted, disjoint, together all rows."""
    n_dev = int(fraction * n_train)
    if max_size is not None:
        n_dev = min(n_dev, int(max_size))
    n_dev = max(1, n_dev)
    if n_dev >= n_train:
        raise MergesecError(f"a train split of {n_train} rows is too small to hold out a dev split of {n_dev}")
    perm = np.random.default_rng(seed).permutation(n_train)
    return np.sort(perm[n_dev:]), np.sort(perm[:n_dev])


def subset(n: int, max_size: int | None, seed: int) -> np.ndarray:
    """All `n` row indices, or a seeded sorted subset of `max_size` of them."""
    if max_size is None or max_size >= n:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).permutation(n)[: int(max_size)])


@contextmanager
def _offline() -> Iterator[None]:
    """Hugging Face offline mode for the duration of the block: only local caches are read."""
    import huggingface_hub.constants as hub

    saved = datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE
    datasets.config.HF_HUB_OFFLINE = hub.HF_HUB_OFFLINE = True
    try:
        yield
    finally:
        datasets.config.HF_HUB_OFFLINE, hub.HF_HUB_OFFLINE = saved


def _short(e: BaseException) -> str:
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def _from_local(folder: Path, hf_config: str | None, splits: tuple[str, ...]) -> dict[str, datasets.Dataset]:
    if (folder / "dataset_dict.json").exists():
        dd = datasets.load_from_disk(str(folder))
    elif (folder / "dataset_info.json").exists() or (folder / "state.json").exists():
        raise MissingResourceError(
            f"{folder} holds a single Dataset; save the whole DatasetDict (with splits {list(splits)}) instead"
        )
    else:  # a local snapshot of the Hub repository (parquet files + README configs)
        with _offline():
            dd = datasets.load_dataset(str(folder), name=hf_config)
    missing = [s for s in splits if s not in dd]
    if missing:
        raise MissingResourceError(f"{folder} lacks split(s) {missing} (it has {list(dd)})")
    return {s: dd[s] for s in splits}


def _from_hub(hf_id: str, hf_config: str | None, revision: str | None, splits: tuple[str, ...],
              offline: bool) -> dict[str, datasets.Dataset]:
    kwargs: dict[str, Any] = {"name": hf_config, "revision": revision}
    if offline:
        with _offline():
            return {s: datasets.load_dataset(hf_id, split=s, **kwargs) for s in splits}
    return {s: datasets.load_dataset(hf_id, split=s, **kwargs) for s in splits}


@lru_cache(maxsize=16)
def _load_splits(task: str, hf_id: str, hf_config: str | None, revision: str | None, splits: tuple[str, ...],
                 data_dir: str | None) -> dict[str, datasets.Dataset]:
    """The task's raw splits, from the first source that has them (see the module docstring)."""
    tried: list[str] = []
    if data_dir:
        folder = Path(data_dir).expanduser() / task
        if folder.is_dir():
            try:
                return _from_local(folder, hf_config, splits)
            except Exception as e:
                tried.append(f"${DATA_DIR_ENV}/{task} = {folder}: {_short(e)}")
        else:
            tried.append(f"${DATA_DIR_ENV}/{task} = {folder}: no such folder")
    else:
        tried.append(f"${DATA_DIR_ENV}: not set")
    try:
        return _from_hub(hf_id, hf_config, revision, splits, offline=True)
    except Exception as e:
        tried.append(f"the Hugging Face datasets cache {datasets.config.HF_DATASETS_CACHE}: {_short(e)}")
    if datasets.config.HF_HUB_OFFLINE:
        tried.append("download from the Hub: skipped, offline mode is on (HF_DATASETS_OFFLINE / HF_HUB_OFFLINE)")
    else:
        try:
            return _from_hub(hf_id, hf_config, revision, splits, offline=False)
        except Exception as e:
            tried.append(f"download from the Hub: {_short(e)}")
    raise MissingResourceError(_missing_data_message(task, hf_id, hf_config, splits, tried))


def _missing_data_message(task: str, hf_id: str, hf_config: str | None, splits: tuple[str, ...],
                          tried: list[str]) -> str:
    args = f"'{hf_id}'" + (f", '{hf_config}'" if hf_config else "")
    return (
        f"data of task {task!r} (Hugging Face dataset {hf_id}"
        + (f", config {hf_config}" if hf_config else "")
        + f", splits {list(splits)}) is not on this machine. Tried:\n"
        + "".join(f"  - {t}\n" for t in tried)
        + "Fix, on a machine with internet, then copy the result here:\n"
        f"  (a) python -c \"import datasets; datasets.load_dataset({args}).save_to_disk('DIR/{task}')\" and "
        f"set {DATA_DIR_ENV}=DIR (the folder holding {task}/, one folder per task); or\n"
        f"  (b) hf download --repo-type dataset {hf_id} --local-dir DIR/{task} and set {DATA_DIR_ENV}=DIR; or\n"
        f"  (c) python -c \"import datasets; datasets.load_dataset({args})\" to fill the datasets cache, copy "
        "that cache to $HF_DATASETS_CACHE here and set HF_DATASETS_OFFLINE=1."
    )


def _classnames(spec: TaskSpec, feature: Any) -> list[str]:
    if spec.options.get("classnames"):
        return [str(c) for c in spec.options["classnames"]]
    if isinstance(feature, datasets.ClassLabel):
        return [n.replace("_", " ") for n in feature.names]
    raise MergesecError(
        f"task {spec.name}: label column {spec.options.get('label_column', 'label')!r} is not a ClassLabel, so "
        "it carries no class names; list them as `classnames` in the task's entry of the suite"
    )


def hf_task(suite: Suite, spec: TaskSpec) -> TaskData:
    """The task's train/dev/test splits from its Hugging Face dataset (local copy, cache, or download)."""
    o = spec.options
    if "hf_id" not in o:
        raise MergesecError(f"task {spec.name}: a `huggingface` suite task needs `hf_id` (see docs/suites.md)")
    image_col, label_col = o.get("image_column", "image"), o.get("label_column", "label")
    train_split, test_split = o.get("train_split", "train"), o.get("test_split", "test")
    raw = _load_splits(spec.name, o["hf_id"], o.get("hf_config"), o.get("revision"), (train_split, test_split),
                       os.environ.get(DATA_DIR_ENV) or None)
    train_raw, test_raw = raw[train_split], raw[test_split]
    for split, ds in ((train_split, train_raw), (test_split, test_raw)):
        absent = [c for c in (image_col, label_col) if c not in ds.column_names]
        if absent:
            raise MergesecError(
                f"task {spec.name}: split {split!r} of {o['hf_id']} has no column(s) {absent} (it has "
                f"{ds.column_names}); set image_column/label_column in the suite"
            )
    classnames = _classnames(spec, train_raw.features[label_col])
    if spec.n_classes != len(classnames):
        raise MergesecError(
            f"task {spec.name}: the suite says n_classes={spec.n_classes} but {o['hf_id']} has "
            f"{len(classnames)} classes"
        )
    data, transform = suite.data, image_transform(int(suite.data["image_size"]))
    dev_cfg, test_cfg = data.get("dev", {}), data.get("test") or {}
    train_idx, dev_idx = split_dev(len(train_raw), float(dev_cfg.get("fraction", 0.1)),
                                   dev_cfg.get("max_size", 5000), int(dev_cfg.get("seed", 0)))
    test_idx = subset(len(test_raw), test_cfg.get("max_size"), int(test_cfg.get("seed", 0)))

    def part(ds: datasets.Dataset, idx: np.ndarray) -> HFImageDataset:
        return HFImageDataset(ds, idx, image_col, label_col, transform)

    return TaskData(spec.name, part(train_raw, train_idx), part(train_raw, dev_idx), part(test_raw, test_idx),
                    spec.n_classes, classnames)
