"""The sandbox worker: runs one submitted callable in its own process. Launched by `sandbox.Call` as
`python -I -B worker.py` (inside the bubblewrap sandbox, `isolation.py`); never imported by the parent.

Protocol: the request arrives as JSON on stdin: {"folder", "inputs", "outputs", "entry_point", "kind",
"hparams", "ops": subset of ["inspect", "call"], "n_finetuned", "repeat", "seed", "rlimits", "needs",
"tasks", "n_dev", "backbone", "package"}. The worker sets the rlimits, reads `<inputs>/pretrained.safetensors`
and `<inputs>/finetuned_<i>.safetensors` (only for "call") and, for a data-dependent method, the files of
`data.py` (`dev_<i>.safetensors`, `heads.safetensors`), writes `<outputs>/result_<r>.safetensors` (kind
merge) or `<outputs>/result_<r>_<i>.safetensors` (kind defense, one per fine-tuned model) for r in
range(repeat), then `<outputs>/result.json` (every output file exists, empty, before the worker starts; it
writes them in place):
{"ok": bool, "stage": ..., "error": ..., "signature": ..., "parameters": [...]}.

Everything the worker writes is untrusted (the submitted code runs in this process): the parent keeps its
own copy of the request and checks every output file (`sandbox.py`, `outputs.py`). The worker uses only
the standard library, torch and safetensors, so it starts as fast as torch imports; only a method that
needs `classifier_factory` also imports mergesec's own `benchmark` package (from `<package>`, read-only).
"""

from __future__ import annotations

import errno
import importlib
import inspect
import json
import os
import random
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any


def _write(out: Path, result: dict[str, Any]) -> None:
    """Write the answer in place: `result.json` is a file the parent created (inside the sandbox `<outputs>`
    is read-only, so it cannot be replaced by a rename)."""
    (out / "result.json").write_text(json.dumps(result, default=str))


def _save(data: bytes, path: Path) -> None:
    """Write serialised safetensors in place (`safetensors.torch.save_file` renames a temporary file, which the
    read-only `<outputs>` refuses)."""
    with open(path, "wb") as f:
        f.write(data)


_WRITE_ERRORS = (errno.EROFS, errno.EFBIG, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT)


def _write_hint(e: BaseException, rlimits: dict[str, int]) -> str:
    """What to do about a refused write: the sandbox is read-only but for /tmp and the result files."""
    if not isinstance(e, OSError) or e.errno not in _WRITE_ERRORS:
        return ""
    return (f" (the sandbox is read-only except its private /tmp and the result files mergesec reads, each file at "
            f"most {rlimits.get('FSIZE', 0) / 2**20:g} MiB; return the result instead of writing files)")


def _positional_names(needs: list[str]) -> list[str]:
    """The positional parameters of the entry point for these needs (the built-in methods' contract)."""
    if set(needs) - {"seed"}:
        return ["ctx"]
    return ["pretrained", "finetuned", *(["seed"] if "seed" in needs else [])]


