"""What a submission folder may hold, its content hash, and the read-only copy the sandbox runs.

The rule that makes "what runs is what was hashed" hold: the worker sees only `snapshot(folder, dest)`, a
copy of exactly the files `content_hash` covers, written from the same bytes that were hashed. Refused:
symbolic links (to files or folders), compiled bytecode (`__pycache__/`, `*.pyc`, `*.pyo`: it could run
instead of the reviewed `.py`), pickled checkpoints (by suffix or content), unreadable `.safetensors`,
more than 2 GiB in total. Markdown (`*.md`) is documentation: neither hashed nor copied, so a submission
cannot read it at run time.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from pathlib import Path

from benchmark.submissions.manifest import SubmissionError

TOOL_DIRS = frozenset({".git", ".ipynb_checkpoints", ".pytest_cache"})  # skipped: never hashed nor copied
BYTECODE_DIRS = frozenset({"__pycache__"})
BYTECODE_SUFFIXES = frozenset({".pyc", ".pyo"})
DOC_SUFFIXES = frozenset({".md"})
PICKLE_SUFFIXES = frozenset({".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".th"})
MAX_FOLDER_BYTES = 2 * 1024**3


def walk(folder: Path) -> tuple[list[Path], list[str]]:
    """(every file under `folder` except tool folders, sorted by relative path; problems: symlinked folders,
    bytecode folders). Symlinked folders are not followed."""
    out, problems = [], []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        keep = []
        for d in sorted(dirnames):
            rel = (Path(dirpath) / d).relative_to(folder).as_posix()
            if (Path(dirpath) / d).is_symlink():
                problems.append(f"{rel}/: symbolic links are not allowed; copy the folder into the submission")
            elif d in BYTECODE_DIRS:
                problems.append(f"{rel}/: compiled bytecode is refused (it could run instead of the reviewed "
                                f"source); delete it: rm -rf {folder / rel}")
            elif d not in TOOL_DIRS:
                keep.append(d)
        dirnames[:] = keep
        out += [Path(dirpath) / f for f in filenames]
    return sorted(out, key=lambda p: p.relative_to(folder).as_posix()), problems


def hashed_files(folder: Path) -> list[Path]:
    """The files the content hash covers (and the sandbox sees): everything but documentation."""
    return [p for p in walk(folder)[0] if p.suffix not in DOC_SUFFIXES]


def _digest(folder: Path, dest: Path | None, length: int) -> str:
    h = hashlib.sha256()
    for p in hashed_files(folder):
        rel = p.relative_to(folder).as_posix()
        fd = os.open(p, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            data = f.read()
        h.update(len(rel.encode()).to_bytes(8, "little") + rel.encode())
        h.update(len(data).to_bytes(8, "little") + data)
        if dest is not None:
            target = dest / rel
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
            target.chmod(0o444)
    return h.hexdigest()[:length]


def content_hash(folder: Path | str, length: int = 16) -> str:
    """sha256 over the sorted relative paths and bytes of every file but Markdown documentation (so editing
    a README does not invalidate results while any change to code, manifest or data does)."""
    return _digest(Path(folder), None, length)


def snapshot(folder: Path, dest: Path, expected_hash: str) -> None:
    """Copy exactly the hashed files of `folder` into `dest` (read-only), from the bytes that are hashed;
    a folder changed since it was checked (hash != `expected_hash`) is an error."""
    got = _digest(folder, dest, len(expected_hash))
    if got != expected_hash:
        raise SubmissionError(f"submission folder {folder} changed while it was being run (content hash {got}, "
                              f"checked {expected_hash}); run the command again")


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
    """Refuse what a submission may not contain (module docstring); returns the relative file names."""
    paths, problems = walk(folder)
    names, total = [], 0
    for p in paths:
        rel = p.relative_to(folder).as_posix()
        if p.is_symlink():
            problems.append(f"{rel}: symbolic links are not allowed; copy the file into the folder")
            continue
        total += p.stat().st_size
        if p.suffix in BYTECODE_SUFFIXES:
            problems.append(f"{rel}: compiled bytecode is refused (it could run instead of the reviewed source); "
                            "delete it and ship the .py")
        elif p.suffix.lower() in PICKLE_SUFFIXES or _is_pickle(p):
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
