"""Run submitted (untrusted) code in a separate process with a wall-clock and a memory limit.

The parent writes the inputs as safetensors into a fresh temporary directory, starts `worker.py` in a new
session (`python -I -B`: no user site, no PYTHON* variables, no bytecode written into the submission),
limited by `RLIMIT_AS` (address space) and `RLIMIT_CORE=0`, waits at most `timeout_s` and kills the whole process
group after that. The worker sets its limits itself before it imports anything else (so no `preexec_fn`
runs in a multi-threaded parent). The worker's answer is read back only as JSON and safetensors from fixed
file names, and every tensor is validated by the parent (`benchmark.merging.validate.check_output`):
nothing the submitted code returns is ever unpickled.

Limits of the isolation, stated plainly: the worker runs as the same user, with the same filesystem and
network access. The sandbox contains crashes, hangs, memory blow-ups and malformed outputs; it is not a
security boundary against deliberately malicious code, which is why submissions are reviewed and CI runs
them on throw-away runners without secrets.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.submissions.manifest import SubmissionError

WORKER = Path(__file__).with_name("worker.py")
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 8192
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TMPDIR")


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed call. `memory_mb` caps the worker's address space (RLIMIT_AS); it
    includes the ~3.5 GiB that importing torch maps, so keep it well above that."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB

    @classmethod
    def from_env(cls, timeout_s: float | None = None, memory_mb: int | None = None) -> Limits:
        """Explicit values, else $MERGESEC_SANDBOX_TIMEOUT_S / $MERGESEC_SANDBOX_MEMORY_MB, else defaults."""
        t = timeout_s if timeout_s is not None else float(os.environ.get("MERGESEC_SANDBOX_TIMEOUT_S",
                                                                         DEFAULT_TIMEOUT_S))
        m = memory_mb if memory_mb is not None else int(os.environ.get("MERGESEC_SANDBOX_MEMORY_MB",
                                                                       DEFAULT_MEMORY_MB))
        if t <= 0 or m <= 0:
            raise SubmissionError(f"sandbox limits must be positive; got timeout {t} s, memory {m} MiB")
        return cls(float(t), int(m))


@dataclass
class WorkerResult:
    """What came back from the worker: its JSON answer and the output files' paths (not yet validated)."""

    ok: bool
    stage: str
    error: str
    signature: str = ""
    parameters: list[str] = field(default_factory=list)
    outputs: list[Path] = field(default_factory=list)
    seconds: float = 0.0
    stderr_tail: str = ""
    traceback: str = ""