def _signature_problem(fn: Any, kind: str, hparams: dict[str, Any],
                       needs: list[str]) -> tuple[str, list[str], str | None]:
    """(signature text, parameter names, problem or None) for `fn(<_positional_names(needs)>, **hparams)`."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError) as e:
        return "?", [], f"cannot read the signature of the entry point ({e})"
    params = list(sig.parameters.values())
    names = [p.name for p in params]
    n = len(_positional_names(needs))
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if len(positional) < n or params[:n] != positional[:n]:
        why = f" (submission.toml declares needs {needs})" if needs else ""
        return str(sig), names, (
            f"the entry point must be fn({', '.join(_positional_names(needs))}, **hyperparameters) -> "
            f"{'state dict' if kind == 'merge' else 'list of state dicts'}{why}; got fn{sig}"
        )
    rest = {p.name: p for p in params[n:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}
    takes_kwargs = any(p.kind is p.VAR_KEYWORD for p in params)
    unaccepted = [h for h in hparams if h not in rest and not takes_kwargs]
    if unaccepted:
        return str(sig), names, (
            f"hyperparameters {unaccepted} from submission.toml are not parameters of fn{sig}; "
            "add them to the function or remove them from [hyperparameters]"
        )
    missing = [n for n, p in rest.items() if p.default is p.empty and n not in hparams]
    if missing:
        form = f"fn({', '.join(_positional_names(needs))}, **hyperparameters)"
        return str(sig), names, (
            f"fn{sig} requires {missing} but submission.toml's [hyperparameters] does not set them; "
            f"add them there (or give them defaults); with needs {needs} the entry point is {form}"
        )
    return str(sig), names, None


def _to_state_dict(obj: Any, what: str, torch: Any) -> dict[str, Any]:
    """Check that `obj` is a plain dict[str, Tensor] and copy it into contiguous CPU tensors."""
    if not isinstance(obj, dict):
        raise _OutputError(
            f"{what} is a {type(obj).__name__}, not a dict[str, Tensor]; return the merged state dict "
            "(a dict mapping every input key to a tensor)"
        )
    out = {}
    for k, v in obj.items():
        if not isinstance(k, str):
            raise _OutputError(f"{what} has a key of type {type(k).__name__} ({k!r}); keys must be str")
        if not isinstance(v, torch.Tensor):
            raise _OutputError(f"{what}[{k!r}] is a {type(v).__name__}, not a torch.Tensor")
        if v.layout != torch.strided or v.is_quantized:
            raise _OutputError(f"{what}[{k!r}] is a {v.layout} tensor; return dense tensors")
        out[k] = v.detach().to("cpu").contiguous().clone()
    return out


def _load_ordered(path: Path, load_file: Any) -> dict[str, Any]:
    """A state dict the parent wrote, in its original key order (`data.order_metadata`)."""
    from safetensors import safe_open

    with safe_open(str(path), "pt") as f:
        order = json.loads((f.metadata() or {}).get("mergesec.order", "[]"))
    state = load_file(str(path))
    return {k: state[k] for k in order} if sorted(order) == sorted(state) else state


class _DevFile:
    """A task's dev split, read lazily from its memory-mapped safetensors file: `ds[i]` is (x, y) and
    `ds[a:b]` a batch, as a TensorDataset's; `y` is -1 when the labels were not declared. Never all in memory."""

    def __init__(self, path: Path, torch: Any):
        from safetensors import safe_open

        self._file, self._torch = safe_open(str(path), framework="pt"), torch
        self._labelled = "y" in set(self._file.keys())
        self._n = self._file.get_slice("x").get_shape()[0]

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i: int | slice) -> tuple[Any, Any]:
        one = not isinstance(i, slice)
        if one:
            i = int(i) + self._n if int(i) < 0 else int(i)
            if not 0 <= i < self._n:
                raise IndexError(f"dev item {i} of {self._n}")
        part = slice(i, i + 1) if one else slice(*i.indices(self._n))
        x = self._file.get_slice("x")[part]
        y = (self._file.get_slice("y")[part] if self._labelled
             else self._torch.full((len(x),), -1, dtype=self._torch.long))
        return (x[0], y[0]) if one else (x, y)


def _data(request: dict[str, Any], needs: list[str], inputs: Path, torch: Any, load_file: Any) -> dict[str, Any] | None:
    """The context fields besides the weights and seed of a data-dependent call (`benchmark.merging.context.
    MergeContext`'s `tasks`, `dev_data`, `classifier_factory`), from the files the parent wrote
    (`data.py`); None for a data-free call."""
    if not set(needs) - {"seed"}:
        return None
    dev = None
    if {"unlabelled_dev", "labelled_dev"} & set(needs):
        dev = [_DevFile(inputs / f"dev_{i}.safetensors", torch) for i in range(int(request["n_dev"]))]
    factory = None
    if "classifier_factory" in needs:  # mergesec's own code, read-only in the sandbox
        sys.path.insert(0, request["package"])
        from benchmark.defenses.api import TaskClassifiers
        from benchmark.suites.spec import BackboneSpec
        from benchmark.zoo.model import ClassificationHead

        flat = load_file(str(inputs / "heads.safetensors"))
        heads = []
        for i in range(len(request["tasks"])):
            w, b = flat[f"{i}.weight"], flat[f"{i}.bias"]
            head = ClassificationHead(w.shape[1], w.shape[0])
            head.load_state_dict({"weight": w, "bias": b})
            heads.append(head.eval().requires_grad_(False))
        spec = dict(request["backbone"])
        spec.update(mean=tuple(spec["mean"]), std=tuple(spec["std"]))
        factory = TaskClassifiers(BackboneSpec(**spec), tuple(heads))
    return {"tasks": list(request["tasks"]), "dev_data": dev, "classifier_factory": factory}


class _OutputError(Exception):
    pass


