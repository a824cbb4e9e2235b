"""`--device` / `$MERGESEC_DEVICE`: resolution, the CPU-only thread pin, one clear error without CUDA."""

import os
import subprocess
import sys

import pytest
import torch

from benchmark import device as dev
from benchmark.cache import Cache
from benchmark.context import RunContext
from benchmark.errors import MergesecError
from benchmark.zoo.model import ImageClassifier, predict


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch):
    monkeypatch.delenv(dev.DEVICE_ENV, raising=False)
    monkeypatch.delenv(dev.THREADS_ENV, raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _fake_cuda(monkeypatch, count: int) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def test_resolution_defaults_env_and_auto(monkeypatch):
    assert dev.resolve_device() == torch.device("cpu")  # nothing set: the reproducible default
    assert dev.resolve_device("CPU") == torch.device("cpu")
    _fake_cuda(monkeypatch, 0)
    assert dev.resolve_device("auto") == torch.device("cpu")
    monkeypatch.setenv(dev.DEVICE_ENV, "auto")
    assert dev.resolve_device() == torch.device("cpu")
    _fake_cuda(monkeypatch, 2)
    assert dev.resolve_device() == torch.device("cuda:0")  # the env var is read
    assert dev.resolve_device("cpu") == torch.device("cpu")  # the option wins over it
    assert dev.resolve_device("cuda") == torch.device("cuda:0")
    assert dev.resolve_device("cuda:1") == torch.device("cuda:1")
    with pytest.raises(MergesecError, match=r"2 CUDA device\(s\) \(cuda:0 \.\. cuda:1\)"):
        dev.resolve_device("cuda:2")


@pytest.mark.parametrize("spec, needle", [("gpu0", "is not a device"), ("meta", "not 'meta'")])
def test_bad_names_are_refused(spec, needle):
    with pytest.raises(MergesecError, match=needle):
        dev.resolve_device(spec)


def test_cuda_without_cuda_is_one_clear_error(monkeypatch, tmp_path):
    _fake_cuda(monkeypatch, 0)
    with pytest.raises(MergesecError, match=r"sees no CUDA device.*--device cpu"):
        dev.resolve_device("cuda")
    monkeypatch.setenv(dev.DEVICE_ENV, "cuda:0")
    with pytest.raises(MergesecError, match="sees no CUDA device"):
        RunContext(None, Cache(tmp_path), progress=False)


def test_thread_pin_applies_on_cpu_only(monkeypatch):
    assert dev.configure_threads(torch.device("cpu")) == 1
    cores = len(os.sched_getaffinity(0))
    assert dev.configure_threads(torch.device("cuda:0")) == cores  # an accelerator: the pin is lifted
    monkeypatch.setenv(dev.THREADS_ENV, "2")
    assert dev.configure_threads(torch.device("cuda:0")) == 2 == dev.configure_threads(torch.device("cpu"))


def test_use_device_exports_for_workers_and_run_context_reads_it(monkeypatch, tmp_path):
    assert dev.use_device("cpu") == torch.device("cpu") and os.environ[dev.DEVICE_ENV] == "cpu"
    assert RunContext(None, Cache(tmp_path), progress=False).device == torch.device("cpu")
    assert RunContext(None, Cache(tmp_path), False, torch.device("cpu")).device.type == "cpu"


def test_classifier_returns_logits_on_the_input_device_with_input_gradients():
    torch.manual_seed(0)
    enc, head = torch.nn.Linear(12, 4), torch.nn.Linear(4, 3)
    model = ImageClassifier(torch.nn.Sequential(torch.nn.Flatten(), enc), head, (0.5,) * 3, (0.25,) * 3)
    x = torch.rand(5, 3, 2, 2, requires_grad=True)
    out = model(x)
    assert out.device == x.device and out.shape == (5, 3)
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    expected = head(enc(((x - 0.5) / 0.25).flatten(1)))
    torch.testing.assert_close(out, expected)
    assert torch.equal(predict(model, x.detach(), batch_size=2), expected.argmax(-1))


@pytest.mark.parametrize("command", ["run", "zoo", "submit", "reproduce"])
def test_cli_device_cuda_without_cuda_exits_2_with_one_line(command, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    args = {"run": ["run", "--db", str(tmp_path / "r.duckdb")], "zoo": ["zoo"],
            "submit": ["submit", "submissions/no-such"], "reproduce": ["reproduce", "no-such"]}[command]
    res = subprocess.run([sys.executable, "-m", "benchmark.cli", *args, "--device", "cuda"], capture_output=True,
                         text=True, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: --device 'cuda' asks for CUDA")
    assert not (tmp_path / "r.duckdb").exists()  # refused before anything is written


def test_data_workers_stream_the_same_batches(monkeypatch):
    """`$MERGESEC_DATA_WORKERS` decodes in worker processes; the batches (order and values) do not change."""
    import numpy as np

    from benchmark.data import batches
    from benchmark.data.loader import WORKERS_ENV
    from benchmark.data.synthetic import SyntheticImages

    ds = SyntheticImages("t", "test", np.arange(10), n_classes=3, image_size=8, seed=0)
    serial = list(batches(ds, batch_size=4))
    monkeypatch.setenv(WORKERS_ENV, "2")
    parallel = list(batches(ds, batch_size=4))
    assert [len(y) for _, y in parallel] == [4, 4, 2]
    for (xa, ya), (xb, yb) in zip(serial, parallel, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert torch.equal(torch.cat([y for _, y in parallel]), torch.arange(10) % 3)
