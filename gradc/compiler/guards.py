"""Guards: what must hold for a compiled entry to be reused.

The key covers grad mode and, for every argument, its Python value (scalars, strings,
None) or, for tensors, shape, strides, dtype, device, requires_grad and which earlier
argument it is (the same tensor passed twice compiles to one buffer). Arguments of any
other type make the call uncompilable (`TypeError`), and the function runs eagerly.

The key is checked on every call, so it is built in one pass from attributes the tensor
already holds (its `Size`, cached strides, dtype and device objects), with no strings
formatted or tuples copied.

When a call misses, `recompile_reason` says in words which guard failed, for the
recompile log line and the function's history: against the existing key closest to the
new one, or, when the key itself is known, the parameter or module guard that no longer
holds.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable

from ..autograd.grad_mode import is_grad_enabled
from ..tensor import Tensor

_SCALARS = (bool, int, float, str, type(None))


def tensor_meta(t: Tensor) -> tuple:
    s = t._storage
    return (t._shape, t.stride(), s.dtype, s.device, t._requires_grad)


def guard_key(args: tuple, kwargs: dict) -> tuple[tuple, list]:
    """The call's guard key and its distinct tensors, in the order capture numbers them."""
    parts: list = [is_grad_enabled(), tuple(kwargs)]
    tensors: list = []
    seen: dict[int, int] = {}
    for i, a in enumerate((*args, *kwargs.values()) if kwargs else args):
        if isinstance(a, Tensor):
            first = seen.setdefault(id(a), i)
            if first == i:
                tensors.append(a)
            parts.append(("T", first, *tensor_meta(a)))
        elif isinstance(a, _SCALARS):
            parts.append((type(a), a))
        else:
            raise TypeError(f"argument of type {type(a).__name__} is not guarded yet")
    return tuple(parts), tensors


def key_check(key: tuple) -> Callable[[tuple], list | None] | None:
    """For a key of positional arguments only: a function of a call's positional
    arguments that returns what `guard_key(args, {})` returns as tensors when its key
    equals `key`, and None otherwise, without building the key (a compiled function's
    fast path checks its last key this way). None for a key with keyword arguments.

    Equal keys mean: the same grad mode and number of arguments; at each tensor position
    a Tensor with equal `tensor_meta`, the same object as the tensor at its recorded first
    position, or, at a first position, none of the earlier tensors; at every other
    position an equal (type, value)."""
    grad, names, parts = key[0], key[1], key[2:]
    if names:
        return None
    count = len(parts)
    tensor_parts, scalar_parts, firsts = [], [], []
    for i, part in enumerate(parts):
        if part[0] == "T":
            first = part[1]
            tensor_parts.append((i, part[2:], first, tuple(firsts) if first == i else None))
            if first == i:
                firsts.append(i)
        else:
            scalar_parts.append((i, part))
    if len(tensor_parts) == 1 and not scalar_parts:
        (position, meta, _, _), = tensor_parts

        def check_one(args: tuple) -> list | None:
            if len(args) != count or is_grad_enabled() != grad:
                return None
            a = args[position]
            return [a] if isinstance(a, Tensor) and tensor_meta(a) == meta else None

        return check_one

    def check(args: tuple) -> list | None:
        if len(args) != count or is_grad_enabled() != grad:
            return None
        for i, part in scalar_parts:
            a = args[i]
            if (type(a), a) != part:
                return None
        tensors = []
        for i, meta, first, earlier in tensor_parts:
            a = args[i]
            if not isinstance(a, Tensor) or tensor_meta(a) != meta:
                return None
            if earlier is None:
                if a is not args[first]:
                    return None
            else:
                for j in earlier:
                    if a is args[j]:
                        return None
                tensors.append(a)
        return tensors

    return check


def recompile_reason(entries: dict, key: tuple, owner=None) -> str:
    """Why `key` compiles anew although `entries` (guard key -> entries with `.externals`
    and `.modules`, as `api.Entry`) is not empty: the first failing guard, in words.
    `owner`, the module whose compiled forward this is (or None), names its parameters."""
    same = entries.get(key)
    if same:
        return stale_guard(same[0].externals, same[0].modules, owner)
    others = [k for k, es in entries.items() if es and k != key]
    if not others:
        return "the parameters or modules of the previous compile were freed"
    return describe_change(closest(others, key), key)


