"""`Adam` (and, with `decoupled_weight_decay`, AdamW): adaptive moment estimation.

Per parameter p with gradient g, at step t (PyTorch's order of operations, so results agree):

    g = -g if maximize
    p = p * (1 - lr * weight_decay)          if decoupled_weight_decay   (AdamW)
    g = g + weight_decay * p                 otherwise                   (L2, as Adam)
    m = m + (1 - beta1) * (g - m)            (state['exp_avg'])
    v = beta2 * v + (1 - beta2) * g * g      (state['exp_avg_sq'])
    v_hat = max(v_hat, v) if amsgrad else v  (state['max_exp_avg_sq'])
    p = p - lr / (1 - beta1**t) * m / (sqrt(v_hat) / sqrt(1 - beta2**t) + eps)

state['step'] is a 0-d float32 tensor counting the steps taken, as in PyTorch.
"""
from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .. import dtypes
from ..factories import tensor, zeros_like
from ..ops import maximum
from ..tensor import Tensor
from .optimizer import Optimizer


class Adam(Optimizer):
    def __init__(self, params: Iterable[Tensor] | Iterable[dict[str, Any]], lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0,
                 amsgrad: bool = False, *, maximize: bool = False, decoupled_weight_decay: bool = False) -> None:
        if not 0.0 <= lr:
            raise ValueError(f"Invalid learning rate: {lr}")
        if not 0.0 <= eps:
            raise ValueError(f"Invalid epsilon value: {eps}")
        for i, beta in enumerate(betas):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"Invalid beta parameter at index {i}: {beta}")
        if not 0.0 <= weight_decay:
            raise ValueError(f"Invalid weight_decay value: {weight_decay}")
        defaults = {"lr": lr, "betas": tuple(betas), "eps": eps, "weight_decay": weight_decay,
                    "amsgrad": amsgrad, "maximize": maximize, "decoupled_weight_decay": decoupled_weight_decay}
        super().__init__(params, defaults)

    def _update(self, p: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["step"] = tensor(0.0, dtype=dtypes.float32)
            state["exp_avg"] = zeros_like(p)
            state["exp_avg_sq"] = zeros_like(p)
            if group["amsgrad"]:
                state["max_exp_avg_sq"] = zeros_like(p)
        lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
        grad = -p.grad if group["maximize"] else p.grad
        state["step"].add_(1)
        if weight_decay != 0:
            if group["decoupled_weight_decay"]:
                p.mul_(1 - lr * weight_decay)
            else:
                grad = grad.add(p, alpha=weight_decay)
        exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]
        exp_avg.lerp_(grad, 1 - beta1)
        exp_avg_sq.mul_(beta2).add_(grad * grad, alpha=1 - beta2)
        if group["amsgrad"]:
            second = state["max_exp_avg_sq"].copy_(maximum(state["max_exp_avg_sq"], exp_avg_sq))
        else:
            second = exp_avg_sq
        step = state["step"].item()
        step_size = lr / (1 - beta1 ** step)
        denom = (second.sqrt() / (1 - beta2 ** step) ** 0.5).add_(group["eps"])
        p.add_(exp_avg / denom, alpha=-step_size)
