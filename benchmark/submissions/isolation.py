"""The security boundary around submitted code: a bubblewrap (`bwrap`) sandbox.

What the worker sees (`bwrap_argv`): the system's `/usr` (and the `/bin`, `/lib*` links), the Python
installation and the site-packages directories on `sys.path`, all read-only; `/submission`, a read-only
copy of exactly the files the content hash covers (`loader.snapshot`); `/io/in` (the inputs, read-only);
`/io/out`, read-only but for the expected result files (the only writable host files, each capped by
`RLIMIT_FSIZE`); a size-limited `/tmp` (also `HOME`); a fresh `/proc` and `/dev`.
Not the repository, the results database, the cache, other submissions or `/root`. All namespaces are
new (`--unshare-all`: no network peers, the PID namespace hides the parent's `/proc/<pid>`), every
capability is dropped, the environment is cleared to a fixed minimal one, and the sandbox is killed when
the parent dies (`--die-with-parent`). A seccomp filter (`seccomp_program`) refuses to create processes
(threads are allowed), so no daemon can outlive the call; the worker sets `RLIMIT_AS`, `RLIMIT_FSIZE`,
`RLIMIT_CPU`, `RLIMIT_NPROC` and `RLIMIT_NOFILE` before it imports submitted code.
"""

from __future__ import annotations

import functools
import os
import platform
import shutil
import struct
import subprocess
import sys
import sysconfig
from collections.abc import Sequence
from pathlib import Path

from benchmark.submissions.manifest import SubmissionError

CODE, IN, OUT, WORKER, PKG = "/submission", "/io/in", "/io/out", "/mergesec/worker.py", "/mergesec/pkg"
INSTALL_HINT = ("install bubblewrap (Debian/Ubuntu: `sudo apt-get install bubblewrap`; scripts/setup.sh does it "
                "when run as root), or, only for code you trust, pass --no-isolation")
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": "/tmp", "TMPDIR": "/tmp", "CUDA_VISIBLE_DEVICES": "",
       "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
"""The worker's whole environment (CPU only and one thread, so results do not depend on the core count)."""


class IsolationUnavailable(SubmissionError):
    """bubblewrap is missing or cannot create namespaces here, and `--no-isolation` was not given."""


