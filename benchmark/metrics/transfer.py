"""Exact definitions of the transfer-attack metrics (docs/transfer.md).

Per setting (method, task, attack, surrogate, seed), on the task's fixed test subset of size N, with
per-example flags

    sc_i = surrogate correct on clean x_i      tc_i = target correct on clean x_i
    sa_i = surrogate correct on adversarial x'_i   ta_i = target correct on x'_i

(x'_i crafted on the surrogate):

    counted_i          = sc_i and tc_i                      n = sum_i counted_i
    clean_acc_surrogate = mean_i sc_i                       clean_acc_target = mean_i tc_i
    asr_whitebox        = sum_i counted_i (1 - sa_i) / n     (NaN when n = 0)
    asr_transfer        = sum_i counted_i (1 - ta_i) / n     (NaN when n = 0)
    relative_asr        = asr_transfer / asr_whitebox        (NaN when asr_whitebox is 0 or NaN)
    asr_whitebox_all    = mean_i (1 - sa_i)                 (all N samples: 1 - robust accuracy)
    asr_transfer_all    = mean_i (1 - ta_i)

Aggregates over a group of settings (e.g. one method and surrogate, over tasks and attacks):

    AASR_whitebox = mean of asr_whitebox over the group's settings (NaN settings skipped)
    AASR_transfer = mean of asr_transfer over the group's settings
    relative_asr_mean = mean of the settings' relative_asr (NaN skipped)
    relative_aasr     = AASR_transfer / AASR_whitebox

Diagnostics: `grad_cosine` = mean over counted samples of the cosine between the surrogate's and the
target's input-gradients of the cross-entropy loss at the clean input; `cka` = linear CKA (Kornblith et
al., ICML 2019) between the surrogate's and the target's features of the N clean subset images.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

_nan = float("nan")


def _bool(v) -> np.ndarray:
    a = np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v)
    if a.dtype != bool:
        raise TypeError(f"expected a boolean flag vector, got dtype {a.dtype}")
    return a


def counted_mask(surrogate_clean_correct, target_clean_correct) -> np.ndarray:
    """The counted samples: those both surrogate and target classify correctly on clean input."""
    sc, tc = _bool(surrogate_clean_correct), _bool(target_clean_correct)
    if sc.shape != tc.shape:
        raise ValueError(f"flag vectors differ in shape: {sc.shape} vs {tc.shape}")
    return sc & tc


def attack_success_rate(adv_correct, mask=None) -> float:
    """Fraction of the samples selected by `mask` (all if None) that are misclassified after the attack;
    NaN when no sample is selected."""
    ac = _bool(adv_correct)
    m = np.ones_like(ac) if mask is None else _bool(mask)
    n = int(m.sum())
    return _nan if n == 0 else float((~ac & m).sum() / n)


def relative_asr(asr_transfer: float, asr_whitebox: float) -> float:
    """Transfer ASR / white-box ASR; NaN when the white-box ASR is 0 or undefined (nothing to transfer)."""
    if asr_whitebox is None or math.isnan(asr_whitebox) or asr_whitebox == 0 or math.isnan(asr_transfer):
        return _nan
    return float(asr_transfer / asr_whitebox)


def setting_metrics(surrogate_clean_correct, target_clean_correct, surrogate_adv_correct,
                    target_adv_correct) -> dict[str, float | int]:
    """All per-setting metrics from the four per-example flag vectors (see the module docstring)."""
    sc, tc = _bool(surrogate_clean_correct), _bool(target_clean_correct)
    sa, ta = _bool(surrogate_adv_correct), _bool(target_adv_correct)
    if not (sc.shape == tc.shape == sa.shape == ta.shape):
        raise ValueError("flag vectors differ in shape")
    counted = sc & tc
    wb, tr = attack_success_rate(sa, counted), attack_success_rate(ta, counted)
    n_subset = len(sc)
    return {
        "n": int(counted.sum()),
        "n_subset": n_subset,
        "clean_acc_surrogate": float(sc.mean()) if n_subset else _nan,
        "clean_acc_target": float(tc.mean()) if n_subset else _nan,
        "asr_whitebox": wb,
        "asr_transfer": tr,
        "relative_asr": relative_asr(tr, wb),
        "asr_whitebox_all": attack_success_rate(sa),
        "asr_transfer_all": attack_success_rate(ta),
    }


def metrics_from_examples(df: pd.DataFrame) -> dict[str, float | int]:
    """Recompute a setting's metrics from its rows of the `transfer_examples` view."""
    return setting_metrics(df.surrogate_clean_correct.to_numpy(bool), df.target_clean_correct.to_numpy(bool),
                           df.surrogate_adv_correct.to_numpy(bool), df.target_adv_correct.to_numpy(bool))


