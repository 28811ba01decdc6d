"""gradc.utils.data: datasets, samplers, collation and DataLoader (against torch.utils.data)."""
from __future__ import annotations

from collections import namedtuple

import numpy as np
import pytest
from helpers import assert_close, to_numpy

import gradc
from gradc.utils.data import (
    BatchSampler,
    DataLoader,
    Dataset,
    RandomSampler,
    SequentialSampler,
    Subset,
    TensorDataset,
    default_collate,
    default_convert,
    random_split,
)

Point = namedtuple("Point", ["x", "y"])


class Squares(Dataset):
    def __init__(self, n):
        self.n = n

    def __getitem__(self, i):
        return {"i": i, "sq": float(i * i), "vec": np.full(2, i, np.float32), "name": f"s{i}"}

    def __len__(self):
        return self.n


def _same_structure(ours, theirs):
    """Recursively: same container types, tensor values and dtypes, and plain values."""
    if hasattr(theirs, "numpy") and hasattr(theirs, "dtype"):
        assert isinstance(ours, gradc.Tensor), type(ours)
        assert_close(ours, theirs, rtol=0, atol=0)
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs)
        for k in theirs:
            _same_structure(ours[k], theirs[k])
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs)
        for a, b in zip(ours, theirs):
            _same_structure(a, b)
    else:
        assert type(ours) is type(theirs) and ours == theirs


def _samples(lib):
    return {
        "tensors": [lib.tensor([1.0, 2.0]), lib.tensor([3.0, 4.0]), lib.tensor([5.0, 6.0])],
        "float": [0.5, 1.5, 2.5],
        "int": [1, 2, 3],
        "bool": [True, False, True],
        "numpy_arrays": [np.arange(3, dtype=np.int32) + i for i in range(3)],
        "numpy_scalars": [np.float32(1.5), np.float32(2), np.float32(3)],
        "strings": ["a", "b", "c"],
        "tuples": [(lib.tensor(i), float(i), "x") for i in range(3)],
        "lists": [[i, [float(i)]] for i in range(3)],
        "dicts": [{"a": i, "b": {"c": np.float64(i)}} for i in range(3)],
        "namedtuples": [Point(i, np.ones(2) * i) for i in range(3)],
    }


@pytest.mark.parametrize("kind", list(_samples(gradc)))
def test_default_collate_matches_torch(torch, kind):
    from torch.utils.data import default_collate as torch_collate

    _same_structure(default_collate(_samples(gradc)[kind]), torch_collate(_samples(torch)[kind]))


@pytest.mark.parametrize("kind", list(_samples(gradc)))
def test_default_convert_matches_torch(torch, kind):
    from torch.utils.data import default_convert as torch_convert

    _same_structure(default_convert(_samples(gradc)[kind][0]), torch_convert(_samples(torch)[kind][0]))


def test_default_collate_errors():
    with pytest.raises(RuntimeError, match="each element in list of batch should be of equal size"):
        default_collate([[1, 2], [3]])
    with pytest.raises(TypeError, match="batch must contain tensors, numpy arrays, numbers"):
        default_collate([object(), object()])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        default_collate([gradc.zeros(2), gradc.zeros(3)])


def test_tensor_dataset():
    x, y = gradc.arange(12.0).reshape(6, 2), gradc.arange(6)
    ds = TensorDataset(x, y)
    assert len(ds) == 6
    xi, yi = ds[4]
    assert_close(xi, gradc.tensor([8.0, 9.0]))
    assert yi.item() == 4
    with pytest.raises(AssertionError, match="Size mismatch between tensors"):
        TensorDataset(x, gradc.arange(5))


def test_loader_batches_in_order():
    ds = TensorDataset(gradc.arange(10.0).reshape(5, 2), gradc.arange(5))
    loader = DataLoader(ds, batch_size=2)
    batches = list(loader)
    assert len(loader) == len(batches) == 3
    assert all(isinstance(b, list) and len(b) == 2 for b in batches)  # tuples collate to lists
    assert [b[1].tolist() for b in batches] == [[0, 1], [2, 3], [4]]
    assert_close(batches[0][0], gradc.tensor([[0.0, 1.0], [2.0, 3.0]]))


@pytest.mark.parametrize("n,batch,drop_last", [(10, 3, False), (10, 3, True), (9, 3, True), (2, 5, True),
                                               (2, 5, False), (0, 4, False)])
