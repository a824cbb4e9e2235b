"""Nothing reads a whole split into memory: the readers that once did (the digits probe, the shadow head's
data, IBVS's dev split) now stream, read only what they use, and compute bitwise what the in-memory path did
(issue 15). A split that is not a `TensorDataset` takes the DataLoader path that image-file splits take."""

import torch
from torch.utils.data import ConcatDataset, Dataset, TensorDataset

from benchmark.data import labels, load_task
from benchmark.data.loader import OffsetLabels
from benchmark.defenses.ibvs import _dataset_digest, _digest
from benchmark.zoo.backbone import build_encoder
from benchmark.zoo.train import fit_probe


class Counted(Dataset):
    """A split read item by item (as the Hugging Face splits are), counting the images it decodes."""

    def __init__(self, base: TensorDataset):
        self.base, self.reads = base, 0

    def __len__(self) -> int:
        return len(self.base)

    def __getitem__(self, i):
        self.reads += 1
        return self.base[i]

    @property
    def targets(self) -> torch.Tensor:
        return self.base.tensors[1]


def test_probe_reads_only_its_shots_and_equals_the_in_memory_probe(tiny_suite):
    train = load_task(tiny_suite, "digit").train
    torch.manual_seed(0)
    enc = build_encoder(tiny_suite.backbone)
    b, shots = tiny_suite.backbone, 3
    in_memory = fit_probe(enc, train, 10, b.mean, b.std, shots, 1.0, seed=0).state_dict()
    streamed = Counted(train)
    head = fit_probe(enc, streamed, 10, b.mean, b.std, shots, 1.0, seed=0).state_dict()
    assert streamed.reads == 10 * shots < len(train)
    assert all(torch.equal(head[k], in_memory[k]) for k in head)


def test_offset_labels_and_concatenations_say_their_labels_without_decoding(tiny_suite):
    train = Counted(load_task(tiny_suite, "digit").train)
    extra = TensorDataset(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long))
    ds = ConcatDataset([extra, OffsetLabels(train, 1)])
    assert torch.equal(labels(ds), torch.cat([torch.zeros(2, dtype=torch.long), train.targets + 1]))
    assert train.reads == 0
    assert int(ds[2][1]) == int(train.targets[0]) + 1


def test_ibvs_digest_of_a_streamed_split_is_the_digest_of_its_tensors(tiny_suite):
    dev = load_task(tiny_suite, "parity").dev
    x, y = dev.tensors
    assert _dataset_digest(Counted(dev), y) == _dataset_digest(dev, y) == _digest(x, y)
    assert _dataset_digest(dev, y) != _digest(x[1:], y[1:])


def test_a_submissions_dev_split_is_written_and_read_batch_by_batch(tmp_path, tiny_suite):
    """The sandbox's dev file is written a batch at a time from a streamed split and read back item by item
    (the worker's `_DevFile`, as a TensorDataset indexes); its tensors are the split's, bit for bit."""
    from safetensors.torch import load_file

    from benchmark.submissions import worker
    from benchmark.submissions.data import DevSplit

    dev = load_task(tiny_suite, "parity").dev
    x, y = dev.tensors
    streamed = Counted(dev)
    split = DevSplit.of_dataset(streamed, labelled=True)
    assert streamed.reads == 1  # the item shape; the split is read when written
    split.write(tmp_path / "dev_0.safetensors")
    assert streamed.reads == 1 + len(dev)
    back = load_file(str(tmp_path / "dev_0.safetensors"))
    assert torch.equal(back["x"], x) and torch.equal(back["y"], y)
    lazy = worker._DevFile(tmp_path / "dev_0.safetensors", torch)
    assert len(lazy) == len(dev)
    assert torch.equal(lazy[3][0], x[3]) and int(lazy[-1][1]) == int(y[-1])
    assert torch.equal(lazy[:5][0], x[:5]) and torch.equal(lazy[:5][1], y[:5])
    DevSplit.of_dataset(dev, labelled=False).write(tmp_path / "dev_1.safetensors")
    assert bool((worker._DevFile(tmp_path / "dev_1.safetensors", torch)[:4][1] == -1).all())
