"""Find and check submissions (`submissions/<slug>/`), and call their entry point in the sandbox.

The parent process never imports submitted code: `sandboxed_call` runs the entry point in the sandbox
(`sandbox.py`) and validates what comes back. `registration.py` registers a submission from its manifest
alone, with `fn` calling the sandbox, so the tracks merge with a submitted method exactly as with a
built-in one, through `benchmark.merging.merge`, and every call is isolated.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.submissions.manifest import MANIFEST, SubmissionError, SubmissionManifest, load_manifest
from benchmark.submissions.sandbox import Call, Limits, failure

if TYPE_CHECKING:
    from benchmark.types import StateDict

SUBMISSIONS_DIR = Path(__file__).resolve().parents[2] / "submissions"
IGNORED_DIRS = frozenset({"__pycache__", ".git", ".ipynb_checkpoints", ".pytest_cache"})
IGNORED_SUFFIXES = frozenset({".pyc", ".pyo"})
DOC_SUFFIXES = frozenset({".md"})  # not hashed: documentation does not change results
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".th"})
MAX_FOLDER_BYTES = 2 * 1024**3


def submissions_dir() -> Path:
    """$MERGESEC_SUBMISSIONS, else the repository's submissions/ folder."""
    return Path(os.environ.get("MERGESEC_SUBMISSIONS", SUBMISSIONS_DIR))


@dataclass(frozen=True)
class Submission:
    """A checked submission folder: its manifest and the content hash of its files."""

    slug: str
    folder: Path
    manifest: SubmissionManifest
    code_hash: str
    files: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.manifest.name

    @property
    def kind(self) -> str:
        return self.manifest.kind


def _files(folder: Path) -> list[Path]:
    out = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        dirnames[:] = sorted(d for d in dirnames if d not in IGNORED_DIRS)
        for f in sorted(filenames):
            p = Path(dirpath) / f
            if p.suffix in IGNORED_SUFFIXES:
                continue
            out.append(p)
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix())


def content_hash(folder: Path | str, length: int = 16) -> str:
    """sha256 over the folder's files (sorted relative paths and bytes). Ignored: __pycache__ and other tool
    folders, compiled bytecode, and Markdown documentation (*.md), so editing a README does not invalidate
    results while any change to code, manifest or data does."""
    folder = Path(folder)
    h = hashlib.sha256()
    for p in _files(folder):
        if p.suffix in DOC_SUFFIXES:
            continue
        rel = p.relative_to(folder).as_posix()
        h.update(len(rel.encode()).to_bytes(8, "little") + rel.encode())
        data = p.read_bytes()
        h.update(len(data).to_bytes(8, "little") + data)
    return h.hexdigest()[:length]


def _is_pickle(path: Path) -> bool:
    """Pickled data (protocol 2+) or a torch zip checkpoint (which holds a pickle), by content."""
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError:
        return False
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    if head == b"PK\x03\x04":
        try:
            with zipfile.ZipFile(path) as z:
                return any(n.endswith(".pkl") for n in z.namelist())
        except (zipfile.BadZipFile, OSError):
            return False
    return False


def check_files(folder: Path) -> list[str]:
    """Refuse what a submission may not contain: symlinks, pickled checkpoints (by suffix or content),
    unreadable .safetensors files, more than 2 GiB in total. Returns the relative file names."""
    problems, names, total = [], [], 0
    for p in _files(folder):
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            problems.append(f"{rel}: symbolic links are not allowed; copy the file into the folder")
            continue
        total += p.stat().st_size
        if p.suffix.lower() in PICKLE_SUFFIXES or _is_pickle(p):
            problems.append(
                f"{rel}: pickled checkpoints are refused (loading them can run arbitrary code); convert it to "
                "safetensors: python -c \"import torch, safetensors.torch as s; "
                f"s.save_file(torch.load('{rel}', weights_only=True), '{Path(rel).stem}.safetensors')\""
            )
        elif p.suffix == ".safetensors":
            problems += _check_safetensors(p, rel)
        names.append(rel)
    if total > MAX_FOLDER_BYTES:
        problems.append(f"the folder holds {total / 1024**3:.1f} GiB; the limit is 2 GiB")
    if problems:
        raise SubmissionError(f"submission folder {folder}: " + "; ".join(problems))
    return names


def _check_safetensors(path: Path, rel: str) -> list[str]:
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="numpy") as f:
            list(f.keys())
    except Exception as e:
        return [f"{rel}: not a readable safetensors file ({e}); re-export it with safetensors.torch.save_file"]
    return []


def _module_file(folder: Path, module: str) -> Path | None:
    base = folder.joinpath(*module.split("."))
    for p in (base.with_suffix(".py"), base / "__init__.py"):
        if p.is_file():
            return p
    return None


