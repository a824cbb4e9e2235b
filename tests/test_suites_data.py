import pytest
import torch

from benchmark.data import load_pretrain_images, load_task
from benchmark.data.digits import _split_indices
from benchmark.errors import MergesecError, UnknownNameError
from benchmark.suites import list_suites, load_suite
from tests.conftest import tiny_suite_raw, write_suite


def test_digits_suite_has_six_tasks_and_stable_hash():
    s = load_suite("digits")
    assert len(s.tasks) >= 6
    assert load_suite("digits").hash == s.hash
    assert len({(t.options["domain"], t.options["labels"]) for t in s.tasks}) == len(s.tasks)


def test_hash_changes_with_protocol(tmp_path):
    a = write_suite(tmp_path / "a.yaml", tiny_suite_raw())
    raw = tiny_suite_raw()
    raw["transfer"]["eps"] = 4 / 255
    b = write_suite(tmp_path / "b.yaml", raw)
    assert a.hash != b.hash


def test_unknown_suite_lists_valid_names():
    with pytest.raises(UnknownNameError) as e:
        load_suite("nope")
    for name in list_suites():
        assert name in str(e.value)


def test_suite_missing_section_is_named(tmp_path):
    raw = tiny_suite_raw()
    del raw["transfer"]
    with pytest.raises(MergesecError, match="transfer"):
        write_suite(tmp_path / "bad.yaml", raw)


def test_splits_disjoint_and_seeded():
    s = load_suite("digits")
    idx = _split_indices(s)
    all_idx = [i for part in idx.values() for i in part]
    assert len(all_idx) == len(set(all_idx)) == sum(s.data["splits"].values())
    assert all((idx[k] == _split_indices(s)[k]).all() for k in idx)
    assert load_pretrain_images(s).shape == (s.data["splits"]["pretrain"], 3, 16, 16)


def test_task_domains_and_labels():
    s = load_suite("digits")
    digit, inverted, parity = (load_task(s, t) for t in ("digit", "inverted", "parity"))
    xd, yd = digit.test.tensors
    xi, yi = inverted.test.tensors
    assert torch.allclose(xi, 1 - xd) and torch.equal(yi, yd)
    assert torch.equal(parity.test.tensors[1], yd % 2)
    assert xd.min() >= 0 and xd.max() <= 1
    rot = load_task(s, "rotated").test.tensors[0]
    assert torch.allclose(rot, torch.rot90(xd, 1, dims=(-2, -1)))
    assert {load_task(s, t).n_classes for t in s.task_names} == {2, 3, 10}


def test_pretrain_domains_show_each_image_once_per_domain(tmp_path):
    raw = tiny_suite_raw()
    upright = load_pretrain_images(write_suite(tmp_path / "a.yaml", raw))
    raw["data"]["pretrain_domains"] = ["upright", "rotated180", "inverted"]
    x = load_pretrain_images(write_suite(tmp_path / "b.yaml", raw))
    n = len(upright)
    assert x.shape == (3 * n, *upright.shape[1:])
    assert torch.equal(x[:n], upright)
    assert torch.equal(x[n : 2 * n], torch.flip(upright, dims=(-2, -1)))  # 180° = both flips
    assert torch.allclose(x[2 * n :], 1 - upright)
    raw["data"]["pretrain_domains"] = ["upright", "sideways"]
    with pytest.raises(UnknownNameError, match="sideways"):
        load_pretrain_images(write_suite(tmp_path / "c.yaml", raw))
