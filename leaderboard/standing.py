"""What a method's page shows about it, as plain tables (no Streamlit, no SQL): its standing in each
track's ranking, its hyperparameters, and its stored rows with readable headers (no unit keys or JSON)."""

import json

import pandas as pd

from leaderboard.tables import fmt_ci, fmt_eps, fmt_value

HEADERS = {
    "task": "task", "attack": "attack", "surrogate": "surrogate", "seed": "seed", "eps": "budget ε", "n": "examples",
    "n_subset": "counted examples", "clean_acc_surrogate": "surrogate clean acc.",
    "clean_acc_target": "merged clean acc.", "asr_whitebox": "white-box ASR", "asr_transfer": "transfer ASR",
    "relative_asr": "relative transfer ASR", "asr_whitebox_all": "white-box ASR (all)",
    "asr_transfer_all": "transfer ASR (all)", "grad_cosine": "gradient cosine", "cka": "CKA",
    "clean_acc": "clean accuracy", "finetuned_acc": "fine-tuned accuracy", "pretrained_acc": "pretrained accuracy",
    "normalized_acc": "normalized accuracy", "merge_seconds": "merge time (s)", "variant": "variant",
    "defense": "defense", "adversary_task": "adversary task", "target_task": "target task",
    "target_class": "target class", "backdoor_asr": "backdoor ASR", "n_asr": "triggered examples",
    "asr_floor": "untriggered floor", "role": "role", "method": "method",
}
HIDDEN = ("unit_key", "hparams", "suite", "suite_hash", "row_digest")


def readable(rows: pd.DataFrame) -> pd.DataFrame:
    """Stored rows as shown: internal columns dropped, ε as k/255, human headers."""
    out = rows.drop(columns=[c for c in HIDDEN if c in rows.columns])
    if "eps" in out.columns:
        out["eps"] = out["eps"].map(fmt_eps)
    return out.rename(columns={c: HEADERS.get(c, c.replace("_", " ")) for c in out.columns})


def hparam_table(ran: list[str], defaults: str | None) -> pd.DataFrame:
    """``parameter, value on this suite, registered default`` from the stored JSON (one row per key)."""
    used = [json.loads(h) for h in ran] or [{}]
    regd = json.loads(defaults or "{}")
    keys = sorted({k for h in used for k in h} | set(regd))
    text = lambda v: "–" if v is None else (json.dumps(v) if isinstance(v, dict | list) else str(v))  # noqa: E731
    return pd.DataFrame({"parameter": keys,
                         "value on this suite": [" / ".join(sorted({text(h.get(k)) for h in used})) for k in keys],
                         "registered default": [text(regd.get(k)) for k in keys]})


def standing_row(track_label: str, res: pd.DataFrame, method: str, spec) -> dict:
    """One line of the method's standing: CI-aware rank of how many, mean and interval."""
    hit = res[res.method == method]
    if hit.empty:
        return {"ranking": track_label, "rank": "–", "of": len(res), "mean": "–", "95% CI": "–"}
    r = hit.iloc[0]
    shared = int((res["rank"] == r["rank"]).sum())
    return {"ranking": track_label, "rank": f"{int(r['rank'])}" + (f" (shared by {shared})" if shared > 1 else ""),
            "of": len(res), "mean": fmt_value(r["mean"], spec.percent),
            "95% CI": fmt_ci(r.ci_low, r.ci_high, spec.percent)}
