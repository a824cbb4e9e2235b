"""Data-dependent merge submissions (manifest `needs`) run in the sandbox (issue 17): the manifest's rules,
validate, a call through `merge()` bitwise identical inside the sandbox, without it and in process, and a
submit on the tiny suite with and without isolation. Fixture: tests/fixtures/data_submissions/."""

import importlib.util
import json
import re
import shutil
from pathlib import Path

import pytest
import torch
from torch.utils.data import TensorDataset

from benchmark.submissions import Limits, SubmissionError, load_submission
from benchmark.submissions.check import SMOKE_BACKBONE, SMOKE_SHAPES, smoke_data, smoke_inputs, validate
from benchmark.submissions.manifest import parse_manifest

FIXTURE = Path(__file__).parent / "fixtures" / "data_submissions" / "entropy_scaling"
LIMITS = Limits(timeout_s=300, memory_mb=8192)
BASE = {"name": "m_x", "kind": "merge", "authors": ["A"], "paper_url": "https://a.org", "code_url": "https://a.org",
        "license": "MIT", "entry_point": "m:f", "tracks": ["merge"], "suites": ["digits"]}


@pytest.mark.parametrize(("change", "expected"), [
    ({"kind": "defense", "tracks": ["backdoor"], "needs": ["seed"]}, "only merge methods declare needs"),
    ({"needs": ["test_data"]}, "field `needs[0]`: expected 'unlabelled_dev', 'labelled_dev', 'classifier_factory'"),
    ({"needs": ["seed", "seed"]}, "entries must be unique"),
])
def test_manifest_needs_are_checked(change, expected):
    assert parse_manifest({**BASE, "needs": ["labelled_dev", "seed"]}).needs == ["labelled_dev", "seed"]
    with pytest.raises(SubmissionError, match=re.escape(expected)):
        parse_manifest({**BASE, **change})


@pytest.mark.parametrize(("needs", "expected"), [
    ([], "only a data-dependent merge method declares seed_free"),
    (["seed"], "only a data-dependent merge method declares seed_free"),
    (["unlabelled_dev", "seed"], 'a method that needs "seed" draws random numbers from it'),
])
def test_manifest_seed_free_is_checked_and_reaches_the_registry(needs, expected, tmp_path):
    """`seed_free` only on a data-dependent method without the need "seed"; by default a submission reads the
    seed, and the declaration reaches its `MergeMethod` (one merge for every seed)."""
    from benchmark.submissions.registration import build_method

    assert parse_manifest({**BASE, "needs": ["unlabelled_dev"], "seed_free": True}).seed_free
    with pytest.raises(SubmissionError, match=re.escape(expected)):
        parse_manifest({**BASE, "needs": needs, "seed_free": True})
    shutil.copytree(FIXTURE, tmp_path / "entropy_scaling")
    assert build_method(load_submission(tmp_path / "entropy_scaling")).reads_seed
    manifest = tmp_path / "entropy_scaling" / "submission.toml"
    manifest.write_text(manifest.read_text().replace("\nneeds", "\nseed_free = true\nneeds"))
    declared = build_method(load_submission(tmp_path / "entropy_scaling"))
    assert declared.seed_free and not declared.reads_seed


def test_smoke_backbone_is_the_smoke_encoder():
    """validate's classifier factory loads the smoke state dicts (every key, every shape)."""
    from benchmark.suites.spec import BackboneSpec
    from benchmark.zoo.backbone import build_encoder

    enc = build_encoder(BackboneSpec(**{**SMOKE_BACKBONE, "mean": (0.5,) * 3, "std": (0.25,) * 3}))
    assert {k: tuple(v.shape) for k, v in enc.state_dict().items()} == SMOKE_SHAPES


def test_validate_runs_a_data_dependent_submission_in_the_sandbox():
    report = validate(FIXTURE, LIMITS)
    assert any("and classifier_factory, unlabelled_dev: returns a valid merged state dict" in c
               for c in report.checks), report.checks


def _context():
    """A MergeContext of the smoke models, with labelled dev sets (the sandbox must drop the labels) and
    mergesec's TaskClassifiers on the smoke backbone."""
    from benchmark.defenses.api import TaskClassifiers
    from benchmark.merging import MergeContext
    from benchmark.suites.spec import BackboneSpec
    from benchmark.zoo.model import ClassificationHead

    pre, *fts = [{k: torch.from_numpy(v) for k, v in sd.items()} for sd in smoke_inputs()]
    data = smoke_data(frozenset({"labelled_dev", "classifier_factory"}))
    heads = []
    for i in range(len(fts)):
        h = ClassificationHead(4, 3)
        h.load_state_dict({"weight": torch.from_numpy(data.heads[f"{i}.weight"]),
                           "bias": torch.from_numpy(data.heads[f"{i}.bias"])})
        heads.append(h)
    spec = BackboneSpec(**{**SMOKE_BACKBONE, "mean": (0.5,) * 3, "std": (0.25,) * 3})
    dev = [TensorDataset(*(torch.from_numpy(a) for a in next(d.batches()))) for d in data.dev]
    return MergeContext(pre, fts, [f"t{i}" for i in range(3)], TaskClassifiers(spec, tuple(heads)), dev, seed=0)


