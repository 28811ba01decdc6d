"""gradc.nn.Parameter and gradc.nn.Module, checked against torch running the same scenario."""
from __future__ import annotations

import copy
import pickle
import warnings
import zlib
from collections import OrderedDict

import numpy as np
import pytest
from helpers import assert_close
from module_twins import as_gradc, twins
from op_db import OP_DB

import gradc
import gradc.nn as gnn
from gradc.nn.modules import module as gmodule


@pytest.fixture
def G():
    return twins(gnn, gradc)


@pytest.fixture
def T(torch):
    return twins(torch.nn, torch)


def gradc_text(text: str) -> str:
    """torch's wording with gradc's names (messages and reprs mention the library)."""
    return text.replace("torch", "gradc")


def names(pairs) -> list[str]:
    return [n for n, _ in pairs]


# ----------------------------------------------------------------- Parameter
def test_parameter_shares_memory_and_is_a_leaf_tensor():
    data = gradc.arange(6.0).reshape(2, 3)
    p = gnn.Parameter(data)
    assert isinstance(p, gradc.Tensor) and isinstance(p, gnn.Parameter)
    assert p.is_leaf and p.requires_grad and p.grad_fn is None
    assert not data.requires_grad
    data[0, 0] = 7.0
    assert p[0, 0].item() == 7.0
    assert not gnn.Parameter(data, requires_grad=False).requires_grad


def test_parameter_from_a_view_keeps_its_geometry(torch):
    p = gnn.Parameter(gradc.arange(6.0).reshape(2, 3)[:, 1:])
    tp = torch.nn.Parameter(torch.arange(6.0).reshape(2, 3)[:, 1:])
    assert_close(p.detach(), tp.detach())
    assert p.stride() == tp.stride()