def aasr(values) -> float:
    """Average attack success rate: the mean of per-setting ASRs, skipping undefined (NaN) settings."""
    a = np.asarray(values, dtype=float)
    a = a[~np.isnan(a)]
    return float(a.mean()) if len(a) else _nan


def aggregate(settings: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """AASR (white-box, transfer), relative AASR, mean relative ASR, clean accuracies and diagnostics per group
    of `settings` (rows of `transfer_metrics`)."""
    def one(g: pd.DataFrame) -> pd.Series:
        wb, tr = aasr(g.asr_whitebox), aasr(g.asr_transfer)
        return pd.Series({
            "n_settings": len(g),
            "relative_asr_mean": aasr(g.relative_asr),
            "relative_aasr": relative_asr(tr, wb),
            "aasr_transfer": tr,
            "aasr_whitebox": wb,
            "aasr_transfer_all": aasr(g.asr_transfer_all),
            "clean_acc_target": aasr(g.clean_acc_target),
            "clean_acc_surrogate": aasr(g.clean_acc_surrogate),
            "grad_cosine": aasr(g.grad_cosine),
            "cka": aasr(g.cka),
        })

    if settings.empty:
        return pd.DataFrame(columns=[*by, "n_settings"])
    out = settings.groupby(by, sort=False).apply(one, include_groups=False).reset_index()
    out["n_settings"] = out["n_settings"].astype(int)
    return out


# -- diagnostics ----------------------------------------------------------------------------------------------


def clean_pass(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 512
               ) -> dict[str, torch.Tensor]:
    """One forward (and backward) pass of `model` over the clean `x`, in eval mode: its predictions
    (`clean_pred`), its features (`feats`, the head's input) and the per-example input-gradients of the
    cross-entropy loss (`grads`; summed loss, so each row is its own example's gradient). Parameters need not
    require grad."""
    model.eval()
    preds, feats, grads = [], [], []
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size].detach().clone().requires_grad_(True)
        f = model.features(xb)
        logits = model.head(f)
        loss = F.cross_entropy(logits, y[i : i + batch_size], reduction="sum")
        grads.append(torch.autograd.grad(loss, xb)[0].detach())
        preds.append(logits.detach().argmax(-1))
        feats.append(f.detach())
    if not grads:
        return {"clean_pred": torch.zeros(0, dtype=torch.long), "feats": torch.zeros(0, 0),
                "grads": torch.zeros_like(x)}
    return {"clean_pred": torch.cat(preds), "feats": torch.cat(feats), "grads": torch.cat(grads)}


def example_cosines(g_surrogate: torch.Tensor, g_target: torch.Tensor) -> torch.Tensor:
    """Per-example cosine similarity (float64) between the flattened gradients; a zero gradient gives 0."""
    return F.cosine_similarity(g_surrogate.flatten(1).double(), g_target.flatten(1).double(), dim=1, eps=1e-300)


def gradient_cosine(g_surrogate: torch.Tensor, g_target: torch.Tensor, mask=None) -> float:
    """Mean over the selected samples (all if `mask` is None) of the cosine similarity between the flattened
    per-example gradients (`example_cosines`); a zero gradient counts as cosine 0. NaN when no sample is
    selected."""
    return mean_cosine(example_cosines(g_surrogate, g_target), mask)


def mean_cosine(cosines: torch.Tensor, mask=None) -> float:
    """Mean of per-example cosines over the samples selected by `mask` (all if None); NaN if none is."""
    if mask is not None:
        cosines = cosines[torch.as_tensor(_bool(mask))]
    return _nan if len(cosines) == 0 else float(cosines.mean())


def linear_cka(x: torch.Tensor | np.ndarray, y: torch.Tensor | np.ndarray) -> float:
    """Linear CKA between feature matrices (n examples x d1) and (n x d2) (Kornblith et al., "Similarity of
    Neural Network Representations Revisited", ICML 2019):

        CKA = ||Yc^T Xc||_F^2 / (||Xc^T Xc||_F ||Yc^T Yc||_F),  Xc, Yc column-centred.

    1 for identical features; invariant to orthogonal transforms and isotropic scaling; NaN if a matrix is
    constant (zero variance)."""
    x = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x).double().flatten(1)
    y = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y).double().flatten(1)
    if len(x) != len(y):
        raise ValueError(f"CKA needs the same examples: {len(x)} vs {len(y)} rows")
    x, y = x - x.mean(0, keepdim=True), y - y.mean(0, keepdim=True)
    hsic = (y.T @ x).pow(2).sum()
    nx, ny = (x.T @ x).norm(), (y.T @ y).norm()
    if nx == 0 or ny == 0:
        return _nan
    return float(hsic / (nx * ny))
