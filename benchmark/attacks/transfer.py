"""Transfer attacks: thin, registered wrappers over torchattacks 3.5.1 (untargeted, L-inf), configured as the
papers and the TransferAttack benchmark (Trustworthy-AI-Group/TransferAttack) run them.

Each attack is one class over `TransferAttack`, named after the torchattacks class it wraps, registered with
`@register_attack(name, paper)` (the paper it implements) and setting the keyword arguments it fixes
(`fixed`, and `sized(image_size)` for arguments that scale with the image). The protocol's budget comes
from the suite (`transfer.eps`, `transfer.steps`; step size `alpha = eps / steps`); every other argument is
fixed here (docs/transfer.md lists them all) unless the suite overrides it under `transfer.attack_params`.

Models are mergesec `ImageClassifier`s: they take inputs in [0, 1] and normalise inside, so torchattacks'
`set_normalization_used` is never called (torchattacks only sets it by itself for MAIR `RobModel`s), and
the attacks work, clip and bound the perturbation in [0, 1] pixel space. Parameters not requiring grad is
fine: only the input needs a gradient. `craft` seeds torch's global RNG before every run, so the random
attacks (DI, VMI) are reproducible, and returns 8-bit images (`quantize`): what an attacker delivers is an
image file.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Any, ClassVar

import torch
from torch import nn

from benchmark.cache import code_digest
from benchmark.errors import MergesecError, UnknownNameError

TORCHATTACKS_VERSION = "3.5.1"
CRAFT_BATCH_SIZE = 256  # images per attack call (DI and VMI draw their randomness per batch)
LEVELS = 255  # 8-bit images: pixel values k / 255


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


def quantize(x_adv: torch.Tensor, x: torch.Tensor, eps: float) -> torch.Tensor:
    """8-bit version (uint8, values k / 255) of `x_adv`: each pixel rounded to the nearest level that lies in
    the eps-ball around the clean `x` and in [0, 1], so `quantize(...) / 255` stays within the budget.
    Needs eps >= 1 / 255 / 2 (some level lies in every such interval)."""
    xd, ad = x.detach().double().cpu(), x_adv.detach().double().cpu()
    lo = torch.ceil(LEVELS * (xd - eps).clamp(0, 1) - 1e-6)
    hi = torch.floor(LEVELS * (xd + eps).clamp(0, 1) + 1e-6)
    return torch.minimum(torch.maximum(torch.round(LEVELS * ad), lo), hi).to(torch.uint8)


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1] (the inverse of `quantize`'s encoding)."""
    return images.float() / LEVELS


def ti_kernel_length(image_size: int) -> int:
    """TI's Gaussian kernel length for `image_size` pixels: the odd integer nearest 15 * image_size / 224
    (TransferAttack's 15 on 224-pixel inputs, i.e. the same fraction of the image), at least 3."""
    return max(3, 2 * math.floor(15 * image_size / 224 / 2) + 1)


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

    def __init__(self, eps: float, steps: int, image_size: int | None = None, batch_size: int = CRAFT_BATCH_SIZE,
                 **overrides: Any):
        if eps < 1 / LEVELS / 2:
            raise MergesecError(f"attack {self.name}: eps must be >= 1/510 so that 8-bit images can carry the "
                                f"perturbation (got {eps}); fix transfer.eps in the suite")
        if batch_size < 1:
            raise MergesecError(f"attack {self.name}: batch size must be >= 1 (got {batch_size}); fix "
                                "transfer.craft_batch_size in the suite")
        if self.iterative and steps < 1:
            raise MergesecError(f"attack {self.name}: steps must be >= 1 (got {steps}); fix transfer.steps")
        self.eps, self.steps, self.batch_size = float(eps), int(steps), int(batch_size)
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
        sized = self.sized(image_size) if image_size is not None else {}
        self._kwargs = {**defaults, **self.fixed, **sized, **budget, **overrides}

    def sized(self, image_size: int) -> dict[str, Any]:
        """Arguments that depend on the image size (none by default)."""
        return {}

    def params(self) -> dict[str, Any]:
        """Every keyword argument given to the torchattacks class (JSON-able; part of the cache key)."""
        return {k: (float(v) if isinstance(v, float) else v) for k, v in sorted(self._kwargs.items())}

    def identity(self) -> dict[str, Any]:
        """Everything that changes the bytes `craft` returns, apart from model and data: name, every
        argument, the batch size, and the digests of the code that runs (this wrapper, the torchattacks class
        and its base) with the torch and torchattacks versions. Part of the adversarial sets' cache key."""
        cls = getattr(torchattacks, self.torchattacks_class)
        return {"attack": self.name, "params": self.params(), "batch_size": self.batch_size,
                "code": code_digest(type(self), TransferAttack, quantize, inspect.getmodule(cls),
                                    torchattacks.attack.Attack),
                "torch": torch.__version__, "torchattacks": torchattacks.__version__}

    def build(self, model: nn.Module):
        """The torchattacks attack object on `model` (default, untargeted mode; no normalisation)."""
        atk = getattr(torchattacks, self.torchattacks_class)(model, **self._kwargs)
        assert atk.normalization_used is None and not atk.targeted
        return atk

    def craft(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, seed: int) -> torch.Tensor:
        """8-bit adversarial versions (uint8, see `quantize`) of `x` (in [0, 1]) against `model` for true
        labels `y`, in batches of `batch_size`; deterministic in `seed`."""
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise MergesecError(f"attack {self.name}: inputs must lie in [0, 1] (normalisation is inside the model)")
        model.eval()
        atk = self.build(model)
        torch.manual_seed(seed)
        b = self.batch_size
        out = [quantize(atk(x[i : i + b], y[i : i + b]), x[i : i + b], self.eps) for i in range(0, len(x), b)]
        return torch.cat(out) if out else quantize(x, x, self.eps)

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


