"""gradc.nn containers (Sequential, ModuleList, ModuleDict, ParameterList, ParameterDict) vs torch."""
from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pytest
from helpers import assert_close
from module_twins import as_gradc, twins

import gradc
import gradc.nn as gnn


@pytest.fixture
def G():
    return twins(gnn, gradc)


@pytest.fixture
def T(torch):
    return twins(torch.nn, torch)


def both(G, T, torch):
    """(gradc.nn, twins, lib) for each library."""
    return ((gnn, G, gradc), (torch.nn, T, torch))


def layout(m) -> tuple:
    """What a container looks like from outside: children names and types, parameter names, repr."""
    return ([(n, type(c).__name__) for n, c in m.named_children()], [n for n, _ in m.named_parameters()],
            repr(m).replace("gradc", "torch"))


def same(G, T, torch, build) -> None:
    """`build(nn, tw, lib)` gives equivalent containers in both libraries."""
    (gn, gt, gl), (tn, tt, tl) = both(G, T, torch)
    assert layout(build(gn, gt, gl)) == layout(build(tn, tt, tl))


# ----------------------------------------------------------------- Sequential
def test_sequential_forward_matches_torch(G, T, torch):
    g = gnn.Sequential(G.Affine(3, 4, seed=1), G.Scale(), G.Affine(4, 2, seed=2))
    t = torch.nn.Sequential(T.Affine(3, 4, seed=1), T.Scale(), T.Affine(4, 2, seed=2))
    g.load_state_dict(as_gradc(t.state_dict()))
    x = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    gx, tx = gradc.tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    gy, ty = g(gx), t(tx)
    assert_close(gy, ty)
    gy.sum().backward()
    ty.sum().backward()
    assert_close(gx.grad, tx.grad)
    assert_close(g[0].weight.grad, t[0].weight.grad)
    assert list(g.state_dict()) == list(t.state_dict())


def test_sequential_construction_and_names(G, T, torch):
    same(G, T, torch, lambda nn, tw, lib: nn.Sequential(tw.Scale(), tw.Affine(1, 1)))
    same(G, T, torch, lambda nn, tw, lib: nn.Sequential(OrderedDict(first=tw.Scale(), second=tw.Affine(1, 1))))
    same(G, T, torch, lambda nn, tw, lib: nn.Sequential())


def test_sequential_indexing(G, T, torch):
    for nn, tw, _ in both(G, T, torch):
        a, b, c = tw.Scale(), tw.Affine(1, 1), tw.Affine(1, 2)
        s = nn.Sequential(OrderedDict(x=a, y=b, z=c))
        assert s[0] is a and s[-1] is c and s[-3] is a
        part = s[1:]
        assert type(part) is nn.Sequential and list(part._modules) == ["y", "z"] and part[0] is b
        assert list(s[::-1]) == [c, b, a]
        with pytest.raises(IndexError, match="index 3 is out of range"):
            s[3]
        with pytest.raises(IndexError, match="index -4 is out of range"):
            s[-4]
        s[1] = tw.Scale()
        assert list(s._modules) == ["x", "y", "z"] and type(s.y).__name__ == "Scale"


def test_sequential_mutation_matches_torch(G, T, torch):
    def build(nn, tw, lib):
        s = nn.Sequential(tw.Affine(1, 1), tw.Affine(1, 2), tw.Affine(2, 2), tw.Scale())
        del s[1]
        s.append(tw.Affine(3, 3))
        s.insert(1, tw.Affine(4, 4))
        s.insert(-1, tw.Affine(5, 5))
        popped = s.pop(0)
        s.extend([popped, tw.Scale()])
        del s[1:3]
        return s

    same(G, T, torch, build)


def test_sequential_insert_errors(G):
    s = gnn.Sequential(G.Scale())
    with pytest.raises(IndexError, match="Index out of range: 3"):
        s.insert(3, G.Scale())
    with pytest.raises(AssertionError):
        s.insert(0, "not a module")


def test_sequential_arithmetic(G, T, torch):
    same(G, T, torch, lambda nn, tw, lib: nn.Sequential(tw.Scale()) + nn.Sequential(tw.Affine(1, 1), tw.Scale()))
    same(G, T, torch, lambda nn, tw, lib: nn.Sequential(tw.Scale(), tw.Affine(1, 1)) * 2)
    same(G, T, torch, lambda nn, tw, lib: 3 * nn.Sequential(tw.Scale()))

    def inplace(nn, tw, lib):
        s = nn.Sequential(tw.Scale())
        s += nn.Sequential(tw.Affine(1, 1))
        s *= 2
        return s

    same(G, T, torch, inplace)
    s = gnn.Sequential(G.Scale())
    doubled = s * 2
    assert doubled[0] is doubled[1] is s[0]  # repetition shares the modules
    with pytest.raises(ValueError, match="add operator supports only objects of Sequential class"):
        s + gnn.ModuleList()
    with pytest.raises(ValueError, match="Non-positive multiplication factor 0"):
        s * 0
    with pytest.raises(TypeError, match="unsupported operand"):
        s * 1.5


