"""Find and check submissions (`submissions/<slug>/`), and call their entry point in the sandbox.

The parent process never imports submitted code: `sandboxed_call` runs the entry point in the sandbox
(`sandbox.py`) and validates what comes back. `registration.py` registers a submission from its manifest
alone, with `fn` calling the sandbox, so the tracks merge with a submitted method exactly as with a
built-in one, through `benchmark.merging.merge`, and every call is isolated.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from benchmark.submissions.data import CallData, order_metadata
from benchmark.submissions.files import check_files, content_hash
from benchmark.submissions.manifest import MANIFEST, SubmissionError, SubmissionManifest, load_manifest
from benchmark.submissions.sandbox import Call, Limits, failure

if TYPE_CHECKING:
    from benchmark.types import StateDict

SUBMISSIONS_DIR = Path(__file__).resolve().parents[2] / "submissions"


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
    looked = " and ".join(dict.fromkeys(map(str, (p, q))))  # an absolute path is both
    raise SubmissionError(
        f"no submission folder {str(target)!r} (looked at {looked}); pass a folder holding {MANIFEST} or one "
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


def call(sub: Submission, hparams: dict[str, Any], limits: Limits, n_finetuned: int | None = None,
         repeat: int = 1, data: CallData | None = None) -> Call:
    """A sandboxed `Call` of the submission's entry point (not started yet) with `data` (what its manifest's
    `needs` declare; without it, only the needs, as an inspect-only call uses them)."""
    needs = frozenset(sub.manifest.needs)
    data = data or CallData(needs)
    if data.needs != needs:
        raise SubmissionError(f"submission {sub.slug!r} declares needs {sorted(needs)} but the call got "
                              f"{sorted(data.needs)}")
    return Call(sub.slug, sub.folder, sub.code_hash, sub.manifest.entry_point, sub.kind, hparams, limits,
                n_finetuned=n_finetuned, repeat=repeat, data=data)


def _write_inputs(c: Call, pretrained: StateDict, finetuned: list[StateDict]) -> None:
    from safetensors.torch import save_file

    for path, sd in zip(c.input_paths(), [pretrained, *finetuned], strict=True):
        save_file({k: v.detach().to("cpu").contiguous() for k, v in sd.items()}, str(path), order_metadata(sd))


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
                   limits: Limits, repeat: int = 1, data: CallData | None = None) -> list[Any]:
    """Run the submission's entry point on the inputs (and `data`, `call`'s) in the sandbox; validate and
    return its results (`repeat` of them: a state dict each for a merge, a list of state dicts each for a
    defense). Raises `SubmissionError` with the reason on any failure; never returns unvalidated data."""
    device = next(iter(pretrained.values())).device if pretrained else "cpu"
    from safetensors.torch import load

    with call(sub, hparams, limits, len(finetuned), repeat, data) as c:
        _write_inputs(c, pretrained, finetuned)
        res = c.result()
        if not res.ok:
            raise failure(sub.slug, res)
    loaded = [{k: v.to(device) for k, v in load(data).items()} for data in res.outputs]
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
