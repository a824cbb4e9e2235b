"""Run submitted (untrusted) code in a separate, isolated process with time, memory and size limits.

Each `Call` makes a private temporary directory: `code/` (a read-only copy of exactly the hashed files,
`files.snapshot`), `in/` (the inputs as safetensors, written by the parent) and `out/` (the expected result
files, created empty by the parent: inside the sandbox they are the only writable host files, each capped
by RLIMIT_FSIZE, and no file can be added). The worker (`worker.py`, `python -I -B`) runs inside the
bubblewrap sandbox of `isolation.py` and gets its request on stdin. The parent keeps the request in memory
and trusts nothing the worker writes: `out/` must hold exactly the expected files, each opened without
following symlinks; the JSON answer is size-capped; only the tail of stderr is kept (a pipe drained by a
thread); every safetensors header is checked (keys, dtypes, shapes, total size) before its data is read
(`outputs.py`); nothing is ever unpickled. A data-dependent call also gets exactly its declared data
(`data.py`) in `in/`. After `timeout_s` the sandbox is killed. Without bubblewrap nothing runs unless
`Limits.isolate` is False (the CLI's `--no-isolation`).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmark.submissions import isolation
from benchmark.submissions.data import FACTORY, CallData
from benchmark.submissions.files import snapshot
from benchmark.submissions.manifest import SubmissionError
from benchmark.submissions.outputs import read_checked, read_regular, spec_of

WORKER = Path(__file__).with_name("worker.py")
PACKAGE = Path(__file__).resolve().parents[1]
"""mergesec's own `benchmark` package: read-only in the sandbox of a call that needs `classifier_factory`."""
DEFAULT_TIMEOUT_S = 600.0
DEFAULT_MEMORY_MB = 8192
MAX_ANSWER_BYTES = 1_000_000
STDERR_TAIL_BYTES = 4000
ANSWER = "result.json"
HEADER_ROOM_MB = 1
"""How much larger than its reference input an output may be (a different safetensors header)."""
_LIVE: set[Call] = set()


@dataclass(frozen=True)
class Limits:
    """Resource limits of one sandboxed call. `memory_mb` caps the worker's address space (RLIMIT_AS); it
    includes the ~3.5 GiB that importing torch maps, so keep it well above that. `file_mb` is the most
    RLIMIT_FSIZE can be (every file the worker writes; `Call.file_limit` sets it per call), `tmp_mb` the size
    of its private /tmp. `isolate=False` runs the worker without the bubblewrap boundary (trusted code
    only)."""

    timeout_s: float = DEFAULT_TIMEOUT_S
    memory_mb: int = DEFAULT_MEMORY_MB
    isolate: bool = True
    file_mb: int = 2048
    tmp_mb: int = 256

    @classmethod
    def from_env(cls, timeout_s: float | None = None, memory_mb: int | None = None,
                 isolate: bool = True) -> Limits:
        """Explicit values, else $MERGESEC_SANDBOX_TIMEOUT_S / $MERGESEC_SANDBOX_MEMORY_MB, else defaults."""
        t = timeout_s if timeout_s is not None else float(os.environ.get("MERGESEC_SANDBOX_TIMEOUT_S",
                                                                         DEFAULT_TIMEOUT_S))
        m = memory_mb if memory_mb is not None else int(os.environ.get("MERGESEC_SANDBOX_MEMORY_MB",
                                                                       DEFAULT_MEMORY_MB))
        if t <= 0 or m <= 0:
            raise SubmissionError(f"sandbox limits must be positive; got timeout {t} s, memory {m} MiB")
        return cls(float(t), int(m), isolate)

    def rlimits(self) -> dict[str, int]:
        """The limits the worker sets on itself before importing submitted code."""
        return {"AS": self.memory_mb * 1024**2, "FSIZE": self.file_mb * 1024**2, "CPU": int(self.timeout_s) + 5,
                "NPROC": 4096, "NOFILE": 1024, "CORE": 0}


@dataclass
class WorkerResult:
    """What came back from the worker: its JSON answer and the header-checked safetensors bytes."""

    ok: bool
    stage: str
    error: str
    signature: str = ""
    parameters: list[str] = field(default_factory=list)
    outputs: list[bytes] = field(default_factory=list)
    seconds: float = 0.0
    stderr_tail: str = ""
    traceback: str = ""