def test_sequential_dir_hides_indices(G):
    s = gnn.Sequential(G.Scale(), G.Scale())
    assert "0" not in dir(s) and "append" in dir(s)
    assert len(s) == 2 and list(iter(s)) == [s[0], s[1]]


# ----------------------------------------------------------------- ModuleList
def test_module_list_operations_match_torch(G, T, torch):
    def build(nn, tw, lib):
        ml = nn.ModuleList([tw.Scale(), tw.Affine(1, 1)])
        ml.append(tw.Affine(2, 2))
        ml.extend([tw.Affine(3, 3), tw.Scale()])
        ml.insert(1, tw.Affine(4, 4))
        ml += [tw.Affine(5, 5)]
        del ml[0]
        ml.pop(-1)
        del ml[::2]
        ml[0] = tw.Affine(6, 6)
        return ml

    same(G, T, torch, build)


def test_module_list_indexing_and_add(G, T, torch):
    for nn, tw, _ in both(G, T, torch):
        mods = [tw.Scale(), tw.Affine(1, 1), tw.Affine(1, 2)]
        ml = nn.ModuleList(mods)
        assert ml[-1] is mods[2] and list(ml) == mods and len(ml) == 3
        assert type(ml[1:]) is nn.ModuleList and list(ml[1:]) == mods[1:]
        assert list(ml[1:]._modules) == ["0", "1"]
        with pytest.raises(IndexError, match="index 3 is out of range"):
            ml[3]
        combined = ml + nn.ModuleList([tw.Scale()])
        assert type(combined) is nn.ModuleList and len(combined) == 4 and combined[0] is mods[0]
    with pytest.raises(TypeError, match="ModuleList.extend should be called with an iterable, but got Scale"):
        gnn.ModuleList().extend(G.Scale())


def test_module_list_repr_groups_repeats(G, T, torch):
    same(G, T, torch, lambda nn, tw, lib: nn.ModuleList(
        [tw.Affine(1, 1), tw.Affine(1, 1), tw.Affine(1, 1), tw.Scale(), tw.Affine(1, 1), tw.Affine(1, 1)]))
    same(G, T, torch, lambda nn, tw, lib: nn.ModuleList())
    same(G, T, torch, lambda nn, tw, lib: nn.Sequential(nn.ModuleList([tw.Scale(), tw.Scale()])))


def test_module_list_registers_for_state_dict_and_to(G):
    ml = gnn.ModuleList([G.Affine(1, 1), G.Affine(1, 1)])
    assert list(ml.state_dict()) == ["0.weight", "0.bias", "0.calls", "1.weight", "1.bias", "1.calls"]
    ml.to(gradc.float64)
    assert ml[1].weight.dtype == gradc.float64
    ml.eval()
    assert not ml[0].training


# ----------------------------------------------------------------- ModuleDict
def test_module_dict_matches_torch(G, T, torch):
    def build(nn, tw, lib):
        md = nn.ModuleDict({"b": tw.Scale(), "a": tw.Affine(1, 1)})
        md.update([("c", tw.Affine(2, 2)), ("b", tw.Affine(3, 3))])
        md.update(OrderedDict(z=tw.Scale()))
        md["d"] = tw.Scale()
        md.pop("a")
        del md["z"]
        return md

    same(G, T, torch, build)


def test_module_dict_api(G):
    a, b = G.Scale(), G.Affine(1, 1)
    md = gnn.ModuleDict([("a", a), ("b", b)])
    assert md["a"] is a and "b" in md and "x" not in md and len(md) == 2
    assert list(md) == list(md.keys()) == ["a", "b"]
    assert list(md.values()) == [a, b] and list(md.items()) == [("a", a), ("b", b)]
    assert md.pop("a") is a and list(md) == ["b"]
    md.clear()
    assert len(md) == 0
    with pytest.raises(TypeError, match="ModuleDict.update should be called with an iterable"):
        md.update(3)
    with pytest.raises(ValueError, match="ModuleDict update sequence element #0 has length 3; 2 is required"):
        md.update([("a", a, a)])
    with pytest.raises(TypeError, match="ModuleDict update sequence element #0 should be Iterable"):
        md.update([3])
    with pytest.raises(TypeError, match="is not a Module subclass"):
        md["x"] = 3