@functools.cache
def probe() -> str:
    """'' when `bwrap` can build the sandbox on this machine, else why not (cached per process)."""
    exe = shutil.which("bwrap")
    if exe is None:
        return "bubblewrap (`bwrap`) is not installed"
    try:
        p = subprocess.run([exe, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "--proc", "/proc",
                            "--dev", "/dev", "--cap-drop", "ALL", "true"], capture_output=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"bwrap failed to start ({e})"
    if p.returncode != 0:
        return f"bwrap cannot create namespaces here: {p.stderr.decode(errors='replace').strip()[-300:]}"
    return ""


def require(isolate: bool) -> None:
    """Raise `IsolationUnavailable` (with the install hint) if `isolate` and bwrap does not work here."""
    why = probe() if isolate else ""
    if why:
        raise IsolationUnavailable(f"submitted code runs only inside the bubblewrap sandbox, but {why}; "
                                   + INSTALL_HINT)


def _python_dirs() -> list[Path]:
    """The interpreter's installation and every site-packages directory on `sys.path` (not the repository)."""
    dirs = {Path(sys.base_prefix), Path(sys.prefix), Path(os.path.realpath(sys.executable)).parent.parent}
    dirs |= {Path(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    dirs |= {Path(p) for p in sys.path if p.endswith(("site-packages", "dist-packages"))}
    out: list[Path] = []
    for d in sorted(d.resolve() for d in dirs if d.is_dir()):
        if not any(d.is_relative_to(o) for o in out):
            out.append(d)
    return out


def bwrap_argv(code: Path, inputs: Path, outputs: Path, out_files: Sequence[str], worker: Path, tmp_mb: int,
               seccomp_fd: int | None, package: Path | None = None) -> list[str]:
    """The `bwrap ... python -I -B /mergesec/worker.py` command line of one isolated call. `/io/out` is
    read-only except for `out_files` (files in `outputs` the parent created): the worker can neither add a
    file nor write more than len(out_files) x RLIMIT_FSIZE into what the parent reads. `package`, if given,
    is mergesec's own `benchmark` package, bound read-only at `/mergesec/pkg/benchmark` (a data-dependent
    call builds classifiers with it)."""
    a = [shutil.which("bwrap") or "bwrap", "--unshare-all", "--die-with-parent", "--new-session",
         "--cap-drop", "ALL", "--hostname", "sandbox", "--clearenv"]
    for k, v in ENV.items():
        a += ["--setenv", k, v]
    a += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64"):
        p = Path("/") / name
        if p.is_symlink():
            a += ["--symlink", os.readlink(p), str(p)]
        elif p.is_dir():
            a += ["--ro-bind", str(p), str(p)]
    for f in ("/etc/ld.so.cache", "/etc/ld.so.conf", "/etc/ld.so.conf.d", "/etc/localtime"):
        a += ["--ro-bind-try", f, f]
    # the private /tmp first: an interpreter or virtualenv that lives under /tmp is bound on top of it
    a += ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_mb * 1024 * 1024), "--tmpfs", "/tmp"]
    for d in _python_dirs():
        a += ["--ro-bind", str(d), str(d)]
    a += ["--ro-bind", str(code), CODE, "--ro-bind", str(inputs), IN, "--ro-bind", str(outputs), OUT]
    for name in out_files:
        a += ["--bind", str(outputs / name), f"{OUT}/{name}"]
    if package is not None:
        a += ["--ro-bind", str(package), f"{PKG}/benchmark"]
    a += ["--ro-bind", str(worker), WORKER, "--chdir", "/tmp"]
    if seccomp_fd is not None:
        a += ["--seccomp", str(seccomp_fd)]
    return [*a, sys.executable, "-I", "-B", WORKER]


# -- seccomp: no new processes ------------------------------------------------------------------------------
_ARCH = {"x86_64": (0xC000003E, {"clone": 56, "fork": 57, "vfork": 58, "clone3": 435}),
         "aarch64": (0xC00000B7, {"clone": 220, "clone3": 435})}
_CLONE_THREAD = 0x00010000
_ALLOW, _EPERM, _ENOSYS = 0x7FFF0000, 0x00050000 | 1, 0x00050000 | 38


def seccomp_program() -> bytes | None:
    """A classic-BPF seccomp filter for this CPU that fails fork/vfork/clone without CLONE_THREAD (EPERM) and
    clone3 (ENOSYS, so the C library falls back to clone); threads still start. None on other CPUs."""
    arch = _ARCH.get(platform.machine())
    if arch is None:
        return None
    audit, nr = arch
    ins: list[tuple[int, int, int, int]] = [(0x20, 0, 0, 4)]  # A = arch
    ins.append((0x15, 1, 0, audit))  # arch matches: skip the next instruction
    ins.append((0x06, 0, 0, _EPERM))  # another ABI (e.g. x32/ia32 on x86_64): refuse the call
    ins.append((0x20, 0, 0, 0))  # A = syscall number
    if platform.machine() == "x86_64":
        ins.append((0x35, 0, 1, 0x40000000))  # x32 syscall numbers: refuse
        ins.append((0x06, 0, 0, _EPERM))
    for name in ("fork", "vfork"):
        if name in nr:
            ins += [(0x15, 0, 1, nr[name]), (0x06, 0, 0, _EPERM)]
    ins += [(0x15, 0, 1, nr["clone3"]), (0x06, 0, 0, _ENOSYS)]
    ins += [(0x15, 0, 3, nr["clone"]), (0x20, 0, 0, 16),  # A = low 32 bits of clone's flags
            (0x45, 1, 0, _CLONE_THREAD), (0x06, 0, 0, _EPERM)]
    ins.append((0x06, 0, 0, _ALLOW))
    return b"".join(struct.pack("<HBBI", *i) for i in ins)


def seccomp_fd() -> int | None:
    """A readable file descriptor holding `seccomp_program()` (for `bwrap --seccomp FD`), or None."""
    prog = seccomp_program()
    if prog is None:
        return None
    r, w = os.pipe()
    os.write(w, prog)
    os.close(w)
    return r
