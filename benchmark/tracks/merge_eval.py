"""The merge track: clean accuracy and normalized accuracy (merged / fine-tuned) of every merge method.

One unit per (method, seed); it takes the merged model (computed once per (method, seed), `RunContext.merged`;
once for every seed whose fine-tunes are the same when the method does not read the seed,
`RunContext.merge_seed`, and then its `merge_seconds` are that one merge's in those seeds' rows) and
evaluates every task on its full test split.
The fine-tuned and pretrained reference accuracies do not depend on the method: each is computed once for
the lifetime of the cache (kind `clean_accuracy`, keyed by the content digests of the weights). A unit of
seed s merges, and normalises by, the fine-tunes of seed s's zoo (`Zoo.for_seed`).
"""

import json

import pandas as pd
import torch

from benchmark import trace
from benchmark.cache import code_digest
from benchmark.tracks.base import Track, Unit, register_track
from benchmark.zoo import dataset_accuracy


def reference_accuracy(ctx, encoder: str, task: str, seed: int) -> float:
    """Test accuracy of encoder `encoder` (`pretrained` or `finetuned/<task>`) of run seed `seed`'s zoo with
    `task`'s head."""
    from benchmark.zoo import model

    zoo = ctx.zoo.for_seed(seed)
    spec = {"artefact": "clean_accuracy", "encoder": ctx.weights_digest(encoder, seed),
            "head": ctx.weights_digest(f"head/{task}", seed), "task": task, "data": zoo.keys[f"head/{task}"],
            "code": code_digest(model), "torch": torch.__version__}

    def build() -> dict[str, torch.Tensor]:
        state = zoo.pretrained if encoder == "pretrained" else zoo.finetuned[task]
        acc = dataset_accuracy(zoo.classifier(state, task), ctx.data(task).test, ctx.batch_sizes["eval"])
        return {"accuracy": torch.tensor(acc, dtype=torch.float64)}

    return float(ctx.cache.get_or_build("clean_accuracy", spec, build)["accuracy"])


@register_track
class MergeEvalTrack(Track):
    """Clean and normalized accuracy of every merged model on every task (the utility side)."""

    name = "merge"

    def plan(self, ctx, methods):
        return [
            Unit(self.name, {"suite_hash": ctx.suite.hash, "method": m, "hparams": ctx.method_hparams(m),
                             "seed": seed, "code": ctx.method_code(m)})
            for m in methods for seed in ctx.suite.merge_seeds
        ]

    def affinity(self, description):
        """The seeds of a method that does not read the seed share one merge (`RunContext.merge_seed`): they run
        in one worker, one after the other, so no other worker sits on the cache's lock while it merges."""
        from benchmark.merging import get_method

        return None if get_method(description["method"]).reads_seed else description["method"]

    def run_unit(self, unit, ctx):
        d = unit.description
        merged = ctx.merged(d["method"], d["hparams"], d["seed"])
        rows = []
        for task in ctx.suite.task_names:
            test = ctx.data(task).test
            trace.record("forward", what="merge_clean", method=d["method"], seed=d["seed"], task=task,
                         images=len(test))
            clean = dataset_accuracy(ctx.target(merged, task), test, ctx.batch_sizes["eval"])
            ft = reference_accuracy(ctx, f"finetuned/{task}", task, d["seed"])
            rows.append({
                "suite": ctx.suite.name, "suite_hash": ctx.suite.hash, "method": d["method"],
                "hparams": d["hparams"], "seed": d["seed"], "task": task, "n": len(test), "clean_acc": clean,
                "finetuned_acc": ft, "pretrained_acc": reference_accuracy(ctx, "pretrained", task, d["seed"]),
                "normalized_acc": clean / ft if ft else None, "merge_seconds": merged.seconds,
            })
        df = pd.DataFrame(rows)
        df["hparams"] = df["hparams"].map(lambda h: json.dumps(h, sort_keys=True))
        return {"merge_eval": df}