def test_parameter_ops_return_plain_tensors_and_backprop(torch):
    p, tp = gnn.Parameter(gradc.tensor([[1.0, 2.0], [3.0, 4.0]])), torch.nn.Parameter(
        torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
    results = [p * 2, p.T, p[0], p.detach(), p.data, p.clone(), p.to(gradc.float64), p.sum(), -p, p @ p]
    assert all(type(r) is gradc.Tensor for r in results)
    assert p.to(gradc.float32) is p and tp.to(torch.float32) is tp
    (p.T @ p).sum().backward()
    (tp.T @ tp).sum().backward()
    assert type(p.grad) is gradc.Tensor
    assert_close(p.grad, tp.grad)


def test_parameter_behaves_as_a_tensor_in_every_op():
    """Every differentiable op sample of the op table: Parameters as inputs give the values and
    gradients that plain leaf tensors give, and the results are plain Tensors (an op that
    returns its input unchanged returns that same object, as torch does)."""
    checked = 0
    for entry in OP_DB:
        if not entry.differentiable or "float32" not in entry.dtypes:
            continue
        args = entry.make(np.random.default_rng(zlib.crc32(entry.name.encode())), np.dtype("float32"))
        runs = []
        for wrap in (lambda t: t.requires_grad_(True), gnn.Parameter):
            inputs = [wrap(gradc.tensor(a)) if isinstance(a, np.ndarray) and a.dtype.kind == "f"
                      else gradc.tensor(a) if isinstance(a, np.ndarray) else a for a in args]
            outs = entry.gradc_call(gradc, *inputs)
            outs = list(outs) if isinstance(outs, (tuple, list)) else [outs]
            leaves = [t for t in inputs if isinstance(t, gradc.Tensor) and t.requires_grad]
            floats = [o for o in outs if o.dtype.is_floating_point and o.requires_grad]
            if floats:
                sum(o.sum() for o in floats).backward()
            runs.append((inputs, outs, leaves))
        (_, plain_outs, plain_leaves), (params, param_outs, param_leaves) = runs
        for o in param_outs:
            assert type(o) is gradc.Tensor or any(o is p for p in params), (entry.name, type(o))
        for a, b in zip(param_outs, plain_outs):
            assert_close(a, b)
        for a, b in zip(param_leaves, plain_leaves):
            assert (a.grad is None) == (b.grad is None), entry.name
            if a.grad is not None:
                assert type(a.grad) is gradc.Tensor
                assert_close(a.grad, b.grad)
        checked += 1
    assert checked > 100, checked


def test_parameter_repr_matches_torch(torch):
    p = gnn.Parameter(gradc.tensor([[1.0, -2.0]]))
    assert repr(p) == repr(torch.nn.Parameter(torch.tensor([[1.0, -2.0]])))
    frozen = gnn.Parameter(gradc.tensor([1.0]), requires_grad=False)
    assert repr(frozen) == repr(torch.nn.Parameter(torch.tensor([1.0]), requires_grad=False))
    assert tuple(gnn.Parameter().shape) == tuple(torch.nn.Parameter().shape) == (0,)


def test_parameter_of_integer_data_cannot_require_grad(torch):
    with pytest.raises(RuntimeError):
        torch.nn.Parameter(torch.tensor([1]))
    with pytest.raises(RuntimeError, match="floating point"):
        gnn.Parameter(gradc.tensor([1]))
    assert gnn.Parameter(gradc.tensor([1]), requires_grad=False).dtype == gradc.int64


def test_parameter_deepcopy_and_pickle_copy_data_and_keep_requires_grad():
    p = gnn.Parameter(gradc.tensor([1.0, 2.0]), requires_grad=False)
    for clone in (copy.deepcopy(p), pickle.loads(pickle.dumps(p))):
        assert type(clone) is gnn.Parameter and not clone.requires_grad
        assert_close(clone.detach(), p.detach())
        clone.data.add_(1.0)
        assert p[0].item() == 1.0
    trained = gnn.Parameter(gradc.tensor([1.0]))
    (trained * 2).sum().backward()
    clone = copy.deepcopy(trained)
    assert clone.requires_grad and clone.grad is None
    (clone * 3).sum().backward()
    assert trained.grad.item() == 2.0 and clone.grad.item() == 3.0


# ----------------------------------------------------------------- registration and iteration
def test_named_members_order_prefixes_and_duplicates(G, T):
    g, t = G.Net(), T.Net()
    for kw in ({}, {"prefix": "m"}, {"remove_duplicate": False}, {"recurse": False}):
        assert names(g.named_parameters(**kw)) == names(t.named_parameters(**kw))
        assert names(g.named_buffers(**kw)) == names(t.named_buffers(**kw))
    for kw in ({}, {"prefix": "root"}, {"remove_duplicate": False}):
        assert names(g.named_modules(**kw)) == names(t.named_modules(**kw))
    assert names(g.named_children()) == names(t.named_children()) == ["fc1", "act", "fc2"]
    assert [type(m).__name__ for m in g.modules()] == [type(m).__name__ for m in t.modules()]
    assert len(list(g.parameters())) == len(list(t.parameters())) == 4
    bufs = list(g.buffers())
    assert bufs[0] is g.running and bufs[1] is g.fc1.calls  # own buffers before the children's
    assert [p is q for p, q in zip(g.parameters(), [g.fc1.weight, g.fc1.bias, g.act.s, g.fc2.weight])] == [True] * 4


def test_none_entries_are_skipped_everywhere(G, T):
    g, t = G.Affine(2, 3, bias=False), T.Affine(2, 3, bias=False)
    assert g.bias is None and "bias" in g._parameters
    assert names(g.named_parameters()) == names(t.named_parameters()) == ["weight"]
    g.register_buffer("nothing", None)
    t.register_buffer("nothing", None)
    g.add_module("empty", None)
    t.add_module("empty", None)
    assert names(g.named_buffers()) == names(t.named_buffers())
    assert list(g.state_dict()) == list(t.state_dict())
    assert names(g.named_modules()) == names(t.named_modules()) == [""]
    assert repr(g).replace("gradc", "torch") == repr(t)


def test_setattr_routes_values_to_registries(G):
    m = G.Affine(2, 2)
    m.extra = gnn.Parameter(gradc.ones(1))
    assert "extra" in m._parameters and "extra" not in m.__dict__
    m.child = G.Scale()
    assert "child" in m._modules
    m.calls = gradc.ones((), dtype=gradc.int64)  # a tensor to a buffer name replaces the buffer
    assert m._buffers["calls"].item() == 1
    m.scratch = gradc.zeros(3)
    assert "scratch" in m._non_persistent_buffers_set and "scratch" not in m.state_dict()
    m.plain = gradc.zeros(1)  # a tensor to a new name is a plain attribute
    assert "plain" in m.__dict__ and "plain" not in m._buffers
    m.calls = gnn.Parameter(gradc.ones(1))  # a Parameter takes over a buffer's name
    assert "calls" in m._parameters and "calls" not in m._buffers
    m.child = None
    assert m._modules["child"] is None
    m.weight = None
    assert m._parameters["weight"] is None and m.weight is None


def test_setattr_type_errors_match_torch(G, T):
    for lib, tw in ((gradc, G), (pytest.importorskip("torch"), T)):
        m = tw.Affine(2, 2)
        m.child = tw.Scale()
        errors = []
        for name, value in (("weight", lib.ones(2, 2)), ("weight", 3), ("child", 3), ("calls", "x")):
            with pytest.raises(TypeError) as info:
                setattr(m, name, value)
            errors.append(str(info.value))
        if lib is gradc:
            ours = errors
        else:
            expected = [e.replace("torch.FloatTensor", "torch.Tensor") for e in errors]
    # torch names the tensor by its legacy type ('torch.FloatTensor'); gradc has none: 'gradc.Tensor'
    assert ours[0] == "cannot assign 'gradc.Tensor' as parameter 'weight' (gradc.nn.Parameter or None expected)"
    assert ours[:3] == [gradc_text(e) for e in expected[:3]]
    assert ours[3] == "cannot assign 'str' as buffer 'calls' (gradc.Tensor or None expected)"


def test_register_errors_match_torch(G, T, torch):
    def errors(tw, lib, nn):
        m = tw.Affine(2, 2)
        calls = [
            lambda: m.register_buffer("a.b", None), lambda: m.register_buffer("", None),
            lambda: m.register_buffer("weight", None), lambda: m.register_buffer(3, None),
            lambda: m.register_parameter("a.b", None), lambda: m.register_parameter("", None),
            lambda: m.register_parameter("calls", None),
            lambda: m.register_parameter("p", nn.Parameter(lib.ones(1)) * 2),
            lambda: m.add_module("a.b", None), lambda: m.add_module("", None), lambda: m.add_module("weight", None),
            lambda: m.add_module("x", 3), lambda: m.get_submodule("nope"), lambda: m.get_parameter("calls"),
            lambda: m.get_buffer("weight"), lambda: m.get_parameter("zz.weight"), lambda: m.forward_missing,
        ]
        out = []
        for call in calls:
            with pytest.raises((KeyError, TypeError, ValueError, AttributeError)) as info:
                call()
            out.append((info.type, str(info.value)))
        return out

    ours, theirs = errors(G, gradc, gnn), errors(T, torch, torch.nn)
    assert [t for t, _ in ours] == [t for t, _ in theirs]
    for (_, a), (_, b) in zip(ours, theirs):
        b = b.replace("torch.FloatTensor", "gradc.Tensor").replace("(torch Tensor", "(gradc Tensor")
        assert a == gradc_text(b)


def test_register_parameter_requires_a_parameter(G):
    m = G.Scale()
    with pytest.raises(TypeError, match=r"cannot assign 'gradc.Tensor' object to parameter 'q' "
                                        r"\(gradc.nn.Parameter or None required\)"):
        m.register_parameter("q", gradc.ones(1))
    with pytest.raises(TypeError, match=r"cannot assign 'int' object to buffer 'b' \(gradc Tensor or None"):
        m.register_buffer("b", 1)


def test_assigning_before_init_is_refused():
    class Early(gnn.Module):
        def __init__(self):
            self.w = gnn.Parameter(gradc.ones(1))

    with pytest.raises(AttributeError, match=r"cannot assign parameters before Module.__init__\(\) call"):
        Early()
    with pytest.raises(TypeError, match="takes 1 positional argument but 2 were given"):
        gnn.Module(3)


def test_delattr_and_dir(G, T):
    g, t = G.Net(), T.Net()
    for m in (g, t):
        del m.running
        del m.act
        del m.fc1.bias
        m.note = 1
        del m.note
    assert list(g.state_dict()) == list(t.state_dict())
    assert not hasattr(g, "note") and not hasattr(g, "running")
    assert {"fc1", "fc2", "forward", "training"} <= set(dir(g))
    assert [k for k in dir(g) if not k.startswith("_")] == [k for k in dir(t) if not k.startswith("_")
                                                             and k in dir(g)]


def test_getattr_error_message(G):
    with pytest.raises(AttributeError, match="'Affine' object has no attribute 'nope'"):
        _ = G.Affine(1, 1).nope


def test_forward_missing_raises():
    with pytest.raises(NotImplementedError, match=r'Module \[Module\] is missing the required "forward" function'):
        gnn.Module()(gradc.ones(1))


def test_get_submodule_parameter_buffer(G):
    m = G.Net()
    assert m.get_submodule("") is m and m.get_submodule("fc1") is m.fc1
    assert m.get_parameter("fc2.weight") is m.fc2.weight
    assert m.get_buffer("fc1.calls") is m.fc1.calls and m.get_buffer("running") is m.running
    with pytest.raises(AttributeError, match="`s` is not an nn.Module"):
        m.get_submodule("act.s")


# ----------------------------------------------------------------- state dict
def test_state_dict_keys_values_metadata(G, T):
    g, t = G.Net(), T.Net()
    gs, ts = g.state_dict(), t.state_dict()
    assert type(gs) is OrderedDict
    assert list(gs) == list(ts)
    assert "fc1.scratch" not in gs  # non-persistent
    for k in gs:
        assert_close(gs[k], ts[k])
        assert not gs[k].requires_grad and type(gs[k]) is gradc.Tensor
    assert dict(gs._metadata) == dict(ts._metadata)
    assert list(g.state_dict(prefix="p.")) == list(t.state_dict(prefix="p."))
    assert dict(g.state_dict(prefix="p.")._metadata) == dict(t.state_dict(prefix="p.")._metadata)
    dest = {}
    assert g.state_dict(destination=dest) is dest and list(dest) == list(ts)


def test_state_dict_detaches_but_shares_memory_and_keep_vars(G):
    m = G.Affine(2, 2)
    sd = m.state_dict()
    sd["weight"][0, 0] = 42.0
    assert m.weight[0, 0].item() == 42.0
    kept = m.state_dict(keep_vars=True)
    assert kept["weight"] is m.weight and kept["calls"] is m.calls


def test_load_torch_state_dict_gives_same_outputs(G, T, torch):
    g, t = G.Net(), T.Net()
    with torch.no_grad():
        for p in t.parameters():
            p.mul_(-0.5).add_(0.25)
        t.running.fill_(3.0)
        t.fc1.calls.fill_(7)
    result = g.load_state_dict(as_gradc(t.state_dict()))
    assert repr(result) == "<All keys matched successfully>" == repr(t.load_state_dict(t.state_dict()))
    assert result.missing_keys == [] and result.unexpected_keys == []
    x = np.random.default_rng(3).standard_normal((5, 3)).astype(np.float32)
    assert_close(g(gradc.tensor(x)), t(torch.tensor(x)))
    assert g.fc1.calls.item() == 7 and g.fc1.calls.dtype == gradc.int64


def test_load_copies_in_place_keeping_identity(G):
    m = G.Affine(2, 2)
    weight = m.weight
    src = {k: v.clone() + 1 for k, v in G.Affine(2, 2, seed=5).state_dict().items()}
    m.load_state_dict(src)
    assert m.weight is weight and m.weight.requires_grad and m.weight.is_leaf
    assert_close(m.weight.detach(), src["weight"])
    src["weight"][0, 0] = 100.0  # copied, not shared
    assert m.weight[0, 0].item() != 100.0


def test_load_strict_errors_match_torch(G, T, torch):
    cases = [
        lambda sd: {k: v for k, v in sd.items() if k != "fc1.bias"},
        lambda sd: {**sd, "fc1.extra": sd["fc1.bias"], "nothere.w": sd["fc1.bias"], "zz": sd["fc1.bias"]},
        lambda sd: {**sd, "fc1.weight": sd["fc2.weight"], "running": sd["running"][:1]},
        lambda sd: {k: v for k, v in sd.items() if k != "running"} | {"fc1.scratch": sd["running"]},
    ]
    for case in cases:
        with pytest.raises(RuntimeError) as theirs:
            T.Net().load_state_dict(case(T.Net().state_dict()))
        with pytest.raises(RuntimeError) as ours:
            G.Net().load_state_dict(case(G.Net().state_dict()))
        assert str(ours.value) == gradc_text(str(theirs.value))


def test_load_non_strict_reports_keys(G, T):
    def scenario(tw):
        sd = tw.Net().state_dict()
        del sd["fc2.weight"]
        sd["fc2.extra"] = sd["running"]
        return tw.Net().load_state_dict(sd, strict=False)

    ours, theirs = scenario(G), scenario(T)
    assert ours.missing_keys == theirs.missing_keys == ["fc2.weight"]
    assert ours.unexpected_keys == theirs.unexpected_keys == ["fc2.extra"]  # reported, not raised
    assert repr(ours) == repr(theirs)


def test_load_size_mismatch_raises_even_when_not_strict(G):
    sd = G.Affine(2, 3).state_dict()
    with pytest.raises(RuntimeError, match=r"size mismatch for weight: copying a param with shape "
                                           r"gradc.Size\(\[3, 2\]\) from checkpoint, the shape in current model "
                                           r"is gradc.Size\(\[2, 2\]\)."):
        G.Affine(2, 2).load_state_dict({"weight": sd["weight"]}, strict=False)


def test_load_rejects_non_tensors_and_non_mappings(G, T, torch):
    with pytest.raises(RuntimeError) as theirs:
        T.Scale().load_state_dict({"s": 1.0})
    with pytest.raises(RuntimeError) as ours:
        G.Scale().load_state_dict({"s": 1.0})
    assert str(ours.value) == str(theirs.value).replace("torch.Tensor", "gradc.Tensor")
    with pytest.raises(TypeError, match="Expected state_dict to be dict-like"):
        G.Scale().load_state_dict([("s", gradc.ones(1))])


def test_load_accepts_one_element_vector_for_scalar(G, T, torch):
    g, t = G.Affine(1, 1), T.Affine(1, 1)
    gs, ts = g.state_dict(), t.state_dict()
    gs["calls"], ts["calls"] = gradc.tensor([5]), torch.tensor([5])
    g.load_state_dict(gs)
    t.load_state_dict(ts)
    assert g.calls.shape == t.calls.shape == () and g.calls.item() == t.calls.item() == 5


def test_load_assign_takes_the_given_tensors(G, T, torch):
    g, t = G.Affine(2, 2), T.Affine(2, 2)
    g.weight.requires_grad_(False)
    t.weight.requires_grad_(False)
    new_w, new_c = gradc.full((2, 2), 3.0), gradc.tensor(9)
    sd = {"weight": new_w, "bias": gnn.Parameter(gradc.zeros(2), requires_grad=False), "calls": new_c}
    tsd = {"weight": torch.full((2, 2), 3.0), "bias": torch.nn.Parameter(torch.zeros(2), requires_grad=False),
           "calls": torch.tensor(9)}
    g.load_state_dict(sd, assign=True)
    t.load_state_dict(tsd, assign=True)
    for name in ("weight", "bias"):
        gp, tp = getattr(g, name), getattr(t, name)
        assert isinstance(gp, gnn.Parameter) and gp.requires_grad == tp.requires_grad
    assert g.bias is sd["bias"] and g.calls is new_c
    new_w[0, 0] = -1.0  # shares memory with the given tensor
    assert g.weight[0, 0].item() == -1.0


def test_extra_state_round_trip():
    class WithExtra(gnn.Module):
        def __init__(self):
            super().__init__()
            self.info = {"step": 3}

        def get_extra_state(self):
            return dict(self.info)

        def set_extra_state(self, state):
            self.info = state

    parent = gnn.Module()
    parent.child = WithExtra()
    sd = parent.state_dict()
    assert list(sd) == ["child._extra_state"] and sd["child._extra_state"] == {"step": 3}
    other = gnn.Module()
    other.child = WithExtra()
    other.child.info = {}
    other.load_state_dict(sd)
    assert other.child.info == {"step": 3}
    with pytest.raises(RuntimeError, match='Missing key\\(s\\) in state_dict: "child._extra_state"'):
        other.load_state_dict({})
    with pytest.raises(RuntimeError, match='Unexpected key\\(s\\) in state_dict: "_extra_state"'):
        gnn.Module().load_state_dict({"_extra_state": 1})


def test_subclass_state_dict_overrides_and_versions(G, T):
    def run(tw):
        class Old(tw.Scale):
            pass

        class New(tw.Scale):
            _version = 2

            def _save_to_state_dict(self, destination, prefix, keep_vars):
                super()._save_to_state_dict(destination, prefix, keep_vars)
                destination[prefix + "saved_by"] = "New"

            def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing, unexpected, errors):
                if local_metadata.get("version", 0) < 2:  # migrate an old layout: "s" was "scale"
                    state_dict[prefix + "s"] = state_dict.pop(prefix + "scale") * 10
                state_dict.pop(prefix + "saved_by", None)
                super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing, unexpected, errors)

        old = Old()
        sd = old.state_dict()
        sd["scale"] = sd.pop("s")
        new = New()
        new.load_state_dict(sd)
        saved = new.state_dict()
        New().load_state_dict(saved)
        return new.s.tolist(), list(saved), saved._metadata[""]

    assert run(G) == run(T) == ([20.0], ["s", "saved_by"], {"version": 2})


