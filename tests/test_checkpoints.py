import pytest
import torch

from benchmark.cache import Cache
from benchmark.checkpoints import load_state, save_state
from benchmark.errors import CheckpointError


def test_roundtrip_and_atomic(tmp_path):
    state = {"w": torch.randn(3, 4), "b": torch.zeros(4)}
    save_state(tmp_path / "m.safetensors", state)
    back = load_state(tmp_path / "m.safetensors", expected=state)
    assert all(torch.equal(back[k], state[k]) for k in state)
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp file left behind


def test_pickle_is_refused_with_conversion_hint(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"w": torch.zeros(1)}, path)
    with pytest.raises(CheckpointError, match=r"only \.safetensors.*save_file"):
        load_state(path)


def test_nan_weights_refused(tmp_path):
    path = tmp_path / "nan.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.tensor([1.0, float("nan")])}, str(path))
    with pytest.raises(CheckpointError, match="'w' has NaN/inf"):
        load_state(path)


def test_mismatched_checkpoint_refused(tmp_path):
    save_state(tmp_path / "a.safetensors", {"w": torch.zeros(2, 2)})
    with pytest.raises(CheckpointError, match="shape"):
        load_state(tmp_path / "a.safetensors", expected={"w": torch.zeros(3, 2)})
    with pytest.raises(CheckpointError, match="missing"):
        load_state(tmp_path / "a.safetensors", expected={"v": torch.zeros(2, 2)})


def test_corrupt_file_refused(tmp_path):
    (tmp_path / "c.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_state(tmp_path / "c.safetensors")


def test_cache_builds_once(tmp_path):
    cache, calls = Cache(tmp_path), []

    def build():
        calls.append(1)
        return {"w": torch.ones(2)}

    a = cache.get_or_build("k", {"x": 1}, build)
    b = cache.get_or_build("k", {"x": 1}, build)
    cache.get_or_build("k", {"x": 2}, build)
    assert len(calls) == 2 and torch.equal(a["w"], b["w"])
