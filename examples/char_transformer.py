"""A tiny causal transformer language model on text that ships with CPython.

The corpus is the documentation in the standard library's `pydoc_data` package. The
loss falls from ln(vocabulary size) as the model learns characters, then words; at
the end it writes a short sample.

Run: python examples/char_transformer.py [--steps N] [--compile]

With --compile the first steps run eagerly and the rest with the training step (model,
loss and backward) compiled by gradc.compile; the run prints both mean step times.
"""
import argparse
import time

import numpy as np
from train_loop import progress

import gradc
import gradc.nn.functional as F
from gradc import nn

TIMED_STEPS = 20  # eager steps before compiling, with --compile


def load_corpus() -> str:
    from pydoc_data.topics import topics

    return "\n".join(topics[k] for k in sorted(topics))


class Block(nn.Module):
    """Pre-LN transformer block: causal self-attention then a 4x GELU MLP, with residuals."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 4 * dim), nn.GELU(), nn.Linear(4 * dim, dim))

    def forward(self, x, causal_mask):
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=causal_mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class CharTransformer(nn.Module):
    def __init__(self, vocab: int, context: int, dim: int = 64, heads: int = 4, layers: int = 2):
        super().__init__()
        self.token = nn.Embedding(vocab, dim)
        self.position = nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.ln = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, vocab)
        self.register_buffer("causal_mask", gradc.ones(context, context, dtype=gradc.bool).triu(1),
                             persistent=False)

    def forward(self, idx):
        t = idx.shape[1]
        x = self.token(idx) + self.position(gradc.arange(t))
        mask = self.causal_mask[:t, :t]
        for block in self.blocks:
            x = block(x, mask)
        return self.head(self.ln(x))


def batches(data: np.ndarray, context: int, batch_size: int):
    """Endless random windows (inputs, next-character targets) from the corpus."""
    rng = gradc.default_generator()
    while True:
        starts = rng.integers(0, len(data) - context - 1, size=batch_size)
        window = np.stack([data[s:s + context + 1] for s in starts])
        yield gradc.from_numpy(window[:, :-1].copy()), gradc.from_numpy(window[:, 1:].copy())


def sample(model, stoi, itos, prompt: str, length: int, context: int) -> str:
    rng = gradc.default_generator()
    idx = [stoi[c] for c in prompt]
    model.eval()
    with gradc.no_grad():
        for _ in range(length):
            logits = model(gradc.tensor([idx[-context:]]))[0, -1]
            probs = F.softmax(logits, dim=-1).numpy().astype(np.float64)
            idx.append(int(rng.choice(len(probs), p=probs / probs.sum())))
    model.train()
    return "".join(itos[i] for i in idx)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--context", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--compile", action="store_true", help="compile the training step after the eager steps "
                        "it is compared with")
    args = parser.parse_args()

    gradc.manual_seed(0)
    text = load_corpus()
    chars = sorted(set(text))
    stoi = {c: i for i, c in enumerate(chars)}
    data = np.array([stoi[c] for c in text], dtype=np.int64)
    model = CharTransformer(len(chars), args.context)
    optimizer = gradc.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.01)
    schedule = gradc.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=args.steps, eta_min=3e-4)
    print(f"{len(text):,} characters, vocabulary {len(chars)}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters")

    def loss_fn(inputs, targets):
        return F.cross_entropy(model(inputs).reshape(-1, len(chars)), targets.reshape(-1))

    eager_steps = min(TIMED_STEPS, args.steps // 2) if args.compile else args.steps
    step_fn, times = loss_fn, {"eager": [], "compiled": []}
    start = time.perf_counter()
    stream = batches(data, args.context, args.batch_size)
    bar = progress(range(args.steps), desc="training")
    for step in bar:
        if step == eager_steps:
            step_fn = gradc.compile(loss_fn)
        inputs, targets = next(stream)
        begin = time.perf_counter()
        loss = step_fn(inputs, targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        schedule.step()
        if step not in (0, eager_steps):  # first calls: warm-up, and capture + C build
            times["eager" if step < eager_steps else "compiled"].append(time.perf_counter() - begin)
        if hasattr(bar, "set_postfix"):
            bar.set_postfix(loss=f"{loss.item():.3f}")
        if step % max(1, args.steps // 6) == 0 or step == args.steps - 1:
            print(f"step {step:4d}  loss {loss.item():.3f}")
    print(f"final loss: {loss.item():.3f} ({time.perf_counter() - start:.1f} s)")
    if args.compile and times["compiled"]:
        eager, compiled = (sum(t) / len(t) for t in times.values())
        print(f"eager step: {eager * 1e3:.1f} ms, compiled step: {compiled * 1e3:.1f} ms ({eager / compiled:.2f}x, "
              f"means over {len(times['eager'])} and {len(times['compiled'])} steps)")
    print("sample:", sample(model, stoi, itos=chars, prompt="The ", length=120, context=args.context))


if __name__ == "__main__":
    main()