def test_state_dict_hooks(G, T):
    def run(tw):
        m = tw.Net()
        log = []
        m.fc1.register_state_dict_pre_hook(lambda mod, prefix, keep: log.append(("pre", prefix, keep)))

        def post(mod, sd, prefix, meta):
            log.append(("post", prefix, list(sd)[-1]))
            sd[prefix + "added"] = 1

        h = m.fc2.register_state_dict_post_hook(post)
        m._register_state_dict_hook(lambda mod, sd, prefix, meta: OrderedDict(only=len(sd)))
        first = m.state_dict(prefix="r.")
        h.remove()
        second = m.state_dict()
        return log, dict(first), dict(second)

    assert run(G) == run(T)


def test_public_state_dict_post_hook_must_not_return(G):
    m = G.Scale()
    m.register_state_dict_post_hook(lambda *a: {})
    with pytest.raises(RuntimeError, match="state_dict post-hook must return None"):
        m.state_dict()


def test_load_state_dict_hooks(G, T):
    def run(tw):
        m = tw.Net()
        log = []

        def pre(mod, sd, prefix, meta, strict, missing, unexpected, errors):
            log.append(("pre", type(mod).__name__, prefix, sorted(sd), meta))
            sd.pop(prefix + "bias", None)  # the module's copy may be edited

        def post(mod, keys):
            log.append(("post", type(mod).__name__, list(keys.missing_keys)))
            keys.missing_keys.clear()

        m.fc1.register_load_state_dict_pre_hook(pre)
        m.register_load_state_dict_post_hook(post)
        result = m.load_state_dict(m.state_dict())
        return log, result.missing_keys

    assert run(G) == run(T)


