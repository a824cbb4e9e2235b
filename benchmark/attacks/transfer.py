"""Transfer attacks: thin, registered wrappers over torchattacks 3.5.1 (untargeted, L-inf).

Each attack is one class over `TransferAttack`, named after the torchattacks class it wraps, registered with
`@register_attack(name, paper)` (the paper it implements) and setting the keyword arguments it fixes. The protocol's
budget comes from the suite (`transfer.eps`, `transfer.steps`; step size `alpha = eps / steps`); every
other argument is torchattacks' default unless the suite overrides it under `transfer.attack_params`.

Models are mergesec `ImageClassifier`s: they take inputs in [0, 1] and normalise inside, so torchattacks'
`set_normalization_used` is never called (torchattacks only sets it by itself for MAIR `RobModel`s), and
the attacks work, clip and bound the perturbation in [0, 1] pixel space. Parameters not requiring grad is
fine: only the input needs a gradient. `craft` seeds torch's global RNG before every run, so the random
attacks (DI, TI, VMI) are reproducible.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.errors import MergesecError, UnknownNameError

TORCHATTACKS_VERSION = "3.5.1"


def _import_torchattacks():
    try:
        import torchattacks
    except ImportError as e:
        raise MergesecError(
            "torchattacks is not installed; the transfer track needs exactly version "
            f"{TORCHATTACKS_VERSION}: run `pip install --no-deps torchattacks=={TORCHATTACKS_VERSION}`"
        ) from e
    if torchattacks.__version__ != TORCHATTACKS_VERSION:
        raise MergesecError(
            f"torchattacks {torchattacks.__version__} is installed but mergesec's transfer protocol is fixed "
            f"on {TORCHATTACKS_VERSION} (attack code changes change results); run "
            f"`pip install --no-deps torchattacks=={TORCHATTACKS_VERSION}`"
        )
    return torchattacks


torchattacks = _import_torchattacks()


class TransferAttack:
    """An untargeted L-inf attack crafted on a surrogate model.

    `register_attack` sets `name`, `paper` and (unless the subclass sets it) `torchattacks_class`, the
    subclass's own name. Subclasses may set `fixed` (keyword arguments the protocol fixes, e.g. PGD's
    `random_start=False`) and `iterative` (whether `alpha` and `steps` apply).
    """

    name: ClassVar[str] = ""
    torchattacks_class: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    fixed: ClassVar[dict[str, Any]] = {}
    iterative: ClassVar[bool] = True

    def __init__(self, eps: float, steps: int, **overrides: Any):
        if eps <= 0:
            raise MergesecError(f"attack {self.name}: eps must be > 0 (got {eps}); fix transfer.eps in the suite")
        if self.iterative and steps < 1:
            raise MergesecError(f"attack {self.name}: steps must be >= 1 (got {steps}); fix transfer.steps")
        self.eps, self.steps = float(eps), int(steps)
        cls = getattr(torchattacks, self.torchattacks_class)
        defaults = {k: p.default for k, p in inspect.signature(cls.__init__).parameters.items()
                    if k not in ("self", "model") and p.default is not inspect.Parameter.empty}
        unknown = set(overrides) - set(defaults)
        if unknown:
            raise MergesecError(
                f"attack {self.name}: unknown parameter(s) {sorted(unknown)} for torchattacks."
                f"{self.torchattacks_class}; valid: {sorted(defaults)} (fix transfer.attack_params in the suite)"
            )
        budget: dict[str, Any] = {"eps": self.eps}
        if self.iterative:
            budget.update(alpha=self.eps / self.steps, steps=self.steps)
        self._kwargs = {**defaults, **self.fixed, **budget, **overrides}

    def params(self) -> dict[str, Any]:
        """Every keyword argument given to the torchattacks class (JSON-able; part of the cache key)."""
        return {k: (float(v) if isinstance(v, float) else v) for k, v in sorted(self._kwargs.items())}

    def build(self, model: nn.Module):
        """The torchattacks attack object on `model` (default, untargeted mode; no normalisation)."""
        atk = getattr(torchattacks, self.torchattacks_class)(model, **self._kwargs)
        assert atk.normalization_used is None and not atk.targeted
        return atk

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int,
              batch_size: int = 256) -> torch.Tensor:
        """Adversarial versions of `x` (in [0, 1]) against `model` for true labels `y`; deterministic in `seed`."""
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise MergesecError(f"attack {self.name}: inputs must lie in [0, 1] (normalisation is inside the model)")
        model.eval()
        atk = self.build(model)
        torch.manual_seed(seed)
        out = [atk(x[i : i + batch_size], y[i : i + batch_size]).detach().cpu()
               for i in range(0, len(x), batch_size)]
        return torch.cat(out) if out else x.clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.params()})"


ATTACKS: dict[str, type[TransferAttack]] = {}


def register_attack(name: str, paper: str = "") -> Callable[[type[TransferAttack]], type[TransferAttack]]:
    """Class decorator: register a `TransferAttack` subclass under `name`, citing `paper` (if given); its
    `torchattacks_class` defaults to the subclass's own name."""

    def deco(cls: type[TransferAttack]) -> type[TransferAttack]:
        if name in ATTACKS:
            raise MergesecError(f"attack {name!r} is already registered; pick another name")
        cls.torchattacks_class = cls.torchattacks_class or cls.__name__
        if not hasattr(torchattacks, cls.torchattacks_class):
            raise MergesecError(f"attack {name!r}: torchattacks has no class {cls.torchattacks_class!r}")
        cls.name, cls.paper = name, paper or cls.paper
        ATTACKS[name] = cls
        return cls

    return deco