def test_merge_is_bitwise_identical_inside_outside_the_sandbox_and_in_process(tmp_path):
    """Through `benchmark.merging.merge` (the tracks' path): the sandboxed method, the same without
    isolation, and the fixture's function imported here on the unlabelled view of the same context."""
    import dataclasses

    from benchmark.merging import merge
    from benchmark.submissions.registration import build_method

    sub, ctx = load_submission(FIXTURE), _context()
    hp = dict(sub.manifest.hyperparameters)
    inside = merge(build_method(sub, LIMITS), ctx.pretrained, ctx.finetuned, context=ctx, **hp)
    outside = merge(build_method(sub, Limits(LIMITS.timeout_s, LIMITS.memory_mb, isolate=False)), ctx.pretrained,
                    ctx.finetuned, context=ctx, **hp)
    # imported from a copy: an import writes __pycache__/ beside the source, which the fixture must never hold
    source = shutil.copy(FIXTURE / "entropy.py", tmp_path / "entropy.py")
    spec = importlib.util.spec_from_file_location("entropy_fixture", source)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    unlabelled = [TensorDataset(ds.tensors[0], torch.full((len(ds),), -1)) for ds in ctx.dev_data]
    with torch.no_grad():
        here = module.merge(dataclasses.replace(ctx, dev_data=unlabelled), **hp)
    assert inside.keys() == outside.keys() == here.keys() == ctx.pretrained.keys()
    assert all(torch.equal(inside[k], outside[k]) and torch.equal(inside[k], here[k]) for k in here)
    assert not all(torch.equal(here[k], ctx.pretrained[k]) for k in here)


SEEDED = """import torch

def merge(pretrained, finetuned, seed, scale=0.01):
    g = torch.Generator().manual_seed(seed)
    return {k: v + scale * torch.randn(v.shape, generator=g) for k, v in pretrained.items()}
"""


def test_a_seeded_submission_gets_the_units_seed(tmp_path):
    """needs = ["seed"]: fn(pretrained, finetuned, seed), called with MergeContext.seed through `merge()`."""
    from benchmark.merging import MergeContext, merge
    from benchmark.submissions.registration import build_method

    folder = tmp_path / "seeded_noise"
    folder.mkdir()
    (folder / "noise.py").write_text(SEEDED)
    toml = {**BASE, "name": "seeded_noise", "entry_point": "noise:merge", "needs": ["seed"]}
    (folder / "submission.toml").write_text("".join(f"{k} = {json.dumps(v)}\n" for k, v in toml.items()))
    method = build_method(load_submission(folder), LIMITS)
    pre, *fts = [{k: torch.from_numpy(v) for k, v in sd.items()} for sd in smoke_inputs()]
    got = merge(method, pre, fts, context=MergeContext(seed=7))
    g = torch.Generator().manual_seed(7)
    assert all(torch.equal(got[k], v + 0.01 * torch.randn(v.shape, generator=g)) for k, v in pre.items())


def test_a_data_free_signature_with_needs_is_refused_with_the_contract(tmp_path):
    folder = shutil.copytree(Path(__file__).resolve().parents[1] / "submissions" / "model_breadcrumbs",
                             tmp_path / "model_breadcrumbs")
    toml = folder / "submission.toml"
    toml.write_text(toml.read_text().replace("[hyperparameters]", 'needs = ["unlabelled_dev"]\n\n[hyperparameters]'))
    with pytest.raises(SubmissionError, match=re.escape("with needs ['unlabelled_dev'] the entry point is "
                                                        "fn(ctx, **hyperparameters)")):
        validate(folder, LIMITS)


def test_a_factory_the_sandbox_cannot_rebuild_is_refused():
    import dataclasses

    from benchmark.submissions.data import from_context

    ctx = dataclasses.replace(_context(), classifier_factory=lambda sd, i, adapter=None: None)
    with pytest.raises(SubmissionError, match="the sandbox rebuilds only mergesec's TaskClassifiers"):
        from_context(ctx, frozenset({"classifier_factory"}), "x")


@pytest.mark.slow
def test_submit_with_and_without_isolation_stores_identical_rows(tmp_path, tiny_suite, tiny_suite_path, tiny_cache):
    """submit on the tiny suite's merge track: the zoo from the shared cache, the merge (not cached yet) in
    the sandbox, and again without isolation from a copy of the same zoo: the stored rows are identical."""
    from benchmark.cache import Cache
    from benchmark.store import Store
    from benchmark.submissions.submit import submit
    from benchmark.zoo import build_zoo

    build_zoo(tiny_suite, Cache(tiny_cache), progress=False)
    rows = []
    for isolate in (True, False):
        cache = shutil.copytree(tiny_cache, tmp_path / f"cache-{isolate}")
        db = tmp_path / f"results-{isolate}.duckdb"
        limits = Limits(LIMITS.timeout_s, LIMITS.memory_mb, isolate=isolate)
        report = submit(FIXTURE, suite=tiny_suite_path, db=db, cache=cache, limits=limits, progress=False)
        assert report.units_run > 0
        got = Store(db).read("SELECT * FROM merge_eval WHERE method = 'entropy_scaling' ORDER BY ALL")
        assert len(got) == len(tiny_suite.task_names)
        rows.append(got.drop(columns=[c for c in got.columns if "second" in c or c.endswith("_s")]))
    assert rows[0].equals(rows[1])


def test_docs_quote_the_data_paths_numbers():
    from benchmark.submissions.check import SMOKE_DEV

    doc = " ".join((Path(__file__).resolve().parents[1] / "docs" / "submitting.md").read_text().split())
    assert f"random dev images ({SMOKE_DEV} per task)" in doc