# ----------------------------------------------------------------- forward hooks
def test_forward_hook_order_and_replacement(G, T, torch):
    def run(tw, lib):
        class Mul(tw.Scale):
            def forward(self, x, scale=1.0):
                return x * self.s * scale

        m = Mul()
        log = []
        m.register_forward_pre_hook(lambda mod, args: (log.append("pre-a"), args[0] + 1)[1])
        m.register_forward_pre_hook(lambda mod, args, kw: (log.append(("pre-kw", kw)), (args, {"scale": 3.0}))[1],
                                    prepend=True, with_kwargs=True)
        h = m.register_forward_pre_hook(lambda mod, args: log.append(("pre-b", args[0].tolist())))
        m.register_forward_hook(lambda mod, args, out: (log.append(("fwd", args[0].tolist(), out.tolist())),
                                                        out * 2)[1])
        m.register_forward_hook(lambda mod, args, kw, out: log.append(("fwd-kw", kw, out.tolist())),
                                with_kwargs=True)
        m.register_forward_hook(lambda mod, args, out: log.append("first"), prepend=True)
        out1 = m(lib.ones(2), scale=5.0).tolist()
        h.remove()
        out2 = m(lib.ones(2)).tolist()
        return log, out1, out2

    assert run(G, gradc) == run(T, torch)


