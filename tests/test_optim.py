"""Optimizers and lr schedulers against PyTorch: same weights, same problem, same trajectory."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import assert_close

import gradc
from gradc import optim


def _problem(dtype=np.float32):
    """Initial weights and data of a small least-squares problem (shared by both libraries)."""
    rng = np.random.default_rng(1)
    return {"w": rng.standard_normal((3, 4)).astype(dtype), "b": rng.standard_normal(3).astype(dtype),
            "x": rng.standard_normal((8, 4)).astype(dtype), "y": rng.standard_normal((8, 3)).astype(dtype)}


def _loss(lib, params, data):
    w, b = params
    x, y = lib.tensor(data["x"]), lib.tensor(data["y"])
    return ((x @ w.T + b - y) ** 2).mean()


def _make(lib, data, cls_name, groups, kwargs):
    """Parameters and an optimizer of `lib`; `groups`: None (one group) or per-group overrides."""
    params = [lib.tensor(data["w"], requires_grad=True), lib.tensor(data["b"], requires_grad=True)]
    cls = getattr(lib.optim, cls_name)
    spec = params if groups is None else [dict(g, params=[p]) for g, p in zip(groups, params)]
    return params, cls(spec, **kwargs)


def _train(lib, params, opt, data, steps):
    for _ in range(steps):
        opt.zero_grad()
        _loss(lib, params, data).backward()
        opt.step()


CASES = [
    ("SGD", {"lr": 0.1}),
    ("SGD", {"lr": 0.1, "momentum": 0.9}),
    ("SGD", {"lr": 0.05, "momentum": 0.8, "dampening": 0.3}),
    ("SGD", {"lr": 0.05, "momentum": 0.9, "nesterov": True}),
    ("SGD", {"lr": 0.1, "momentum": 0.5, "weight_decay": 0.1}),
    ("SGD", {"lr": 0.01, "momentum": 0.9, "maximize": True}),
    ("Adam", {}),
    ("Adam", {"lr": 0.05, "betas": (0.8, 0.99), "eps": 1e-6}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1}),
    ("Adam", {"lr": 0.05, "amsgrad": True}),
    ("Adam", {"lr": 0.02, "maximize": True}),
    ("Adam", {"lr": 0.05, "weight_decay": 0.1, "decoupled_weight_decay": True}),
    ("AdamW", {"lr": 0.05}),
    ("AdamW", {"lr": 0.05, "weight_decay": 0.3, "amsgrad": True}),
]


def _ids(case):
    return case[0] + "-" + "-".join(f"{k}={v}" for k, v in case[1].items())


@pytest.mark.parametrize("case", CASES, ids=[_ids(c) for c in CASES])
def test_trajectory_matches_torch(torch, case):
    name, kwargs = case
    data = _problem()
    gp, gopt = _make(gradc, data, name, None, kwargs)
    tp, topt = _make(torch, data, name, None, kwargs)
    for _ in range(8):
        _train(gradc, gp, gopt, data, 1)
        _train(torch, tp, topt, data, 1)
        for g, t in zip(gp, tp):
            assert_close(g, t, rtol=1e-5, atol=1e-6)
    for g, t in zip(gp, tp):
        gstate, tstate = gopt.state[g], topt.state[t]
        assert sorted(gstate) == sorted(tstate)
        for key in tstate:
            assert_close(gstate[key], tstate[key], rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True,
                                                  "weight_decay": 0.01}),
                                         ("Adam", {"lr": 0.05, "amsgrad": True, "weight_decay": 0.01})])
def test_float64_trajectory_is_tight(torch, name, kwargs):
    data = _problem(np.float64)
    gp, gopt = _make(gradc, data, name, None, kwargs)
    tp, topt = _make(torch, data, name, None, kwargs)
    _train(gradc, gp, gopt, data, 10)
    _train(torch, tp, topt, data, 10)
    for g, t in zip(gp, tp):
        assert_close(g, t, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", ["SGD", "Adam", "AdamW"])
def test_param_groups_with_own_hyperparameters(torch, name):
    data = _problem()
    groups = [{"lr": 0.2, "weight_decay": 0.1}, {"lr": 0.01}]
    extra = {"momentum": 0.9} if name == "SGD" else {"amsgrad": True}
    gp, gopt = _make(gradc, data, name, groups, dict(lr=0.05, **extra))
    tp, topt = _make(torch, data, name, groups, dict(lr=0.05, **extra))
    _train(gradc, gp, gopt, data, 6)
    _train(torch, tp, topt, data, 6)
    for g, t in zip(gp, tp):
        assert_close(g, t, rtol=1e-5, atol=1e-6)
    assert [g["lr"] for g in gopt.param_groups] == [0.2, 0.01]
    assert [g["weight_decay"] for g in gopt.param_groups] == [g["weight_decay"] for g in topt.param_groups]


def test_defaults_match_torch(torch):
    p = [gradc.zeros(2, requires_grad=True)]
    tp = [torch.zeros(2, requires_grad=True)]
    for name in ("SGD", "Adam", "AdamW"):
        ours = getattr(optim, name)(p).param_groups[0]
        theirs = getattr(torch.optim, name)(tp).param_groups[0]
        for key, value in ours.items():
            if key != "params":
                assert theirs[key] == value, (name, key)


def test_params_without_grad_are_skipped(torch):
    a, b = gradc.ones(3, requires_grad=True), gradc.ones(3, requires_grad=True)
    opt = optim.Adam([a, b], lr=0.1)
    (a * 2).sum().backward()
    opt.step()
    assert_close(b, gradc.ones(3))
    assert b not in opt.state and len(opt.state) == 1
    assert_close(a, gradc.full((3,), 0.9))


def test_closure_is_called_with_grad_enabled_and_its_loss_returned():
    p = gradc.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.SGD([p], lr=0.5)

    def closure():
        opt.zero_grad()
        loss = (p * p).sum()
        assert gradc.is_grad_enabled()
        loss.backward()
        return loss

    with gradc.no_grad():
        loss = opt.step(closure)
    assert loss.item() == 5.0
    assert_close(p, gradc.tensor([0.0, 0.0]))


def test_step_records_no_history_and_bumps_versions():
    p = gradc.ones(3, requires_grad=True)
    p.grad = gradc.ones(3)
    version = p._version
    optim.SGD([p], lr=0.1, momentum=0.9).step()
    assert p.grad_fn is None and p.is_leaf and p.requires_grad
    assert p._version > version


def test_update_writes_into_the_parameter_storage():
    p = gradc.ones(4, requires_grad=True)
    view = p.detach()[1:]
    p.grad = gradc.ones(4)
    optim.SGD([p], lr=0.5).step()
    assert_close(view, gradc.full((3,), 0.5))


def test_zero_grad_set_to_none_and_zero(torch):
    p = gradc.ones(3, requires_grad=True)
    opt = optim.SGD([p])
    (p * 3).sum().backward()
    grad = p.grad
    opt.zero_grad(set_to_none=False)
    assert p.grad is grad
    assert_close(p.grad, gradc.zeros(3))
    (p * 3).sum().backward()
    assert_close(p.grad, gradc.full((3,), 3.0))
    opt.zero_grad()
    assert p.grad is None
    opt.zero_grad(set_to_none=False)  # no gradient: nothing to zero
    assert p.grad is None


def test_zero_grad_detaches_a_grad_with_history():
    p = gradc.ones(2, requires_grad=True)
    q = gradc.ones(2, requires_grad=True)
    p.grad = q * 2
    optim.SGD([p]).zero_grad(set_to_none=False)
    assert p.grad.grad_fn is None and not p.grad.requires_grad
    assert_close(p.grad, gradc.zeros(2))


# ---------------------------------------------------------------- state_dict
def _state_dict_layout(sd, lib):
    """The state_dict with tensors replaced by their numpy values (comparable across libraries)."""
    def conv(v):
        if isinstance(v, (gradc.Tensor, lib.Tensor)):
            return v.detach().numpy().tolist()
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        return v
    return conv(sd)


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9}),
                                         ("Adam", {"lr": 0.05, "amsgrad": True})])
def test_state_dict_layout_matches_torch(torch, name, kwargs):
    data = _problem()
    groups = [{"lr": 0.2}, {}]
    gp, gopt = _make(gradc, data, name, groups, kwargs)
    tp, topt = _make(torch, data, name, groups, kwargs)
    _train(gradc, gp, gopt, data, 3)
    _train(torch, tp, topt, data, 3)
    ours, theirs = gopt.state_dict(), topt.state_dict()
    assert list(ours) == ["state", "param_groups"]
    assert sorted(ours["state"]) == sorted(theirs["state"]) == [0, 1]
    for i in (0, 1):
        assert sorted(ours["state"][i]) == sorted(theirs["state"][i])
        for key, value in theirs["state"][i].items():
            assert_close(ours["state"][i][key], value, rtol=1e-5, atol=1e-7)
    for og, tg in zip(ours["param_groups"], theirs["param_groups"]):
        assert og["params"] == tg["params"]
        assert {k: v for k, v in og.items()} == {k: tg[k] for k in og}


def test_state_dict_refers_to_params_by_position_across_groups():
    a, b, c = (gradc.zeros(1, requires_grad=True) for _ in range(3))
    opt = optim.SGD([{"params": [a, b]}, {"params": [c], "lr": 1.0}], lr=0.1, momentum=0.9)
    for p in (a, c):
        p.grad = gradc.ones(1)
    opt.step()
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0, 1], [2]]
    assert sorted(sd["state"]) == [0, 2]


@pytest.mark.parametrize("name,kwargs", [("SGD", {"lr": 0.1, "momentum": 0.9, "nesterov": True}),
                                         ("Adam", {"lr": 0.05, "amsgrad": True}),
                                         ("AdamW", {"lr": 0.05, "weight_decay": 0.2})])
def test_load_state_dict_continues_identically(name, kwargs):
    data = _problem()
    groups = [{"lr": 0.03}, {}]
    p1, opt1 = _make(gradc, data, name, groups, kwargs)
    _train(gradc, p1, opt1, data, 4)
    # a fresh optimizer with other hyperparameters, over fresh tensors holding the same values
    p2 = [p.detach().clone().requires_grad_() for p in p1]
    opt2 = getattr(optim, name)([{"params": [p2[0]]}, {"params": [p2[1]], "lr": 9.0}], lr=1.0)
    opt2.load_state_dict(opt1.state_dict())
    assert [g["lr"] for g in opt2.param_groups] == [0.03, kwargs["lr"]]
    assert opt2.param_groups[0]["params"][0] is p2[0]
    _train(gradc, p1, opt1, data, 4)
    _train(gradc, p2, opt2, data, 4)
    for a, b in zip(p1, p2):
        assert np.array_equal(a.detach().numpy(), b.detach().numpy())


def test_loaded_state_is_copied_and_cast_to_the_parameter():
    p = gradc.zeros(2, requires_grad=True)
    p.grad = gradc.ones(2)
    opt = optim.Adam([p])
    opt.step()
    sd = opt.state_dict()
    q = gradc.zeros(2, dtype=gradc.float64, requires_grad=True)
    opt2 = optim.Adam([q])
    opt2.load_state_dict(sd)
    state = opt2.state[q]
    assert state["exp_avg"].dtype is gradc.float64
    assert state["step"].dtype is gradc.float32  # the step counter keeps its dtype
    assert state["step"] is not sd["state"][0]["step"]
    q.grad = gradc.ones(2, dtype=gradc.float64)
    opt2.step()
    assert sd["state"][0]["step"].item() == 1.0 and state["step"].item() == 2.0


def test_load_state_dict_errors(torch):
    a, b = gradc.zeros(1, requires_grad=True), gradc.zeros(1, requires_grad=True)
    sd = optim.SGD([a, b]).state_dict()
    with pytest.raises(ValueError, match="different number of parameter groups"):
        optim.SGD([{"params": [a]}, {"params": [b]}]).load_state_dict(sd)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        optim.SGD([a]).load_state_dict(sd)
    ta, tb = torch.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="doesn't match the size of optimizer's group"):
        torch.optim.SGD([ta]).load_state_dict(torch.optim.SGD([ta, tb]).state_dict())


def test_scheduler_lr_change_survives_state_dict():
    p = gradc.zeros(1, requires_grad=True)
    opt = optim.SGD([p], lr=1.0)
    sched = optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    sched.step()
    sd = opt.state_dict()
    opt2 = optim.SGD([gradc.zeros(1, requires_grad=True)], lr=1.0)
    opt2.load_state_dict(sd)
    assert opt2.param_groups[0]["lr"] == 0.5 and opt2.param_groups[0]["initial_lr"] == 1.0


# ---------------------------------------------------------------- construction errors
@pytest.mark.parametrize("name,kwargs,message", [
    ("SGD", {"lr": -0.1}, "Invalid learning rate: -0.1"),
    ("SGD", {"momentum": -1}, "Invalid momentum value: -1"),
    ("SGD", {"weight_decay": -1}, "Invalid weight_decay value: -1"),
    ("SGD", {"nesterov": True}, "Nesterov momentum requires a momentum and zero dampening"),
    ("SGD", {"nesterov": True, "momentum": 0.9, "dampening": 0.1},
     "Nesterov momentum requires a momentum and zero dampening"),
    ("Adam", {"lr": -1.0}, "Invalid learning rate: -1.0"),
    ("Adam", {"eps": -1.0}, "Invalid epsilon value: -1.0"),
    ("Adam", {"betas": (1.0, 0.9)}, "Invalid beta parameter at index 0: 1.0"),
    ("Adam", {"betas": (0.9, -0.5)}, "Invalid beta parameter at index 1: -0.5"),
    ("AdamW", {"weight_decay": -0.5}, "Invalid weight_decay value: -0.5"),
])
def test_invalid_hyperparameters_raise_as_torch(torch, name, kwargs, message):
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(")):
        getattr(torch.optim, name)([torch.zeros(1, requires_grad=True)], **kwargs)
    with pytest.raises(ValueError, match=f"^{message}$".replace("(", r"\(")):
        getattr(optim, name)([gradc.zeros(1, requires_grad=True)], **kwargs)


def test_param_errors():
    p = gradc.zeros(2, requires_grad=True)
    with pytest.raises(TypeError, match="iterable of Tensors or dicts"):
        optim.SGD(p)
    with pytest.raises(ValueError, match="empty parameter list"):
        optim.SGD([])
    with pytest.raises(TypeError, match="can only optimize Tensors"):
        optim.SGD([p, 3.0])
    with pytest.raises(ValueError, match="can't optimize a non-leaf Tensor"):
        optim.SGD([p * 2])
    with pytest.raises(TypeError, match="ordered collections"):
        optim.SGD([{"params": {p}}])
    opt = optim.SGD([p])
    with pytest.raises(ValueError, match="more than one parameter group"):
        opt.add_param_group({"params": p})
    with pytest.warns(UserWarning, match="duplicate parameters"):
        optim.SGD([p, p])


def test_add_param_group_fills_defaults():
    a, b = gradc.zeros(1, requires_grad=True), gradc.zeros(1, requires_grad=True)
    opt = optim.SGD([a], lr=0.1, momentum=0.9)
    opt.add_param_group({"params": b, "lr": 0.5})
    assert opt.param_groups[1]["params"][0] is b
    assert opt.param_groups[1]["lr"] == 0.5 and opt.param_groups[1]["momentum"] == 0.9


def test_required_hyperparameter():
    class Plain(optim.Optimizer):
        def __init__(self, params, lr=optim.optimizer.required):
            super().__init__(params, {"lr": lr})

    p = gradc.zeros(1, requires_grad=True)
    with pytest.raises(ValueError, match="required optimization parameter lr"):
        Plain([p])
    assert Plain([{"params": [p], "lr": 0.3}]).param_groups[0]["lr"] == 0.3


def test_named_parameters_are_recorded(torch):
    a, b = gradc.zeros(1, requires_grad=True), gradc.zeros(1, requires_grad=True)
    opt = optim.SGD([("w", a), ("b", b)])
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.param_groups[0]["params"][0] is a
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    with pytest.raises(ValueError, match="Some param names are missing"):
        optim.SGD([("w", a), b])


def test_repr_lists_groups_like_torch(torch):
    ours = repr(optim.SGD([gradc.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9))
    theirs = repr(torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1, momentum=0.9))
    assert ours.splitlines()[:2] == theirs.splitlines()[:2] == ["SGD (", "Parameter Group 0"]
    our_lines = set(ours.splitlines())
    assert our_lines <= set(theirs.splitlines())
    assert "    momentum: 0.9" in our_lines and ours.endswith("\n)")


# ---------------------------------------------------------------- schedulers
def _lrs_over_epochs(lib, make_sched, epochs, lrs=(0.1, 0.03)):
    params = [lib.zeros(1, requires_grad=True) for _ in lrs]
    opt = lib.optim.SGD([{"params": [p], "lr": lr} for p, lr in zip(params, lrs)])
    sched = make_sched(lib, opt)
    history = [sched.get_last_lr()]
    for _ in range(epochs):
        opt.step()
        sched.step()
        history.append(sched.get_last_lr())
        assert history[-1] == [g["lr"] for g in opt.param_groups]
    return history


SCHEDULERS = {
    "step": lambda lib, opt: lib.optim.lr_scheduler.StepLR(opt, step_size=4),
    "step_gamma": lambda lib, opt: lib.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.7),
    "cosine": lambda lib, opt: lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=10),
    "cosine_eta_min": lambda lib, opt: lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=7, eta_min=0.001),
    "lambda": lambda lib, opt: lib.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.95 ** e),
    "lambda_list": lambda lib, opt: lib.optim.lr_scheduler.LambdaLR(opt, [lambda e: 1 / (e + 1),
                                                                         lambda e: e % 3]),
}


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_scheduler_matches_torch(torch, name):
    ours = _lrs_over_epochs(gradc, SCHEDULERS[name], 35)
    theirs = _lrs_over_epochs(torch, SCHEDULERS[name], 35)
    np.testing.assert_allclose(ours, theirs, rtol=1e-13, atol=1e-16)


def test_cosine_follows_the_closed_form():
    history = _lrs_over_epochs(gradc, SCHEDULERS["cosine_eta_min"], 30, lrs=(0.1,))
    expected = [0.001 + (0.1 - 0.001) * (1 + math.cos(math.pi * t / 7)) / 2 for t in range(31)]
    np.testing.assert_allclose([h[0] for h in history], expected, rtol=1e-9)


def test_scheduler_sets_initial_lr_and_resumes(torch):
    p = gradc.zeros(1, requires_grad=True)
    opt = optim.SGD([p], lr=0.5)
    sched = optim.lr_scheduler.StepLR(opt, step_size=2)
    assert opt.param_groups[0]["initial_lr"] == 0.5 and sched.base_lrs == [0.5]
    assert sched.last_epoch == 0 and sched.get_last_lr() == [0.5]
    for _ in range(5):
        sched.step()
    sd = sched.state_dict()
    assert "optimizer" not in sd and sd["last_epoch"] == 5
    opt2 = optim.SGD([gradc.zeros(1, requires_grad=True)], lr=0.5)
    sched2 = optim.lr_scheduler.StepLR(opt2, step_size=99)
    sched2.load_state_dict(sd)
    assert sched2.step_size == 2 and sched2.last_epoch == 5
    with pytest.raises(KeyError, match="initial_lr"):
        optim.lr_scheduler.StepLR(optim.SGD([gradc.zeros(1, requires_grad=True)]), 2, last_epoch=3)
    with pytest.raises(TypeError, match="is not an Optimizer"):
        optim.lr_scheduler.StepLR(object(), 2)


def test_scheduler_state_dict_keys_match_torch(torch):
    p, tp = gradc.zeros(1, requires_grad=True), torch.zeros(1, requires_grad=True)
    ours = optim.lr_scheduler.CosineAnnealingLR(optim.SGD([p], lr=0.1), T_max=5).state_dict()
    theirs = torch.optim.lr_scheduler.CosineAnnealingLR(torch.optim.SGD([tp], lr=0.1), T_max=5).state_dict()
    assert set(ours) <= set(theirs)
    assert {k: theirs[k] for k in ours} == ours


def test_resumed_cosine_matches_torch(torch):
    def run(lib, split):
        p = lib.zeros(1, requires_grad=True)
        opt = lib.optim.SGD([p], lr=0.1)
        sched = lib.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=6)
        for _ in range(split):
            opt.step()
            sched.step()
        opt2 = lib.optim.SGD([lib.zeros(1, requires_grad=True)], lr=0.1)
        opt2.load_state_dict(opt.state_dict())
        sched2 = lib.optim.lr_scheduler.CosineAnnealingLR(opt2, T_max=6, last_epoch=split)
        lrs = []
        for _ in range(10):
            opt2.step()
            sched2.step()
            lrs.append(sched2.get_last_lr()[0])
        return lrs

    np.testing.assert_allclose(run(gradc, 4), run(torch, 4), rtol=1e-13)


def test_lambda_lr_state_dict_keeps_callable_objects_only():
    class Warmup:
        def __init__(self, n):
            self.n = n

        def __call__(self, epoch):
            return min(1.0, (epoch + 1) / self.n)

    opt = optim.SGD([{"params": [gradc.zeros(1, requires_grad=True)]},
                     {"params": [gradc.zeros(1, requires_grad=True)]}], lr=1.0)
    sched = optim.lr_scheduler.LambdaLR(opt, [Warmup(4), lambda e: 1.0])
    sd = sched.state_dict()
    assert sd["lr_lambdas"] == [{"n": 4}, None]
    assert sched.get_last_lr() == [0.25, 1.0]
    other = Warmup(10)
    sched2 = optim.lr_scheduler.LambdaLR(opt, [other, lambda e: 1.0])
    sched2.load_state_dict(sd)
    assert other.n == 4 and "lr_lambdas" in sd
    with pytest.raises(ValueError, match="Expected 2 lr_lambdas, but got 1"):
        optim.lr_scheduler.LambdaLR(opt, [lambda e: 1.0])