def resolve(target: str | Path) -> Path:
    """A submission folder from a path (`submissions/my_method`) or a slug (`my_method`)."""
    p = Path(target)
    if p.is_dir():
        return p.resolve()
    q = submissions_dir() / str(target)
    if q.is_dir():
        return q.resolve()
    known = ", ".join(list_slugs()) or "none"
    raise SubmissionError(
        f"no submission folder {str(target)!r} (looked at {p} and {q}); pass a folder holding {MANIFEST} or one "
        f"of the slugs in {submissions_dir()}: {known}"
    )


def list_slugs(root: Path | None = None) -> list[str]:
    """Slugs of the submission folders (those with a submission.toml) under `root`."""
    root = Path(root) if root is not None else submissions_dir()
    if not root.is_dir():
        return []
    return sorted(p.parent.name for p in root.glob(f"*/{MANIFEST}"))


def load_submission(target: str | Path) -> Submission:
    """Read and check a submission folder: manifest schema, name = folder name, entry-point file present,
    no pickled checkpoints. Imports nothing from the folder."""
    folder = resolve(target)
    manifest = load_manifest(folder)
    slug = folder.name
    where = f"{folder / MANIFEST}"
    if manifest.name != slug:
        raise SubmissionError(
            f"{where}: field `name`: expected the folder name {slug!r} (the slug), got {manifest.name!r}; "
            "rename the folder or the method so they match"
        )
    module = manifest.entry_point.partition(":")[0]
    if _module_file(folder, module) is None:
        raise SubmissionError(
            f"{where}: field `entry_point`: module {module!r} not found in the folder (expected "
            f"{module.replace('.', '/')}.py); `entry_point` is 'module:callable' relative to {folder}"
        )
    files = check_files(folder)
    return Submission(slug, folder, manifest, content_hash(folder), tuple(files))


# -- running in the sandbox ------------------------------------------------------------------------------


def _write_inputs(workdir: Path, pretrained: StateDict, finetuned: list[StateDict]) -> None:
    from safetensors.torch import save_file

    paths = Call.input_paths(workdir, len(finetuned))
    for path, sd in zip(paths, [pretrained, *finetuned], strict=True):
        save_file({k: v.detach().to("cpu").contiguous() for k, v in sd.items()}, str(path))


def _load_outputs(paths: list[Path], device: Any) -> list[StateDict]:
    from safetensors.torch import load_file

    out = []
    for p in paths:
        try:
            sd = load_file(str(p))
        except Exception as e:
            raise SubmissionError(f"the worker's output {p.name} is not readable safetensors ({e})") from None
        out.append({k: v.to(device) for k, v in sd.items()})
    return out


def _check_state(sub: Submission, result: Any, reference: StateDict, what: str) -> None:
    """check_output's rules (dict of tensors, same keys, shapes and dtypes, finite) -> SubmissionError."""
    from benchmark.errors import MergeOutputError
    from benchmark.merging.registry import MergeMethod
    from benchmark.merging.validate import check_output

    try:
        check_output(MergeMethod(sub.name, _noop, source=f"submission:{sub.slug}"), result, reference, 1)
    except MergeOutputError as e:
        msg = str(e) if sub.kind == "merge" else str(e).replace(f"merge method {sub.name!r}", f"defense {sub.name!r}")
        raise SubmissionError(f"submission {sub.slug!r} failed (checking {what}): {msg}") from None


def _noop(pretrained: Any, finetuned: Any) -> None:  # placeholder fn for check_output's messages
    return None


def sandboxed_call(sub: Submission, pretrained: StateDict, finetuned: list[StateDict], hparams: dict[str, Any],
                   limits: Limits, repeat: int = 1) -> list[Any]:
    """Run the submission's entry point on the inputs in the sandbox; validate and return its results
    (`repeat` of them: a state dict each for a merge, a list of state dicts each for a defense). Raises
    `SubmissionError` with the reason on any failure; never returns unvalidated data."""
    device = next(iter(pretrained.values())).device if pretrained else "cpu"
    with Call(sub.slug, sub.folder, sub.manifest.entry_point, sub.kind, hparams, limits,
              inputs=[Path()] * (len(finetuned) + 1), repeat=repeat) as call:
        _write_inputs(call.dir, pretrained, finetuned)
        res = call.result()
        if not res.ok:
            raise failure(sub.slug, res)
        loaded = _load_outputs(res.outputs, device)
    return _assemble(sub, loaded, pretrained, finetuned, repeat)


def _assemble(sub: Submission, loaded: list[StateDict], pretrained: StateDict, finetuned: list[StateDict],
              repeat: int) -> list[Any]:
    results: list[Any] = []
    if sub.kind == "merge":
        for r, sd in enumerate(loaded):
            _check_state(sub, sd, pretrained, "the merged state dict" + (f" (run {r + 1})" if repeat > 1 else ""))
            results.append({k: sd[k] for k in pretrained})
    else:
        n = len(finetuned)
        for r in range(repeat):
            models = loaded[r * n:(r + 1) * n]
            for i, sd in enumerate(models):
                _check_state(sub, sd, finetuned[i], f"the defended model {i}")
            results.append([{k: sd[k] for k in finetuned[i]} for i, sd in enumerate(models)])
    return results