def test_forward_pre_hook_with_kwargs_must_return_pair(G):
    m = G.Scale()
    m.register_forward_pre_hook(lambda mod, args, kw: args, with_kwargs=True)
    with pytest.raises(RuntimeError, match="forward pre-hook must return None or a tuple of"):
        m(gradc.ones(1))


def test_always_call_forward_hook_runs_when_forward_raises(G, T, torch):
    def run(tw, lib):
        class Broken(tw.Scale):
            def forward(self, x):
                raise ValueError("boom")

        m = Broken()
        log = []
        m.register_forward_hook(lambda mod, args, out: log.append(("always", out)), always_call=True)
        m.register_forward_hook(lambda mod, args, out: log.append("normal"))
        with pytest.raises(ValueError, match="boom"):
            m(lib.ones(1))
        return log

    assert run(G, gradc) == run(T, torch) == [("always", None)]


def test_global_forward_hooks_run_first(G, T, torch):
    def run(tw, lib, hooks_module):
        log = []
        m = tw.Scale()
        m.register_forward_pre_hook(lambda mod, args: log.append("own-pre"))
        m.register_forward_hook(lambda mod, args, out: log.append("own"))
        handles = [hooks_module.register_module_forward_pre_hook(lambda mod, args: log.append("global-pre")),
                   hooks_module.register_module_forward_hook(lambda mod, args, out: log.append("global"))]
        try:
            m(lib.ones(1))
        finally:
            for h in handles:
                h.remove()
        m(lib.ones(1))
        return log

    assert run(G, gradc, gmodule) == run(T, torch, torch.nn.modules.module)
    assert not gmodule._global_forward_hooks and not gmodule._global_forward_pre_hooks