class Call:
    """One worker process on one submission. Use as a context manager (the worker is killed and the
    temporary directory removed on exit); write the inputs to `input_paths()` (only for a call), then
    `result()`. `n_finetuned=None` only imports the entry point and checks its signature."""

    def __init__(self, slug: str, folder: Path, code_hash: str, entry_point: str, kind: str,
                 hparams: dict[str, Any], limits: Limits, n_finetuned: int | None = None, repeat: int = 1,
                 data: CallData | None = None):
        isolation.require(limits.isolate)
        self.slug, self.limits, self.kind, self.repeat = slug, limits, kind, repeat
        self.n_finetuned = n_finetuned or 0
        self._tmp = tempfile.TemporaryDirectory(prefix="mergesec-sandbox-")
        self.dir = Path(self._tmp.name)
        for d in ("code", "in", "out", "tmp"):  # tmp: HOME and TMPDIR without isolation (inside: a tmpfs)
            (self.dir / d).mkdir()
        snapshot(Path(folder), self.dir / "code", code_hash)
        self.data = data or CallData()
        self.data.write(self.dir / "in")
        self.package = PACKAGE if FACTORY in self.data.needs else None
        where = ({"folder": isolation.CODE, "inputs": isolation.IN, "outputs": isolation.OUT,
                  "package": isolation.PKG} if limits.isolate
                 else {k: str(self.dir / d) for k, d in (("folder", "code"), ("inputs", "in"), ("outputs", "out"))}
                 | {"package": str(PACKAGE.parent)})
        self.request = {**where, "entry_point": entry_point, "kind": kind, "hparams": hparams,
                        "ops": ["inspect"] if n_finetuned is None else ["inspect", "call"],
                        "n_finetuned": self.n_finetuned, "repeat": repeat, "seed": self.data.seed,
                        "rlimits": limits.rlimits(), **self.data.request()}
        self._proc: subprocess.Popen | None = None
        self._t0 = 0.0

    def input_paths(self) -> list[Path]:
        """Where the inputs go: pretrained first, then finetuned_0..n-1."""
        d = self.dir / "in"
        return [d / "pretrained.safetensors"] + [d / f"finetuned_{i}.safetensors" for i in range(self.n_finetuned)]

    def expected_outputs(self) -> list[tuple[str, Path]]:
        """(output file name, the input file whose keys, dtypes and shapes it must have), in order."""
        if "call" not in self.request["ops"]:
            return []
        pre, *fts = self.input_paths()
        if self.kind == "merge":
            return [(f"result_{r}.safetensors", pre) for r in range(self.repeat)]
        return [(f"result_{r}_{i}.safetensors", fts[i]) for r in range(self.repeat) for i in range(len(fts))]

    def out_files(self) -> list[str]:
        """Every file the worker may write into what the parent reads: `result.json` and the outputs."""
        return [ANSWER, *(n for n, _ in self.expected_outputs())]

    def file_limit(self) -> int:
        """This call's RLIMIT_FSIZE in bytes: room for the largest expected output (its reference input's size
        + `HEADER_ROOM_MB`), at least the private /tmp's size (which bounds /tmp anyway), at most
        `Limits.file_mb`. The worker writes at most `len(out_files()) * file_limit()` bytes the parent reads."""
        need = max((ref.stat().st_size for _, ref in self.expected_outputs()), default=0) + HEADER_ROOM_MB * 2**20
        return min(self.limits.file_mb * 2**20, max(self.limits.tmp_mb * 2**20, need))

    def start(self) -> Call:
        fds: tuple[int, ...] = ()
        for name in self.out_files():  # pre-created: inside the sandbox only these are writable
            (self.dir / "out" / name).touch()
        self.request["rlimits"]["FSIZE"] = self.file_limit()
        if self.limits.isolate:
            fd = isolation.seccomp_fd()
            fds = () if fd is None else (fd,)
            argv = isolation.bwrap_argv(self.dir / "code", self.dir / "in", self.dir / "out", self.out_files(),
                                        WORKER, self.limits.tmp_mb, fd, self.package)
            env = dict(isolation.ENV)
        else:
            argv = [sys.executable, "-I", "-B", str(WORKER)]
            env = {**isolation.ENV, "HOME": str(self.dir / "tmp"), "TMPDIR": str(self.dir / "tmp"),
                   "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
        self._t0 = time.perf_counter()
        try:
            self._proc = subprocess.Popen(argv, cwd=self.dir / "tmp", env=env, stdin=subprocess.PIPE,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                          start_new_session=True, pass_fds=fds)
        finally:
            for fd in fds:
                os.close(fd)
        _LIVE.add(self)
        self._tail = _Tail(self._proc.stderr)
        assert self._proc.stdin is not None
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(json.dumps(self.request).encode())
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.close()
        return self

    def kill(self) -> None:
        """Kill the worker's whole process group (the sandbox dies with it) and reap it."""
        if self._proc is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._proc.pid, signal.SIGKILL)
            self._proc.wait()

    def result(self) -> WorkerResult:
        """Wait for the worker (at most the time limit) and read its answer; raises nothing for a failed
        submission (`ok` is False and `error` says why) except a malformed output file (SubmissionError)."""
        if self._proc is None:
            self.start()
        assert self._proc is not None
        timed_out = False
        try:
            self._proc.wait(timeout=max(0.0, self.limits.timeout_s - (time.perf_counter() - self._t0)))
        except subprocess.TimeoutExpired:
            timed_out = True
        finally:
            self.kill()  # also ends any process the submission left behind in its session
        seconds = time.perf_counter() - self._t0
        stderr = self._tail.text()
        tail = "\n".join(stderr.strip().splitlines()[-15:])
        if timed_out:
            return WorkerResult(False, "timeout", f"exceeded the time limit of {self.limits.timeout_s:g} s and "
                                "was killed; make the method faster (or ask for a higher --time-limit)",
                                seconds=seconds, stderr_tail=tail)
        answer = self._read_answer()
        rc = self._proc.returncode
        if answer is None:
            return WorkerResult(False, "crash", self._why_no_answer(rc, stderr), seconds=seconds, stderr_tail=tail)
        ok = answer.get("ok") is True
        error = str(answer.get("error") or "")[:2000]
        stage = str(answer.get("stage") or "?")[:40]
        if not ok and (answer.get("memory") is True or _looks_like_memory(error)):
            stage = "memory"
            error = f"{error} — exceeded the memory limit of {self.limits.memory_mb} MiB"
        outputs = self._read_outputs() if ok else []
        if isinstance(outputs, str):
            return WorkerResult(False, "output", outputs, seconds=seconds, stderr_tail=tail)
        params = answer.get("parameters")
        return WorkerResult(
            ok, stage, error, signature=str(answer.get("signature") or "")[:1000],
            parameters=[str(p)[:100] for p in params[:100]] if isinstance(params, list) else [], outputs=outputs,
            seconds=seconds, stderr_tail=tail, traceback=str(answer.get("traceback") or "")[:3000],
        )

    def _why_no_answer(self, rc: int | None, stderr: str) -> str:
        if rc is not None and rc < 0:
            sig = signal.Signals(-rc).name if -rc in signal.Signals._value2member_map_ else str(-rc)
            why = f"the worker was killed by {sig}"
        else:
            why = f"the worker exited with status {rc} without an answer"
        if _looks_like_memory(stderr) or rc in (-signal.SIGKILL, -signal.SIGSEGV, -signal.SIGABRT):
            why += f" (likely it exceeded the memory limit of {self.limits.memory_mb} MiB)"
        return why

    def _read_outputs(self) -> list[bytes] | str:
        """The checked bytes of every expected output, or why the output folder is not as expected."""
        expected = self.expected_outputs()
        names = set(self.out_files())
        found = set(os.listdir(self.dir / "out"))
        if found - names:  # only without isolation: inside the sandbox /io/out is read-only but for `names`
            return (f"the worker wrote unexpected files {sorted(found - names)[:5]}; a submission may only return "
                    "its value (write nothing to the working folder)")
        empty = sorted(n for n in names if n not in found or (self.dir / "out" / n).lstat().st_size == 0)
        if empty:
            return f"the worker reported success but wrote no {empty[0]}"
        out = []
        for name, ref in expected:
            what = "the merged state dict" if self.kind == "merge" else "a defended model"
            out.append(read_checked(self.dir / "out" / name, spec_of(ref),
                                    f"submission {self.slug!r} failed (checking {what})"))
        return out

    def _read_answer(self) -> dict[str, Any] | None:
        data = read_regular(self.dir / "out" / ANSWER, MAX_ANSWER_BYTES)
        if data is None:
            return None
        try:
            answer = json.loads(data.decode("utf-8", errors="replace"))
        except ValueError:
            return None
        return answer if isinstance(answer, dict) else None

    def close(self) -> None:
        self.kill()
        _LIVE.discard(self)
        self._tmp.cleanup()

    def __enter__(self) -> Call:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Tail:
    """Drains a pipe in a thread, keeping only its last `STDERR_TAIL_BYTES` bytes (a worker writing
    gigabytes to stderr costs the parent neither memory nor disk)."""

    def __init__(self, pipe: Any):
        self._pipe, self._buf = pipe, b""
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while chunk := self._pipe.read1(65536):
            self._buf = (self._buf + chunk)[-STDERR_TAIL_BYTES:]

    def text(self) -> str:
        self._thread.join(timeout=5)
        self._pipe.close()
        return self._buf.decode("utf-8", "replace")


def close_all() -> None:
    """Kill every running worker and remove its temporary directory (the CLI's SIGTERM handler)."""
    for call in list(_LIVE):
        call.close()


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