def get_attack(name: str) -> type[TransferAttack]:
    if name not in ATTACKS:
        raise UnknownNameError("attack", name, list(ATTACKS))
    return ATTACKS[name]


def make_attack(name: str, eps: float, steps: int, **overrides: Any) -> TransferAttack:
    """An attack instance with the suite's budget (and optional overrides of torchattacks' defaults)."""
    return get_attack(name)(eps, steps, **overrides)


def list_attacks() -> list[dict[str, str]]:
    """Rows (attack, kind, torchattacks class, paper) for `mergesec list attacks`."""
    return [{"attack": n, "kind": "transfer", "torchattacks": f"torchattacks.{c.torchattacks_class}",
             "paper": c.paper} for n, c in ATTACKS.items()]


# -- the built-in attacks ------------------------------------------------------------------------------------


@register_attack("fgsm", paper="Goodfellow et al., Explaining and Harnessing Adversarial Examples, "
                 "ICLR 2015 (arXiv 1412.6572)")
class FGSM(TransferAttack):
    """FGSM, one signed-gradient step of size eps. Goodfellow, Shlens & Szegedy, "Explaining and Harnessing
    Adversarial Examples", ICLR 2015 (arXiv 1412.6572)."""

    iterative = False


@register_attack("pgd", paper="Kurakin et al., Adversarial Examples in the Physical World, 2017 (arXiv 1607.02533); "
                 "Madry et al., ICLR 2018 (arXiv 1706.06083)")
class PGD(TransferAttack):
    """I-FGSM / PGD without random start: `steps` signed-gradient steps of size eps/steps, projected onto the
    eps-ball. Kurakin, Goodfellow & Bengio, "Adversarial Examples in the Physical World", ICLR-W 2017
    (arXiv 1607.02533); Madry et al., "Towards Deep Learning Models Resistant to Adversarial Attacks",
    ICLR 2018 (arXiv 1706.06083)."""

    fixed: ClassVar[dict[str, Any]] = {"random_start": False}


@register_attack("mifgsm", paper="Dong et al., Boosting Adversarial Attacks with Momentum, "
                 "CVPR 2018 (arXiv 1710.06081)")
class MIFGSM(TransferAttack):
    """MI-FGSM: I-FGSM with momentum (decay 1.0) on L1-normalised gradients. Dong et al., "Boosting
    Adversarial Attacks with Momentum", CVPR 2018 (arXiv 1710.06081)."""


@register_attack("difgsm", paper="Xie et al., Improving Transferability of Adversarial Examples with Input Diversity, "
                 "CVPR 2019 (arXiv 1803.06978)")
class DIFGSM(TransferAttack):
    """DI-FGSM (DI2-FGSM): random resize-and-pad of the input with probability 0.5 at every step. Xie et al.,
    "Improving Transferability of Adversarial Examples with Input Diversity", CVPR 2019 (arXiv 1803.06978)."""


@register_attack("tifgsm", paper="Dong et al., Evading Defenses to Transferable Adversarial Examples by "
                 "Translation-Invariant Attacks, CVPR 2019 (arXiv 1904.02884)")
class TIFGSM(TransferAttack):
    """TI-FGSM: gradients smoothed by a Gaussian kernel (translation invariance), with input diversity.
    Dong et al., "Evading Defenses to Transferable Adversarial Examples by Translation-Invariant Attacks",
    CVPR 2019 (arXiv 1904.02884)."""


@register_attack("vmifgsm", paper="Wang & He, Enhancing the Transferability of Adversarial Attacks through Variance "
                 "Tuning, CVPR 2021 (arXiv 2103.15571)")
class VMIFGSM(TransferAttack):
    """VMI-FGSM: MI-FGSM with variance tuning over N=5 neighbours within 1.5 eps. Wang & He, "Enhancing the
    Transferability of Adversarial Attacks through Variance Tuning", CVPR 2021 (arXiv 2103.15571)."""


@register_attack("nifgsm", paper="Lin et al., Nesterov Accelerated Gradient and Scale Invariance for Adversarial "
                 "Attacks, ICLR 2020 (arXiv 1908.06281)")
class NIFGSM(TransferAttack):
    """NI-FGSM: MI-FGSM with a Nesterov look-ahead (the protocol's alternative to VMI-FGSM). Lin et al.,
    "Nesterov Accelerated Gradient and Scale Invariance for Adversarial Attacks", ICLR 2020 (arXiv 1908.06281)."""