def test_handle_removal_forgets_flags(G):
    m = G.Scale()
    h = m.register_forward_hook(lambda *a: None, with_kwargs=True, always_call=True)
    assert h.id in m._forward_hooks_with_kwargs and h.id in m._forward_hooks_always_called
    with h:
        pass
    assert not m._forward_hooks and not m._forward_hooks_with_kwargs and not m._forward_hooks_always_called


# ----------------------------------------------------------------- backward hooks
def _backward_scenario(tw, lib, use_b: bool):
    m = tw.TwoInTwoOut()
    log = []

    def pre(mod, grad_output):
        log.append(("pre", [None if g is None else g.tolist() for g in grad_output]))
        return (grad_output[0] * 2, grad_output[1])

    def hook(mod, grad_input, grad_output):
        log.append(("hook", [None if g is None else g.tolist() for g in grad_input],
                    [None if g is None else g.tolist() for g in grad_output]))
        return (grad_input[0] * 10, *grad_input[1:])

    m.register_full_backward_pre_hook(pre)
    m.register_full_backward_hook(hook)
    m.register_full_backward_hook(lambda mod, gi, go: log.append("prepended"), prepend=True)
    x = lib.tensor([1.0, 2.0], requires_grad=True)
    a, b = m(x, lib.tensor([3.0, 4.0]), 5.0)
    loss = (a * a).sum() + (b.sum() if use_b else 0)
    loss.backward()
    return log, x.grad.tolist(), a.grad_fn.name()