def test_len_and_drop_last_match_torch(torch, n, batch, drop_last):
    ours = DataLoader(TensorDataset(gradc.arange(n)), batch_size=batch, drop_last=drop_last)
    theirs = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.arange(n)), batch_size=batch,
                                         drop_last=drop_last)
    assert len(ours) == len(theirs)
    assert [b[0].tolist() for b in ours] == [b[0].tolist() for b in theirs]


def _per_sample(batch):
    """default_collate, but a different function: the loader must index sample by sample."""
    return default_collate(batch)


@pytest.mark.parametrize("wrap", ["plain", "subset", "random_split", "negative_indices"])
def test_tensor_dataset_batches_equal_per_sample_collation(wrap):
    x = gradc.randn(10, 2, 3, requires_grad=True)
    ds = TensorDataset(x, gradc.arange(10), gradc.rand(10) > 0.5)
    sampler = None
    if wrap == "subset":
        ds = Subset(Subset(ds, [9, 1, 4, 4, 7, 0, 2]), [6, 0, 3, 2, 5, 1])
    elif wrap == "random_split":
        ds = random_split(ds, [0.7, 0.3])[0]
    elif wrap == "negative_indices":
        sampler = [-1, 3, -10, 2, 5]
    fast = list(DataLoader(ds, batch_size=4, sampler=sampler))
    slow = list(DataLoader(ds, batch_size=4, sampler=sampler, collate_fn=_per_sample))
    assert len(fast) == len(slow) > 0
    for f, s in zip(fast, slow):
        assert isinstance(f, list) and len(f) == len(s) == 3
        for a, b in zip(f, s):
            assert a.dtype is b.dtype and a.is_contiguous()
            assert_close(a.detach(), b.detach(), rtol=0, atol=0)
    sum(b[0].sum() for b in fast).backward()
    grad_fast = x.grad.detach().clone()
    x.grad = None
    sum(b[0].sum() for b in slow).backward()
    assert_close(grad_fast, x.grad)


def test_shuffle_is_a_permutation_each_epoch_and_reproducible():
    ds = TensorDataset(gradc.arange(20))
    loader = DataLoader(ds, batch_size=6, shuffle=True)

    def epoch():
        return [i for (b,) in loader for i in b.tolist()]

    gradc.manual_seed(123)
    first, second = epoch(), epoch()
    assert sorted(first) == sorted(second) == list(range(20))
    assert first != second and first != list(range(20))  # reshuffled every epoch
    gradc.manual_seed(123)
    assert epoch() == first and epoch() == second
    gradc.manual_seed(7)
    assert epoch() != first


def test_shuffle_with_drop_last_covers_distinct_samples():
    loader = DataLoader(TensorDataset(gradc.arange(10)), batch_size=4, shuffle=True, drop_last=True)
    seen = [i for (b,) in loader for i in b.tolist()]
    assert len(loader) == 2 and len(seen) == 8 and len(set(seen)) == 8


def test_explicit_generator_is_independent_of_the_global_seed():
    ds = TensorDataset(gradc.arange(8))

    def order(seed):
        gradc.manual_seed(seed)
        loader = DataLoader(ds, batch_size=8, shuffle=True, generator=np.random.default_rng(5))
        return next(iter(loader))[0].tolist()

    assert order(1) == order(2)


def test_dict_samples_and_custom_collate(torch):
    ours = next(iter(DataLoader(Squares(5), batch_size=3)))
    theirs = next(iter(torch.utils.data.DataLoader(Squares(5), batch_size=3)))
    _same_structure(ours, theirs)
    assert ours["sq"].dtype is gradc.float64 and ours["name"] == ["s0", "s1", "s2"]
    loader = DataLoader(Squares(4), batch_size=2, collate_fn=lambda batch: [s["i"] for s in batch])
    assert list(loader) == [[0, 1], [2, 3]]


def test_batch_size_none_yields_converted_samples(torch):
    ours = list(DataLoader(Squares(3), batch_size=None))
    theirs = list(torch.utils.data.DataLoader(Squares(3), batch_size=None))
    assert len(ours) == 3
    for a, b in zip(ours, theirs):
        _same_structure(a, b)
    assert len(DataLoader(Squares(3), batch_size=None)) == 3