def _env(workdir: Path) -> dict[str, str]:
    """A small, fixed environment: CPU only and one thread, so a submission's result does not depend on the
    machine's core count (float reductions are only bitwise reproducible at a fixed thread count)."""
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update(HOME=str(workdir), CUDA_VISIBLE_DEVICES="", PYTHONHASHSEED="0", OMP_NUM_THREADS="1",
               MKL_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    return env


class Call:
    """One running worker process. Start it early (e.g. before importing torch in the parent) and collect
    the answer with `result()`; use as a context manager so the temporary directory is always removed."""

    def __init__(self, slug: str, folder: Path, entry_point: str, kind: str, hparams: dict[str, Any],
                 limits: Limits, inputs: list[Path] | None = None, repeat: int = 1, seed: int = 0,
                 workdir: Path | None = None):
        self.slug, self.limits, self.kind = slug, limits, kind
        self._tmp = None if workdir is not None else tempfile.TemporaryDirectory(prefix="mergesec-sandbox-")
        self.dir = Path(workdir) if workdir is not None else Path(self._tmp.name)
        (self.dir / "in").mkdir(parents=True, exist_ok=True)
        self.n_finetuned = 0 if inputs is None else len(inputs) - 1
        self.repeat = repeat
        request = {"folder": str(Path(folder).resolve()), "entry_point": entry_point, "kind": kind,
                   "hparams": hparams, "ops": ["inspect"] if inputs is None else ["inspect", "call"],
                   "n_finetuned": self.n_finetuned, "repeat": repeat, "seed": seed}
        (self.dir / "request.json").write_text(json.dumps(request))
        self._proc: subprocess.Popen | None = None
        self._t0 = 0.0

    @staticmethod
    def input_paths(workdir: Path, n_finetuned: int) -> list[Path]:
        """Where the inputs go: pretrained first, then finetuned_0..n-1."""
        d = Path(workdir) / "in"
        d.mkdir(parents=True, exist_ok=True)
        return [d / "pretrained.safetensors"] + [d / f"finetuned_{i}.safetensors" for i in range(n_finetuned)]

    def start(self) -> Call:
        self._stdout = open(self.dir / "stdout.txt", "wb")  # noqa: SIM115 (closed in result())
        self._stderr = open(self.dir / "stderr.txt", "wb")  # noqa: SIM115
        self._t0 = time.perf_counter()
        self._proc = subprocess.Popen(
            [sys.executable, "-I", "-B", str(WORKER), str(self.dir), str(self.limits.memory_mb * 1024 * 1024)],
            cwd=self.dir, env=_env(self.dir), stdin=subprocess.DEVNULL, stdout=self._stdout,
            stderr=self._stderr, start_new_session=True,
        )
        return self

    def _kill(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def result(self) -> WorkerResult:
        """Wait for the worker (at most the time limit) and read its answer; raises nothing for a failed
        submission: `ok` is False and `error` says why."""
        if self._proc is None:
            self.start()
        assert self._proc is not None
        timed_out = False
        try:
            self._proc.wait(timeout=max(0.0, self.limits.timeout_s - (time.perf_counter() - self._t0)))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            self._kill()  # also ends any process the submission left behind in its session
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._stdout.close()
            self._stderr.close()
        seconds = time.perf_counter() - self._t0
        stderr = (self.dir / "stderr.txt").read_bytes()[-4000:].decode("utf-8", "replace")
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        if timed_out:
            return WorkerResult(False, "timeout", f"exceeded the time limit of {self.limits.timeout_s:g} s and "
                                "was killed; make the method faster (or ask for a higher --time-limit)",
                                seconds=seconds, stderr_tail=tail)
        answer = self._read_answer()
        rc = self._proc.returncode
        if answer is None:
            if rc is not None and rc < 0:
                sig = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
                why = f"the worker was killed by {sig}"
            else:
                why = f"the worker exited with status {rc} without an answer"
            if _looks_like_memory(stderr) or rc in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
                why += f" (likely it exceeded the memory limit of {self.limits.memory_mb} MiB)"
            return WorkerResult(False, "crash", why, seconds=seconds, stderr_tail=tail)
        ok = answer.get("ok") is True
        error = str(answer.get("error") or "")
        stage = str(answer.get("stage") or "?")
        if not ok and (answer.get("memory") is True or _looks_like_memory(error)):
            stage = "memory"
            error = f"{error} — exceeded the memory limit of {self.limits.memory_mb} MiB"
        outputs = []
        if ok and "call" in json.loads((self.dir / "request.json").read_text())["ops"]:
            for r in range(self.repeat):
                names = ([f"result_{r}.safetensors"] if self.kind == "merge"
                         else [f"result_{r}_{i}.safetensors" for i in range(self.n_finetuned)])
                for name in names:
                    p = self.dir / "out" / name
                    if not p.is_file():
                        return WorkerResult(False, "output", f"the worker reported success but wrote no {name}",
                                            seconds=seconds, stderr_tail=tail)
                    outputs.append(p)
        params = answer.get("parameters")
        return WorkerResult(
            ok, stage, error, signature=str(answer.get("signature") or ""),
            parameters=[str(p) for p in params] if isinstance(params, list) else [], outputs=outputs,
            seconds=seconds, stderr_tail=tail, traceback=str(answer.get("traceback") or ""),
        )

    def _read_answer(self) -> dict[str, Any] | None:
        path = self.dir / "out" / "result.json"
        if not path.is_file() or path.stat().st_size > 1_000_000:
            return None
        try:
            answer = json.loads(path.read_text(encoding="utf-8", errors="replace"))
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def close(self) -> None:
        self._kill()
        if self._tmp is not None:
            self._tmp.cleanup()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _looks_like_memory(text: str) -> bool:
    t = text.lower()
    return "memoryerror" in t or "can't allocate memory" in t or "out of memory" in t or "std::bad_alloc" in t


def failure(slug: str, res: WorkerResult) -> SubmissionError:
    """The SubmissionError for a failed worker: the stage, the reason, and the traceback's tail."""
    stage = {"import": "importing the entry point", "signature": "checking the entry point's signature",
             "call": "running the method", "output": "checking the returned value", "inputs": "reading inputs",
             "timeout": "time limit", "memory": "memory limit", "crash": "worker crashed"}.get(res.stage, res.stage)
    msg = f"submission {slug!r} failed ({stage}): {res.error}"
    detail = res.traceback.strip() or res.stderr_tail.strip()
    if detail:
        msg += "\n  " + "\n  ".join(detail.splitlines()[-8:])
    return SubmissionError(msg)
