"""Optimizers with in-place updates, L2 weight decay, global-norm clipping and schedules.

Every optimizer takes the gradient dict of ``loss_and_grad`` (which it never writes:
gradients may share memory) and updates the parameter arrays in place. Its state (moment
estimates, step count) round-trips through ``state_dict`` / ``load_state_dict`` so a
checkpoint resumes bit for bit. Defaults and accepted keys come from
``compiler.vocab.OPTIMIZERS`` — the same table the spec checker uses.
"""

from __future__ import annotations

import math

import numpy as np

from compiler.vocab import OPTIMIZERS, SCHEDULES, optimizer_defaults

from .errors import UserError


def learning_rate(cfg: dict, epoch: float, total_epochs: float) -> float:
    """The scheduled learning rate at a (fractional) epoch."""
    lr, kind = float(cfg["lr"]), cfg.get("schedule", "constant")
    gamma = float(cfg.get("gamma", 0.1))
    if kind == "constant":
        return lr
    if kind == "step":
        return lr * gamma ** math.floor(epoch / max(int(cfg.get("step", 10)), 1))
    if kind == "exponential":
        return lr * gamma ** epoch
    if kind == "cosine":
        low = float(cfg.get("min_lr", 0.0))
        t = min(epoch / max(total_epochs, 1e-12), 1.0)
        return low + 0.5 * (lr - low) * (1 + math.cos(math.pi * t))
    raise UserError(f"unknown schedule '{kind}'", "schedules: " + ", ".join(sorted(SCHEDULES)))


class Optimizer:
    """Base: weight decay and clipping, then ``_apply`` (in place) per parameter."""

    name = "sgd"
    slots: tuple[str, ...] = ()

    def __init__(self, params: dict[str, np.ndarray], **settings):
        unknown = set(settings) - set(optimizer_defaults(self.name))
        if unknown:
            raise UserError(f"optimizer '{self.name}' has no setting "
                            + ", ".join(f"'{u}'" for u in sorted(unknown)),
                            f"'{self.name}' takes: " + ", ".join(optimizer_defaults(self.name)))
        self.cfg = {**optimizer_defaults(self.name), **settings}
        self.lr = float(self.cfg["lr"])
        self.t = 0
        self.state = {slot: {k: np.zeros_like(v) for k, v in params.items()}
                      for slot in self.slots}
        self._scratch: dict[str, np.ndarray] = {}  # reused every step, not checkpointed

    def scaled(self, name: str, g: np.ndarray, factor: float) -> np.ndarray:
        """``factor * g`` in a buffer kept for ``name``: no allocation per step."""
        buf = self._scratch.get(name)
        if buf is None or buf.shape != np.shape(g) or buf.dtype != np.result_type(g, factor):
            buf = self._scratch[name] = np.empty(np.shape(g), np.result_type(g, factor))
        return np.multiply(g, factor, out=buf)

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray],
             lr: float | None = None) -> None:
        lr = self.lr if lr is None else lr
        self.t += 1
        scale = 1.0
        clip = float(self.cfg.get("clip") or 0.0)
        if clip > 0:
            norm = math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))
            if norm > clip:
                scale = clip / norm
        wd = float(self.cfg.get("weight_decay") or 0.0)
        for name, p in params.items():
            g = grads[name]
            if scale != 1.0:
                g = g * scale
            if wd:
                g = g + wd * p
            self._apply(name, p, g, lr)

    def _apply(self, name: str, p: np.ndarray, g: np.ndarray, lr: float) -> None:
        p -= self.scaled(name, g, lr)

    # state for checkpoints -------------------------------------------------------------
    def state_dict(self) -> dict[str, np.ndarray]:
        out = {"t": np.array(self.t)}
        for slot, arrays in self.state.items():
            for k, v in arrays.items():
                out[f"{slot}/{k}"] = v
        return out

    def load_state_dict(self, state: dict[str, np.ndarray]) -> None:
        self.t = int(state["t"])
        for slot, arrays in self.state.items():
            for k in arrays:
                arrays[k][...] = state[f"{slot}/{k}"]


class SGD(Optimizer):
    name = "sgd"


class Momentum(Optimizer):
    """v = momentum v - lr g;  p += v."""

    name = "momentum"
    slots = ("v",)

    def _apply(self, name, p, g, lr):
        v = self.state["v"][name]
        v *= float(self.cfg["momentum"])
        v -= self.scaled(name, g, lr)
        p += v


class Nesterov(Optimizer):
    """Nesterov momentum in the usual reformulation: p += momentum² v - (1 + momentum) lr g."""

    name = "nesterov"
    slots = ("v",)

    def _apply(self, name, p, g, lr):
        mu = float(self.cfg["momentum"])
        v = self.state["v"][name]
        v *= mu
        v -= lr * g
        p += mu * v - lr * g


class AdaGrad(Optimizer):
    """h += g²;  p -= lr g / (sqrt(h) + eps)."""

    name = "adagrad"
    slots = ("h",)

    def _apply(self, name, p, g, lr):
        h = self.state["h"][name]
        h += g * g
        p -= lr * g / (np.sqrt(h) + float(self.cfg["eps"]))


class RMSprop(Optimizer):
    """h = rho h + (1 - rho) g²;  p -= lr g / (sqrt(h) + eps)."""

    name = "rmsprop"
    slots = ("h",)

    def _apply(self, name, p, g, lr):
        rho = float(self.cfg["rho"])
        h = self.state["h"][name]
        h *= rho
        h += (1 - rho) * g * g
        p -= lr * g / (np.sqrt(h) + float(self.cfg["eps"]))


class Adam(Optimizer):
    """Adam with bias correction (Kingma & Ba, 2015)."""

    name = "adam"
    slots = ("m", "v")

    def _apply(self, name, p, g, lr):
        b1, b2 = float(self.cfg["beta1"]), float(self.cfg["beta2"])
        m, v = self.state["m"][name], self.state["v"][name]
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += (1 - b2) * g * g
        m_hat = m / (1 - b1 ** self.t)
        v_hat = v / (1 - b2 ** self.t)
        p -= lr * m_hat / (np.sqrt(v_hat) + float(self.cfg["eps"]))


OPTIMIZER_CLASSES = {cls.name: cls for cls in (SGD, Momentum, Nesterov, AdaGrad, RMSprop, Adam)}
assert set(OPTIMIZER_CLASSES) == set(OPTIMIZERS), "optimizer table and classes disagree"


def make_optimizer(name: str, params: dict[str, np.ndarray], **settings) -> Optimizer:
    if name not in OPTIMIZER_CLASSES:
        raise UserError(f"unknown optimizer '{name}'",
                        "optimizers: " + ", ".join(sorted(OPTIMIZER_CLASSES)))
    return OPTIMIZER_CLASSES[name](params, **settings)