def test_custom_samplers():
    ds = TensorDataset(gradc.arange(10))
    loader = DataLoader(ds, batch_size=2, sampler=[9, 7, 5, 3, 1])
    assert [b[0].tolist() for b in loader] == [[9, 7], [5, 3], [1]]
    loader = DataLoader(ds, batch_sampler=[[0, 4], [1, 2, 3]])
    assert [b[0].tolist() for b in loader] == [[0, 4], [1, 2, 3]]
    assert list(BatchSampler(SequentialSampler(range(5)), 2, drop_last=True)) == [[0, 1], [2, 3]]


def test_random_sampler_with_replacement_and_num_samples():
    drawn = list(RandomSampler(range(3), replacement=True, num_samples=50))
    assert len(drawn) == 50 and set(drawn) == {0, 1, 2}
    longer = list(RandomSampler(range(4), num_samples=10))
    assert len(longer) == 10 and sorted(longer[:8]) == sorted(list(range(4)) * 2)
    with pytest.raises(ValueError, match="num_samples should be a positive integer"):
        RandomSampler(range(3), num_samples=0)


def test_loader_argument_errors_match_torch(torch):
    ds = TensorDataset(gradc.arange(4))
    tds = torch.utils.data.TensorDataset(torch.arange(4))
    bad = [
        ({"sampler": [0, 1], "shuffle": True}, "sampler option is mutually exclusive with shuffle"),
        ({"batch_sampler": [[0]], "batch_size": 2}, "batch_sampler option is mutually exclusive"),
        ({"batch_sampler": [[0]], "drop_last": True}, "batch_sampler option is mutually exclusive"),
        ({"batch_size": None, "drop_last": True}, "batch_size=None option disables auto-batching"),
        ({"num_workers": -1}, "num_workers option should be non-negative"),
        ({"batch_size": 0}, "batch_size should be a positive integer value"),
    ]
    for kwargs, message in bad:
        with pytest.raises(ValueError, match=message):
            torch.utils.data.DataLoader(tds, **kwargs)
        with pytest.raises(ValueError, match=message):
            DataLoader(ds, **kwargs)


def test_subset_and_random_split():
    ds = TensorDataset(gradc.arange(10))
    sub = Subset(ds, [8, 2])
    assert len(sub) == 2 and sub[0][0].item() == 8
    parts = random_split(ds, [3, 7])
    assert [len(p) for p in parts] == [3, 7]
    values = sorted(p[i][0].item() for p in parts for i in range(len(p)))
    assert values == list(range(10))
    assert [len(p) for p in random_split(ds, [0.5, 0.25, 0.25])] == [6, 2, 2]  # remainder round-robin
    gradc.manual_seed(3)
    a = [list(p.indices) for p in random_split(ds, [4, 6])]
    gradc.manual_seed(3)
    assert [list(p.indices) for p in random_split(ds, [4, 6])] == a
    with pytest.raises(ValueError, match="Sum of input lengths does not equal"):
        random_split(ds, [3, 3])
    with pytest.warns(UserWarning, match="Length of split at index 1 is 0"):
        random_split(TensorDataset(gradc.arange(1)), [0.5, 0.5])


def test_random_split_lengths_match_torch(torch):
    for lengths in ([0.3, 0.3, 0.4], [0.1, 0.9], [1 / 3] * 3):
        ours = [len(p) for p in random_split(TensorDataset(gradc.arange(11)), lengths)]
        theirs = [len(p) for p in torch.utils.data.random_split(torch.utils.data.TensorDataset(torch.arange(11)),
                                                                lengths)]
        assert ours == theirs


def test_base_dataset_requires_getitem():
    with pytest.raises(NotImplementedError):
        Dataset()[0]


def test_training_loop_over_a_loader():
    """The loader composes with autograd: a few epochs of SGD on a linear fit reduce the loss."""
    x = gradc.randn(32, 3)
    y = x @ gradc.tensor([[1.0], [-2.0], [0.5]])
    w = gradc.zeros(3, 1, requires_grad=True)
    opt = gradc.optim.SGD([w], lr=0.1)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    losses = []
    for _ in range(5):
        total = 0.0
        for xb, yb in loader:
            opt.zero_grad()
            loss = ((xb @ w - yb) ** 2).mean()
            loss.backward()
            opt.step()
            total += loss.item()
        losses.append(total)
    assert losses[-1] < 0.1 * losses[0]
    np.testing.assert_allclose(to_numpy(w).ravel(), [1.0, -2.0, 0.5], atol=0.2)