@pytest.mark.parametrize("use_b", [False, True])
def test_full_backward_hooks_match_torch(G, T, torch, use_b):
    assert _backward_scenario(G, gradc, use_b) == _backward_scenario(T, torch, use_b)


def test_backward_hooks_with_a_parameter_and_removal(G, T, torch):
    def run(tw, lib):
        m = tw.Affine(3, 2)
        log = []
        h = m.register_full_backward_hook(lambda mod, gi, go: log.append((gi[0].tolist(), go[0].tolist())))
        x = lib.tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
        m(x).sum().backward()
        h.remove()
        m(x).sum().backward()
        return log, x.grad.tolist(), m.weight.grad.tolist()

    ours, theirs = run(G, gradc), run(T, torch)
    assert len(ours[0]) == 1
    np.testing.assert_allclose(np.array(ours[0][0][0]), np.array(theirs[0][0][0]), rtol=1e-6)
    np.testing.assert_allclose(np.array(ours[1]), np.array(theirs[1]), rtol=1e-6)
    np.testing.assert_allclose(np.array(ours[2]), np.array(theirs[2]), rtol=1e-6)


def test_backward_hook_fires_on_outputs_when_no_input_requires_grad(G, T, torch):
    def run(tw, lib):
        m = tw.Scale()
        log = []
        m.register_full_backward_hook(lambda mod, gi, go: log.append((gi, go[0].tolist())))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m(lib.ones(2)).sum().backward()
        assert any("Full backward hook is firing" in str(w.message) for w in caught)
        return log, m.s.grad.tolist()

    assert run(G, gradc) == run(T, torch)


def test_backward_hook_bad_return_length(G):
    m = G.TwoInTwoOut()
    m.register_full_backward_hook(lambda mod, gi, go: (gi[0],))
    x = gradc.ones(2, requires_grad=True)
    with pytest.raises(RuntimeError, match="Backward hook returned an invalid number of grad_input, got 1, "
                                           "but expected 2"):
        m(x, x)[0].sum().backward()


def test_no_backward_wiring_without_grad(G):
    m = G.Scale()
    m.register_full_backward_hook(lambda *a: None)
    with gradc.no_grad():
        out = m(gradc.ones(2))
    assert out.grad_fn is None