def make_attack(name: str, eps: float, steps: int, image_size: int | None = None,
                batch_size: int = CRAFT_BATCH_SIZE, **overrides: Any) -> TransferAttack:
    """An attack instance with the suite's budget, the image size its size-dependent arguments scale to, the
    craft batch size, and optional overrides of the protocol's arguments."""
    return get_attack(name)(eps, steps, image_size, batch_size, **overrides)


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

    fixed: ClassVar[dict[str, Any]] = {"decay": 1.0}


@register_attack("difgsm", paper="Xie et al., Improving Transferability of Adversarial Examples with Input Diversity, "
                 "CVPR 2019 (arXiv 1803.06978)")
class DIFGSM(TransferAttack):
    """M-DI2-FGSM, as TransferAttack's DIM: MI-FGSM (decay 1.0) on a randomly resized-and-padded input with
    probability 0.5 at every step. The paper resizes 299 px to [299, 330) and pads to 330 (ratio 0.906);
    torchattacks' `resize_rate=0.9` shrinks to [0.9 H, H) and pads back to H, the same ratio at the model's own
    input size. Xie et al., "Improving Transferability of Adversarial Examples with Input Diversity", CVPR 2019
    (arXiv 1803.06978)."""

    fixed: ClassVar[dict[str, Any]] = {"decay": 1.0, "resize_rate": 0.9, "diversity_prob": 0.5}


@register_attack("tifgsm", paper="Dong et al., Evading Defenses to Transferable Adversarial Examples by "
                 "Translation-Invariant Attacks, CVPR 2019 (arXiv 1904.02884)")
class TIFGSM(TransferAttack):
    """TI-MI-FGSM, as TransferAttack's TIM: MI-FGSM (decay 1.0) on gradients smoothed by a Gaussian kernel
    (nsig 3) whose length scales with the image (`ti_kernel_length`: 15 at 224 px); no input diversity
    (`diversity_prob=0`; torchattacks' default mixes DI in). Dong et al., "Evading Defenses to Transferable
    Adversarial Examples by Translation-Invariant Attacks", CVPR 2019 (arXiv 1904.02884)."""

    fixed: ClassVar[dict[str, Any]] = {"decay": 1.0, "kernel_name": "gaussian", "nsig": 3, "diversity_prob": 0.0}

    def sized(self, image_size: int) -> dict[str, Any]:
        return {"len_kernel": ti_kernel_length(image_size)}


@register_attack("vmifgsm", paper="Wang & He, Enhancing the Transferability of Adversarial Attacks through Variance "
                 "Tuning, CVPR 2021 (arXiv 2103.15571)")
class VMIFGSM(TransferAttack):
    """VMI-FGSM: MI-FGSM (decay 1.0) with variance tuning over N=20 neighbours drawn within beta = 1.5 eps, the
    paper's and TransferAttack's setting (torchattacks' default is N=5). Wang & He, "Enhancing the
    Transferability of Adversarial Attacks through Variance Tuning", CVPR 2021 (arXiv 2103.15571)."""

    fixed: ClassVar[dict[str, Any]] = {"decay": 1.0, "N": 20, "beta": 1.5}


@register_attack("nifgsm", paper="Lin et al., Nesterov Accelerated Gradient and Scale Invariance for Adversarial "
                 "Attacks, ICLR 2020 (arXiv 1908.06281)")
class NIFGSM(TransferAttack):
    """NI-FGSM: MI-FGSM with a Nesterov look-ahead (the protocol's alternative to VMI-FGSM). Lin et al.,
    "Nesterov Accelerated Gradient and Scale Invariance for Adversarial Attacks", ICLR 2020 (arXiv 1908.06281)."""
