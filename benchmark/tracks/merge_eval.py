"""The merge track: clean accuracy and normalized accuracy (merged / fine-tuned) of every merge method.

One unit per (method, seed); it merges once and evaluates every task on its full test split.
"""

import json

import pandas as pd

from benchmark.tracks.base import Track, Unit, register_track
from benchmark.zoo import dataset_accuracy


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

    def run_unit(self, unit, ctx):
        d = unit.description
        merged = ctx.merged(d["method"], d["hparams"], d["seed"])
        rows = []
        for task in ctx.suite.task_names:
            test = ctx.data(task).test
            zoo = ctx.zoo
            clean = dataset_accuracy(ctx.target(merged, task), test)
            ft = dataset_accuracy(zoo.classifier(zoo.finetuned[task], task), test)
            rows.append({
                "suite": ctx.suite.name, "suite_hash": ctx.suite.hash, "method": d["method"],
                "hparams": d["hparams"], "seed": d["seed"], "task": task, "n": len(test), "clean_acc": clean,
                "finetuned_acc": ft, "pretrained_acc": dataset_accuracy(zoo.classifier(zoo.pretrained, task), test),
                "normalized_acc": clean / ft if ft else None, "merge_seconds": merged.seconds,
            })
        df = pd.DataFrame(rows)
        df["hparams"] = df["hparams"].map(lambda h: json.dumps(h, sort_keys=True))
        return {"merge_eval": df}