# ----------------------------------------------------------------- conversion
def test_to_dtype_keeps_parameter_identity_and_converts_grads(G, T, torch):
    g, t = G.Affine(2, 2), T.Affine(2, 2)
    for m, lib in ((g, gradc), (t, torch)):
        m(lib.ones(1, 2)).sum().backward()
    weight = g.weight
    assert g.to(gradc.float64) is g
    t.to(torch.float64)
    assert g.weight is weight and isinstance(weight, gnn.Parameter) and weight.requires_grad
    for name in ("weight", "bias"):
        gp, tp = getattr(g, name), getattr(t, name)
        assert str(gp.dtype) == gradc_text(str(tp.dtype)) == "gradc.float64"
        assert gp.grad.dtype == gradc.float64
        assert_close(gp.grad, tp.grad)
    assert g.calls.dtype == gradc.int64 and t.calls.dtype == torch.int64  # integer buffers are not cast
    assert g.scratch.dtype == gradc.float64 and t.scratch.dtype == torch.float64
    out = g(gradc.ones(1, 2, dtype=gradc.float64))
    assert out.dtype == gradc.float64


def test_to_overloads(G):
    m = G.Affine(2, 2)
    m.to(gradc.zeros(1, dtype=gradc.float64))
    assert m.weight.dtype == gradc.float64
    m.to("cpu", gradc.float32)
    assert m.weight.dtype == gradc.float32
    m.to(device="cpu", dtype=gradc.float64, non_blocking=False)
    assert m.bias.dtype == gradc.float64
    assert m.to("cpu") is m and m.cpu() is m and m.weight.device == gradc.device("cpu")
    m.half()
    assert (m.weight.dtype, m.calls.dtype) == (gradc.float16, gradc.int64)
    m.float()
    assert m.scratch.dtype == gradc.float32
    m.double()
    assert m.weight.dtype == gradc.float64


def test_to_integer_dtype_is_refused(G, T, torch):
    with pytest.raises(TypeError) as theirs:
        T.Affine(1, 1).to(torch.int64)
    with pytest.raises(TypeError) as ours:
        G.Affine(1, 1).to(gradc.int64)
    assert str(ours.value) == gradc_text(str(theirs.value))
    assert str(ours.value) == ("nn.Module.to only accepts floating point or complex dtypes, but got desired "
                               "dtype=gradc.int64")


def test_type_casts_every_tensor(G, T, torch):
    g, t = G.Affine(1, 1), T.Affine(1, 1)
    g.type(gradc.float64)
    t.type(torch.float64)
    assert [str(b.dtype) for b in g.buffers()] == [gradc_text(str(b.dtype)) for b in t.buffers()]


def test_apply_fn_sees_each_tensor_once(G):
    seen = []
    m = G.Net()
    m._apply(lambda t: seen.append(tuple(t.shape)) or t)
    assert seen.count((4, 3)) == 1  # the tied fc1 is visited once (children are deduplicated)


# ----------------------------------------------------------------- modes, grads, apply, repr
def test_train_eval_propagate(G, T):
    g, t = G.Net(), T.Net()
    assert g.training and g.fc1.training
    assert g.eval() is g and g.train(False) is g
    t.eval()
    assert [m.training for m in g.modules()] == [m.training for m in t.modules()] == [False] * 4
    g.fc2.train()
    assert [m.training for m in g.modules()] == [False, False, False, True]
    with pytest.raises(ValueError, match="training mode is expected to be boolean"):
        g.train(1)


def test_zero_grad_and_requires_grad(G, T, torch):
    g, t = G.Affine(2, 2), T.Affine(2, 2)
    for m, lib in ((g, gradc), (t, torch)):
        m(lib.ones(1, 2)).sum().backward()
    g.zero_grad(set_to_none=False)
    t.zero_grad(set_to_none=False)
    assert_close(g.weight.grad, t.weight.grad)
    assert float(g.weight.grad.abs().sum()) == 0.0 and not g.weight.grad.requires_grad
    g.zero_grad()
    assert g.weight.grad is None and g.bias.grad is None
    assert g.requires_grad_(False) is g and not any(p.requires_grad for p in g.parameters())
    g.requires_grad_()
    assert all(p.requires_grad for p in g.parameters())


def test_apply_visits_children_first(G, T):
    def order(m):
        seen = []
        assert m.apply(lambda mod: seen.append(type(mod).__name__)) is m
        return seen

    assert order(G.Net()) == order(T.Net())


def test_repr_matches_torch(G, T, torch):
    g, t = G.Net(), T.Net()
    assert repr(g) == repr(t)
    for m in (g, t):
        m.fc1.add_module("inner", type(m.act)())
    assert repr(g) == repr(t)
    assert repr(gnn.Module()) == repr(torch.nn.Module()) == "Module()"
    assert repr(G.Affine(2, 3)) == "Affine(n_in=2, n_out=3, bias=True)"
