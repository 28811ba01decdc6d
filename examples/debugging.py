"""A small script to point gradc's debugging tools at (README, "Debugging").

It trains a tiny MLP for a few steps with a compiled training step, calls it once with a
different batch size (a recompile: the guard that failed is logged), and compiles a
function whose Python branches on a tensor's value (a graph break: it runs eagerly).
"""
import gradc
import gradc.nn.functional as F
from gradc import nn

gradc.manual_seed(0)
model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 4))
opt = gradc.optim.SGD(model.parameters(), lr=0.1)


@gradc.compile
def train_step(x, y):
    return F.cross_entropy(model(x), y)


@gradc.compile
def clipped(x):
    if x.abs().max().item() > 1.0:  # data-dependent Python: a graph break
        x = x / x.abs().max()
    return x.tanh()


x, y = gradc.randn(64, 16), gradc.randint(0, 4, (64,))
for _ in range(5):
    opt.zero_grad()
    loss = train_step(x, y)
    loss.backward()
    opt.step()
print(f"loss after 5 steps: {loss.item():.4f}")
print(f"last batch of 10: {train_step(x[:10], y[:10]).item():.4f}")
print(f"clipped: {clipped(gradc.randn(8) * 3).sum().item():.4f}")
