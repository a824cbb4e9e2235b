"""Malicious submissions (tests/fixtures/malicious_submissions/, issue 17): each attack is contained by the
bubblewrap sandbox or refused with a clear message. Every case runs the data-free `validate` path (one
sandboxed worker on tiny random models) and then checks: the results database's checksum and an outside
file are unchanged, another submission's folder is unchanged, a loopback listener received nothing, no
process the command started is still alive, and the secret (in a file and in the parent's environment)
appears in no output."""

import hashlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest
import torch

from benchmark.submissions import Limits, SubmissionError, content_hash, isolation, load_submission
from benchmark.submissions.check import validate
from benchmark.submissions.loader import sandboxed_call

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).parent / "fixtures"
MALICIOUS = FIXTURES / "malicious_submissions"
EXAMPLES = ROOT / "submissions"
LIMITS = Limits(timeout_s=120, memory_mb=8192)



class Listener:
    """A TCP listener on 127.0.0.1 that records every byte it receives."""

    def __init__(self):
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port, self.received = self.sock.getsockname()[1], b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                while data := conn.recv(65536):
                    self.received += data


class Scene:
    """An attacked machine: a results database, a secret file, an outside file, another submission, a
    listener, the secret in the parent's environment, and the attacker's submission folder."""

    def __init__(self, case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
        self.secret, self.token = f"secret-{uuid.uuid4().hex}", f"token-{uuid.uuid4().hex}"
        monkeypatch.setenv("MERGESEC_TEST_SECRET", self.secret)
        self.db = tmp_path / "results.duckdb"
        import duckdb

        with duckdb.connect(str(self.db)) as con:
            con.execute("CREATE TABLE merge_eval AS SELECT 'ties' AS method, 0.9 AS clean_acc")
        (tmp_path / "secret.txt").write_text(self.secret)
        self.outside = tmp_path / "outside.txt"
        self.outside.write_text("untouched")
        subs = tmp_path / "submissions"
        self.other = shutil.copytree(EXAMPLES / "model_breadcrumbs", subs / "model_breadcrumbs")
        self.listener = Listener()
        self.folder = shutil.copytree(MALICIOUS / case, subs / case)
        (self.folder / "targets.py").write_text(
            f"DB = {str(self.db)!r}\nSECRET_FILE = {str(tmp_path / 'secret.txt')!r}\nSECRET = {self.secret!r}\n"
            f"OUTSIDE_FILE = {str(self.outside)!r}\nOTHER_SUBMISSION = {str(self.other)!r}\n"
            f"PORT = {self.listener.port}\nTOKEN = {self.token!r}\n")
        self.before = (_sha(self.db), content_hash(self.other))

    def assert_contained(self, output: str) -> None:
        time.sleep(0.2)  # let the listener's thread record anything in flight
        assert (_sha(self.db), content_hash(self.other)) == self.before
        assert self.outside.read_text() == "untouched"
        assert self.listener.received == b""
        assert self.secret not in output and "root:" not in output
        assert not [p for p in _processes() if self.token in p[1]], "a process outlived the command"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _processes() -> list[tuple[int, str, int]]:
    """(pid, command line, parent pid) of every process."""
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                cmd = (d / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            out.append((int(d.name), cmd, ppid))
    return out


@pytest.mark.parametrize("case", ["read_outside", "write_outside", "network", "daemon", "stderr_flood"])
def test_attack_is_contained(case, tmp_path, monkeypatch):
    """The method is a correct merge, so validate passes; its side effects reached nothing outside."""
    import resource

    scene = Scene(case, tmp_path, monkeypatch)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
        report = validate(scene.folder, LIMITS)
        output = "\n".join(report.checks)
    except SubmissionError as e:  # read_outside raises with whatever it could read
        output = str(e)
        assert case != "read_outside", output
    scene.assert_contained(output)
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0 < 200 * 1024  # KiB: no stderr in memory


@pytest.mark.parametrize(("case", "expected"), [
    ("forged_output", "has 1073741824 bytes of tensor data; the header's tensors need"),
    ("forged_answer", "the worker reported success but wrote no result_0.safetensors"),
])
def test_forged_worker_output_is_refused(case, expected, tmp_path, monkeypatch):
    scene = Scene(case, tmp_path, monkeypatch)
    t0 = time.perf_counter()
    with pytest.raises(SubmissionError) as e:
        validate(scene.folder, LIMITS)
    assert expected in str(e.value) or "key mismatch" in str(e.value), str(e.value)
    assert time.perf_counter() - t0 < 60
    scene.assert_contained(str(e.value))


def test_a_data_dependent_attack_is_contained(tmp_path, monkeypatch):
    """read_outside as a data-dependent method (dev data and a classifier factory, so mergesec's own package
    is bound into the sandbox too): it still reads nothing outside, and validate passes."""
    scene = Scene("read_outside", tmp_path, monkeypatch)
    with open(scene.folder / "method.py", "a") as f:
        f.write("\n\ndef merge_ctx(ctx):\n    ctx.classifier_factory(ctx.pretrained, 0)(ctx.dev_data[0][:2][0])\n"
                "    return merge(ctx.pretrained, ctx.finetuned)\n")
    toml = scene.folder / "submission.toml"
    toml.write_text(toml.read_text().replace('entry_point = "method:merge"', 'entry_point = "method:merge_ctx"\n'
                                             'needs = ["unlabelled_dev", "classifier_factory"]'))
    report = validate(scene.folder, LIMITS)
    assert "classifier_factory, unlabelled_dev" in report.checks[-2]
    scene.assert_contained("\n".join(report.checks))


def test_output_folder_is_bounded_in_files_and_bytes(tmp_path, monkeypatch):
    """fill_outputs tries to add 10,000 files to the folder the parent reads, then writes 4 GiB into each
    result file: no file is added, the first one stops at the call's RLIMIT_FSIZE (so the total stays within
    len(out_files) x file_limit), and the failure says where a submission may write."""
    from safetensors.numpy import save_file

    from benchmark.submissions.check import smoke_inputs
    from benchmark.submissions.loader import call
    from benchmark.submissions.sandbox import failure

    scene = Scene("fill_outputs", tmp_path, monkeypatch)
    sub, inputs = load_submission(scene.folder), smoke_inputs()
    with call(sub, {}, Limits(timeout_s=120, memory_mb=8192, tmp_mb=16), len(inputs) - 1, repeat=2) as c:
        for path, sd in zip(c.input_paths(), inputs, strict=True):
            save_file(sd, str(path))
        res = c.result()
        sizes = {p.name: p.lstat().st_size for p in (c.dir / "out").iterdir()}
        names, limit = c.out_files(), c.file_limit()
    assert limit == 16 * 2**20 and sorted(sizes) == sorted(names) == ["result.json", "result_0.safetensors",
                                                                       "result_1.safetensors"]
    assert sizes["result_1.safetensors"] == limit and sum(sizes.values()) <= len(names) * limit
    msg = str(failure(sub.slug, res))
    assert "(running the method): OSError: [Errno 27] File too large" in msg, msg
    assert "each file at most 16 MiB; return the result instead of writing files" in msg, msg
    scene.assert_contained(msg)


@pytest.mark.parametrize(("make", "expected"), [
    (lambda f: (f / "__pycache__").mkdir() or (f / "__pycache__" / "breadcrumbs.cpython-311.pyc").write_bytes(b"x"),
     "__pycache__/: compiled bytecode is refused"),
    (lambda f: (f / "helper.pyc").write_bytes(b"x"), "helper.pyc: compiled bytecode is refused"),
    (lambda f: (f / "lib").symlink_to("/usr/lib"), "lib/: symbolic links are not allowed"),
])
def test_code_outside_the_hash_is_refused(make, expected, tmp_path):
    folder = shutil.copytree(EXAMPLES / "model_breadcrumbs", tmp_path / "model_breadcrumbs")
    make(folder)
    with pytest.raises(SubmissionError, match=expected.replace(".", r"\.")):
        load_submission(folder)


def test_without_bubblewrap_nothing_runs_unless_asked(monkeypatch):
    monkeypatch.setattr(isolation, "probe", lambda: "bubblewrap (`bwrap`) is not installed")
    with pytest.raises(isolation.IsolationUnavailable, match=r"apt-get install bubblewrap.*--no-isolation"):
        validate(EXAMPLES / "model_breadcrumbs", LIMITS)


@pytest.mark.parametrize("slug", ["model_breadcrumbs", "tv_trim_defense"])
def test_examples_are_bitwise_identical_with_and_without_isolation(slug):
    sub = load_submission(EXAMPLES / slug)
    g = torch.Generator().manual_seed(0)
    pre = {"class_embedding": torch.randn(8, generator=g), "proj": torch.randn(8, 4, generator=g)}
    fts = [{k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in pre.items()} for _ in range(3)]
    hp = dict(sub.manifest.hyperparameters)
    inside = sandboxed_call(sub, pre, fts, hp, LIMITS)[0]
    outside = sandboxed_call(sub, pre, fts, hp, Limits(LIMITS.timeout_s, LIMITS.memory_mb, isolate=False))[0]
    pairs = [(inside, outside)] if sub.kind == "merge" else list(zip(inside, outside, strict=True))
    for a, b in pairs:
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_parent_leaves_no_process(sig, tmp_path):
    """A CI cancel (SIGTERM) or kill -9 during validate of a method that sleeps: every process the command
    started is gone (bwrap --die-with-parent); after SIGTERM (exit 143) no temporary folder is left either."""
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    proc = subprocess.Popen([sys.executable, "-m", "benchmark.cli", "validate",
                             str(FIXTURES / "broken_submissions" / "timeout")], cwd=ROOT,
                            env={**os.environ, "TMPDIR": str(tmp)}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline, family = time.monotonic() + 120, set()
    while time.monotonic() < deadline and len(family) < 3:  # the CLI, bwrap and the sandbox's processes
        time.sleep(0.5)
        family = _descendants(proc.pid)
    assert list(tmp.glob("mergesec-sandbox-*")) and len(family) >= 3, family
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    assert proc.returncode == (128 + sig if sig == signal.SIGTERM else -sig)
    deadline = time.monotonic() + 10
    while {p for p, _, _ in _processes()} & family and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not {p for p, _, _ in _processes()} & family
    if sig == signal.SIGTERM:
        assert not list(tmp.iterdir())


def _descendants(pid: int) -> set[int]:
    procs, family, grew = _processes(), {pid}, True
    while grew:
        new = {p for p, _, ppid in procs if ppid in family} - family
        family |= new
        grew = bool(new)
    return family


def test_docs_state_the_boundary_limits():
    """docs/submitting.md quotes the sandbox's limits; they must be the code's."""
    from benchmark.store.store import _HELD_S
    from benchmark.submissions.sandbox import HEADER_ROOM_MB, MAX_ANSWER_BYTES, STDERR_TAIL_BYTES

    doc = " ".join((ROOT / "docs" / "submitting.md").read_text().split())
    lim = Limits()
    for text in (f"default {lim.file_mb} MiB", f"tmpfs of {lim.tmp_mb} MiB", f"last {STDERR_TAIL_BYTES} bytes",
                 f"fails after {_HELD_S:g} s", f"`RLIMIT_NOFILE` {lim.rlimits()['NOFILE']}",
                 f"capped at {MAX_ANSWER_BYTES // 1_000_000} MB", f"time limit + {lim.rlimits()['CPU'] - 600} s",
                 f"default {lim.memory_mb} MiB", f"largest expected output + {HEADER_ROOM_MB} MiB"):
        assert text in doc, text


def test_disk_full_and_read_only_become_one_clear_message():
    import errno

    from benchmark.submissions.lifecycle import os_error_message

    msg = os_error_message(OSError(errno.ENOSPC, "No space left on device", "/data/results.duckdb"))
    assert msg.startswith("the disk is full (/data/results.duckdb)") and "run the command again" in msg
    assert os_error_message(OSError(errno.EROFS, "Read-only file system")).startswith("the folder is on a read-only")
    duck = RuntimeError('IO Error: Could not write file "x.wal": No space left on device')
    assert os_error_message(duck).startswith("the disk is full")
    assert os_error_message(ValueError("something else")) is None


def test_a_connection_held_elsewhere_fails_fast_with_its_pid(tmp_path):
    """A notebook holding the database open read-only: the writer fails in seconds (not after the 60 s lock
    wait) with a message naming the process."""
    from benchmark.errors import StoreError
    from benchmark.store import Store

    store = Store(tmp_path / "r.duckdb")
    store.migrate()
    holder = subprocess.Popen([sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], "
                               "read_only=True); print('open', flush=True); time.sleep(60)", str(store.path)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "open"
        t0 = time.perf_counter()
        with pytest.raises(StoreError, match=f"process {holder.pid} has held it open read-only"):
            store.migrate()
        assert time.perf_counter() - t0 < 30
    finally:
        holder.kill()
        holder.wait()
