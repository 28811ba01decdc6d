"""gradc in one screen: strided views, the autograd tape, and a custom Function.

Run: python examples/demo.py
"""
import gradc
from gradc.autograd import Function

gradc.manual_seed(0)

# Tensors are views over a Storage: a transpose shares memory and only swaps strides.
x = gradc.arange(6, dtype=gradc.float32).reshape(2, 3)
xt = x.T
print("x:", x.shape, "strides", x.stride(), "| x.T:", xt.shape, "strides", xt.stride(),
      "| same storage:", xt.untyped_storage() is x.untyped_storage())

# Every op records a Node on the tape; backward() walks it and accumulates into .grad.
w = gradc.randn(3, 2, requires_grad=True)
b = gradc.zeros(2, requires_grad=True)
logits = x @ w + b
loss = logits.log_softmax(-1)[:, 0].mean().neg()
print("loss:", round(loss.item(), 4), "grad_fn:", loss.grad_fn.name(),
      "-> next:", [n.name() for n, _ in loss.grad_fn.next_functions if n is not None])
loss.backward()
print("dloss/dw:\n", w.grad)


# A custom Function: its grad_fn class is created by a metaclass, as in PyTorch.
class Square(Function):
    @staticmethod
    def forward(ctx, t):
        ctx.save_for_backward(t)
        return t * t

    @staticmethod
    def backward(ctx, grad):
        (t,) = ctx.saved_tensors
        return 2 * t * grad


t = gradc.tensor([1.0, 2.0, 3.0], requires_grad=True)
y = Square.apply(t)
y.sum().backward()
print("Square grad_fn:", type(y.grad_fn).__name__, "| d/dt sum(t^2):", t.grad.tolist())

# Double backward: the backward formulas are themselves gradc ops.
s = gradc.tensor(0.5, dtype=gradc.float64, requires_grad=True)
(ds,) = gradc.autograd.grad(s.tanh(), s, create_graph=True)
(dds,) = gradc.autograd.grad(ds, s)
print(f"tanh'(0.5) = {ds.item():.6f}, tanh''(0.5) = {dds.item():.6f}")
print("gradcheck(softmax):", gradc.autograd.gradcheck(
    lambda a: a.softmax(-1), [gradc.randn(2, 3, dtype=gradc.float64, requires_grad=True)]))