# ----------------------------------------------------------------- ParameterList / ParameterDict
def test_parameter_list_matches_torch(G, T, torch):
    def build(nn, tw, lib):
        pl = nn.ParameterList([nn.Parameter(lib.ones(2, 3)), lib.zeros(4)])
        pl.append(lib.ones(1, dtype=lib.float64))
        pl.extend([nn.Parameter(lib.ones(5))])
        pl += [lib.ones(2)]
        pl[0] = lib.full((1, 1), 2.0)
        return pl

    same(G, T, torch, build)


def test_parameter_list_behaviour(G):
    p = gnn.Parameter(gradc.ones(2))
    pl = gnn.ParameterList([p, gradc.zeros(3), "note"])
    assert pl[0] is p and isinstance(pl[1], gnn.Parameter) and pl[2] == "note"
    assert [n for n, _ in pl.named_parameters()] == ["0", "1"]
    part = pl[1:]
    assert type(part) is gnn.ParameterList and len(part) == 2 and part[0] is pl[1]
    assert list(pl) == [pl[0], pl[1], pl[2]] and len(pl) == 3
    with pytest.raises(IndexError, match="index 3 is out of range"):
        pl[3]
    with pytest.raises(TypeError, match="ParameterList.extend should be called with an iterable, but got Tensor"):
        pl.extend(gradc.ones(2))
    with pytest.raises(RuntimeError, match="ParameterList should not be called."):
        pl(gradc.ones(1))
    assert "(2): Object of type: str" in repr(pl)
    (pl[0] * pl[1][:2]).sum().backward()
    assert pl[0].grad is not None and pl[1].grad is not None


def test_parameter_list_inside_a_module_state_dict(G, T, torch):
    def build(nn, tw, lib):
        m = tw.Scale()
        m.extra = nn.ParameterList([lib.ones(2), lib.ones(3)])
        return m

    g, t = build(gnn, G, gradc), build(torch.nn, T, torch)
    assert list(g.state_dict()) == list(t.state_dict()) == ["s", "extra.0", "extra.1"]
    assert [n for n, _ in g.named_parameters()] == [n for n, _ in t.named_parameters()]


def test_parameter_dict_matches_torch(G, T, torch):
    def build(nn, tw, lib):
        pd = nn.ParameterDict({"b": lib.ones(2), "a": nn.Parameter(lib.zeros(3))})  # plain dict: sorted keys
        pd.update(OrderedDict(z=lib.ones(1), c=lib.ones(1)))
        pd["d"] = lib.ones(4)
        pd.pop("a")
        return pd

    (gn, gt, gl), (tn, tt, tl) = both(G, T, torch)
    ours, theirs = build(gn, gt, gl), build(tn, tt, tl)
    assert list(ours) == list(theirs) == ["b", "z", "c", "d"]
    assert [n for n, _ in ours.named_parameters()] == [n for n, _ in theirs.named_parameters()]
    assert list(ours.state_dict()) == list(theirs.state_dict())


def test_parameter_dict_api(G):
    pd = gnn.ParameterDict([("w", gradc.ones(2)), ("v", gradc.zeros(1))])
    assert isinstance(pd["w"], gnn.Parameter) and list(pd.keys()) == ["w", "v"] and len(pd) == 2
    assert pd.get("nope", 5) == 5 and "w" in pd and list(reversed(pd)) == ["v", "w"]
    default = pd.setdefault("u", gradc.ones(3))
    assert pd["u"] is default and isinstance(default, gnn.Parameter)
    assert pd.popitem()[0] == "u" and list(pd) == ["w", "v"]
    copied = pd.copy()
    assert copied["w"] is pd["w"] and copied is not pd
    merged = pd | gnn.ParameterDict({"x": gradc.ones(1)})
    assert list(merged) == ["w", "v", "x"] and list(pd) == ["w", "v"]
    pd |= {"y": gradc.ones(1)}
    assert list(pd) == ["w", "v", "y"]
    assert list(pd.fromkeys(["p", "q"])) == ["p", "q"]
    assert [k for k, _ in pd.items()] == ["w", "v", "y"] and len(list(pd.values())) == 3
    pd.clear()
    assert len(pd) == 0 and not list(pd.parameters())
    with pytest.raises(TypeError, match="Index given to ParameterDict cannot be used as a key"):
        pd[3]
    with pytest.raises(RuntimeError, match="ParameterDict should not be called."):
        pd()


def test_parameter_dict_repr(torch):
    ours = repr(gnn.ParameterDict({"w": gradc.ones(2, 3), "note": 1}))
    theirs = repr(torch.nn.ParameterDict({"w": torch.ones(2, 3), "note": 1}))
    # torch names the entry by its legacy tensor type; gradc shows the dtype, as ParameterList does
    assert ours == theirs.replace("torch.FloatTensor", "gradc.float32")
    assert ours == ("ParameterDict(\n    (note): Object of type: int\n"
                    "    (w): Parameter containing: [gradc.float32 of size 2x3]\n)")