def closest(keys: Iterable[tuple], key: tuple) -> tuple:
    """The key with the fewest guards differing from `key` (the first one on a tie)."""
    return min(keys, key=lambda other: _distance(other, key))


def describe_change(old_key: tuple, new_key: tuple) -> str:
    """The first guard of `old_key` that `new_key` fails, in words (keys from `guard_key`)."""
    if old_key[0] != new_key[0]:
        return f"grad mode changed from {old_key[0]} to {new_key[0]}"
    if old_key[1] != new_key[1]:
        return f"keyword arguments changed from {_names(old_key[1])} to {_names(new_key[1])}"
    if len(old_key) != len(new_key):
        return f"number of arguments changed from {len(old_key) - 2} to {len(new_key) - 2}"
    names = new_key[1]
    positional = len(new_key) - 2 - len(names)
    for i, (old, new) in enumerate(zip(old_key[2:], new_key[2:])):
        if old != new:
            label = f"argument {i}" if i < positional else f"keyword argument {names[i - positional]!r}"
            return _argument_change(label, i, old, new)
    return "no guard changed"


def stale_guard(externals: list, modules: list, owner=None) -> str:
    """The first guard beyond the key that fails: a module called in the other train/eval
    mode, or a captured parameter, buffer or tensor whose metadata changed or that was freed.
    `externals` and `modules` are as `api.Entry` keeps them; `owner` as in `recompile_reason`."""
    for ref, training in modules:
        module = ref()
        if module is None:
            return "a module the function called was freed"
        if module.training != training:
            return f"module {type(module).__name__} changed from {_mode(training)} to {_mode(module.training)} mode"
    for _, ref, meta in externals:
        t = ref()
        if t is None:
            return "a captured tensor was freed"
        now = tensor_meta(t)
        if now != meta:
            return _tensor_change(_captured_name(t, [owner, *(ref() for ref, _ in modules)]), meta, now)
    return "no guard changed"


_TENSOR_FIELDS = ("shape", "strides", "dtype", "device", "requires_grad")


def _argument_change(label: str, index: int, old: tuple, new: tuple) -> str:
    """`old` and `new`: the key parts of the argument at position `index`."""
    if old[0] != new[0]:
        return f"{label} changed from {_kind(old)} to {_kind(new)}"
    if old[0] != "T":
        return f"{label} changed from {old[1]!r} to {new[1]!r}"
    if old[1] != new[1]:  # the position of the first argument that is the same tensor
        if new[1] != index:
            return f"{label} is now the same tensor as argument {new[1]}"
        return f"{label} is no longer the same tensor as argument {old[1]}"
    return _tensor_change(label, old[2:], new[2:])


def _tensor_change(label: str, old: tuple, new: tuple) -> str:
    for name, a, b in zip(_TENSOR_FIELDS, old, new):
        if a != b:
            return f"{label} {name} changed from {_show(a)} to {_show(b)}"
    return f"{label} metadata changed"


def _show(value) -> str:
    if isinstance(value, tuple):  # shapes (`Size`) and strides
        return str(list(value))
    return getattr(value, "name", None) or str(value)  # dtypes by name; devices, booleans as printed


def _kind(part: tuple) -> str:
    if part[0] == "T":
        return "a tensor"
    return "None" if part[1] is None else part[0].__name__


def _names(names: tuple) -> str:
    return "(" + ", ".join(names) + ")"


def _mode(training: bool) -> str:
    return "train" if training else "eval"


def _captured_name(t: Tensor, modules: list) -> str:
    """How a module names the captured tensor `t`, outermost module first (entries that
    are not modules, None included, are skipped)."""
    for module in modules:
        if not hasattr(module, "named_parameters"):
            continue
        for kind, members in (("parameter", module.named_parameters()), ("buffer", module.named_buffers())):
            for name, member in members:
                if member is t:
                    return f"{kind} {name!r}"
    return "a captured tensor"


def _distance(a: tuple, b: tuple) -> tuple[int, int]:
    """(whether the arguments' layout differs, how many guards differ): a tensor's
    metadata fields count one each."""
    if len(a) != len(b) or a[1] != b[1]:
        return (1, 0)
    n = int(a[0] != b[0])
    for x, y in zip(a[2:], b[2:]):
        if x[0] == y[0] == "T":
            n += sum(1 for f, g in zip(x[1:], y[1:]) if f != g)
        else:
            n += int(x != y)
    return (0, n)