def main(request: dict[str, Any]) -> int:
    out, inputs = Path(request["outputs"]), Path(request["inputs"])
    result: dict[str, Any] = {"ok": False, "stage": "start", "error": "", "signature": "", "parameters": []}
    folder = "\0"  # no frame matches until the folder is known
    try:
        kind, hparams = request["kind"], dict(request["hparams"])

        import torch
        from safetensors.torch import load_file, save

        torch.set_grad_enabled(False)

        def _no_pickle(*args: Any, **kwargs: Any) -> Any:
            raise PermissionError(
                "torch.load is disabled for submissions (pickled checkpoints can run code); ship checkpoints "
                "as .safetensors and read them with safetensors.torch.load_file"
            )

        torch.load = _no_pickle  # a guard against accidental use, not a security boundary

        result["stage"] = "import"
        folder = str(Path(request["folder"]).resolve())
        sys.path.insert(0, folder)
        module_name, _, attr = request["entry_point"].partition(":")
        module = importlib.import_module(module_name)
        origin = Path(getattr(module, "__file__", "") or "").resolve()
        if not str(origin).startswith(folder + os.sep):
            raise ImportError(
                f"module {module_name!r} was imported from {origin}, not from the submission folder; "
                "rename it so it does not clash with an installed module"
            )
        fn = getattr(module, attr, None)
        if fn is None:
            raise AttributeError(f"module {module_name!r} ({origin.name}) has no attribute {attr!r}")
        if not callable(fn):
            raise TypeError(f"{request['entry_point']} is a {type(fn).__name__}, not a callable")

        result["stage"] = "signature"
        needs = list(request.get("needs") or [])
        sig, names, problem = _signature_problem(fn, kind, hparams, needs)
        result["signature"], result["parameters"] = sig, names
        if problem:
            result["error"] = problem
            _write(out, result)
            return 0
        if "call" not in request["ops"]:
            result.update(ok=True, stage="done")
            _write(out, result)
            return 0

        result["stage"] = "inputs"
        pretrained = _load_ordered(inputs / "pretrained.safetensors", load_file)
        finetuned = [_load_ordered(inputs / f"finetuned_{i}.safetensors", load_file)
                     for i in range(int(request["n_finetuned"]))]
        seed = int(request.get("seed", 0))
        data = _data(request, needs, inputs, torch, load_file)
        for r in range(int(request.get("repeat", 1))):
            random.seed(seed)
            torch.manual_seed(seed)
            try:
                import numpy as np

                np.random.seed(seed)
            except ImportError:  # pragma: no cover
                pass
            result["stage"] = "call"
            # fresh copies every time, so an in-place edit of the inputs cannot leak into the next repeat
            pre = {k: v.clone() for k, v in pretrained.items()}
            fts = [{k: v.clone() for k, v in sd.items()} for sd in finetuned]
            if data is not None:  # data-dependent: fn(ctx, **hparams)
                value = fn(SimpleNamespace(pretrained=pre, finetuned=fts, seed=seed, **data), **hparams)
            else:
                value = fn(pre, fts, *([seed] if "seed" in needs else []), **hparams)
            result["stage"] = "output"
            if kind == "merge":
                _save(save(_to_state_dict(value, "the returned value", torch)), out / f"result_{r}.safetensors")
            else:
                if not isinstance(value, list | tuple):
                    raise _OutputError(
                        f"the returned value is a {type(value).__name__}; a defense must return a list with one "
                        "state dict per fine-tuned model"
                    )
                if len(value) != len(finetuned):
                    raise _OutputError(
                        f"the returned list has {len(value)} state dicts for {len(finetuned)} fine-tuned models; "
                        "return one per input model, in order"
                    )
                for i, sd in enumerate(value):
                    _save(save(_to_state_dict(sd, f"the returned value[{i}]", torch)),
                          out / f"result_{r}_{i}.safetensors")
        result.update(ok=True, stage="done")
    except _OutputError as e:
        result["error"] = str(e)
    except MemoryError as e:
        result.update(stage=result["stage"], error=f"MemoryError: {e}", memory=True)
    except BaseException as e:  # the submitted code may raise anything, SystemExit included
        msg = f"{type(e).__name__}: {e}"[:1700] + _write_hint(e, request.get("rlimits") or {})
        result["error"] = msg
        result["memory"] = "can't allocate memory" in msg or "out of memory" in msg.lower()
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename.startswith(folder)]
        tb = traceback.format_list(frames[-5:]) + traceback.format_exception_only(e)
        result["traceback"] = ("Traceback (submission frames only):\n" + "".join(tb))[-3000:]
    _write(out, result)
    return 0


def limit_resources(rlimits: dict[str, int]) -> None:
    """Set RLIMIT_<name> (soft = hard) for each entry, before any submitted code is imported."""
    import resource

    for name, value in rlimits.items():
        resource.setrlimit(getattr(resource, f"RLIMIT_{name}"), (value, value))


if __name__ == "__main__":
    req = json.loads(sys.stdin.read(1_000_000))
    limit_resources(req["rlimits"])
    sys.exit(main(req))
