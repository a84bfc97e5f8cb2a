"""The tiny LM: an MLP over the embeddings of the previous `context` tokens, with manual backprop and AdamW.

Parameters are a flat dict name -> float32 array so checkpoints and converted models are plain .npz files. float32, as
the fp32 master weights of mixed-precision training: on one CPU core it is 2.4x faster than float64 here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DTYPE = np.float32


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int
    hidden_size: int
    num_layers: int = 1
    context: int = 2  # previous tokens the model sees; the default grammar is order 2

    def as_dict(self) -> dict:
        return asdict(self)


def init_params(config: ModelConfig, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Embedding width = hidden size (as in Megatron); weights scaled 1/sqrt(fan_in) to suit tanh."""
    hidden = config.hidden_size
    params = {"embedding": rng.normal(0.0, 1.0, (config.vocab_size, hidden)).astype(DTYPE)}
    fan_in = config.context * hidden
    for layer in range(config.num_layers):
        params[f"layers.{layer}.weight"] = rng.normal(0.0, fan_in ** -0.5, (fan_in, hidden)).astype(DTYPE)
        params[f"layers.{layer}.bias"] = np.zeros(hidden, DTYPE)
        fan_in = hidden
    params["output.weight"] = rng.normal(0.0, hidden ** -0.5, (hidden, config.vocab_size)).astype(DTYPE)
    params["output.bias"] = np.zeros(config.vocab_size, DTYPE)
    return params


def windows(tokens: np.ndarray, context: int) -> tuple[np.ndarray, np.ndarray]:
    """(contexts, targets) for every position that has `context` previous tokens in its row."""
    length = tokens.shape[1]
    ctx = np.stack([tokens[:, i: length - context + i] for i in range(context)], axis=-1)
    return ctx.reshape(-1, context), tokens[:, context:].reshape(-1)


def _forward(params: dict[str, np.ndarray], config: ModelConfig, ctx: np.ndarray):
    activations = [params["embedding"][ctx].reshape(len(ctx), -1)]
    for layer in range(config.num_layers):
        pre = activations[-1] @ params[f"layers.{layer}.weight"] + params[f"layers.{layer}.bias"]
        activations.append(np.tanh(pre))
    logits = activations[-1] @ params["output.weight"] + params["output.bias"]
    logits = logits - logits.max(axis=1, keepdims=True)  # stable softmax
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    return activations, log_probs


def loss(params: dict[str, np.ndarray], config: ModelConfig, tokens: np.ndarray) -> float:
    """Mean cross-entropy in nats per predicted token."""
    ctx, targets = windows(tokens, config.context)
    _, log_probs = _forward(params, config, ctx)
    return float(-log_probs[np.arange(len(targets)), targets].mean(dtype=np.float64))


def loss_and_grads(params: dict[str, np.ndarray], config: ModelConfig,
                   tokens: np.ndarray) -> tuple[float, dict[str, np.ndarray]]:
    ctx, targets = windows(tokens, config.context)
    count = len(targets)
    activations, log_probs = _forward(params, config, ctx)
    value = float(-log_probs[np.arange(count), targets].mean(dtype=np.float64))

    grads: dict[str, np.ndarray] = {}
    d_logits = np.exp(log_probs)
    d_logits[np.arange(count), targets] -= 1.0
    d_logits /= count
    grads["output.weight"] = activations[-1].T @ d_logits
    grads["output.bias"] = d_logits.sum(axis=0)
    d_act = d_logits @ params["output.weight"].T
    for layer in reversed(range(config.num_layers)):
        d_pre = d_act * (1.0 - activations[layer + 1] ** 2)  # tanh' = 1 - tanh^2
        grads[f"layers.{layer}.weight"] = activations[layer].T @ d_pre
        grads[f"layers.{layer}.bias"] = d_pre.sum(axis=0)
        d_act = d_pre @ params[f"layers.{layer}.weight"].T
    # scatter-add into the embedding rows via a one-hot matmul: deterministic and fast for a small vocabulary
    hidden = config.hidden_size
    one_hot = np.zeros((ctx.size, config.vocab_size), d_act.dtype)
    one_hot[np.arange(ctx.size), ctx.reshape(-1)] = 1.0
    grads["embedding"] = one_hot.T @ d_act.reshape(-1, hidden)
    return value, grads


class AdamW:
    """Adam with decoupled weight decay on matrices (not biases), as Megatron's default optimizer."""

    def __init__(self, params: dict[str, np.ndarray], beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8, weight_decay: float = 0.0) -> None:
        self.beta1, self.beta2, self.eps, self.weight_decay = beta1, beta2, eps, weight_decay
        self.step_count = 0
        self.exp_avg = {name: np.zeros_like(value) for name, value in params.items()}
        self.exp_avg_sq = {name: np.zeros_like(value) for name, value in params.items()}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray], lr: float) -> None:
        self.step_count += 1
        correction1 = 1.0 - self.beta1 ** self.step_count
        correction2 = 1.0 - self.beta2 ** self.step_count
        for name, grad in grads.items():
            m, v = self.exp_avg[name], self.exp_avg_sq[name]
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            if self.weight_decay and not name.endswith("bias"):
                params[name] *= 1.0 - lr * self.weight_decay
            params[name] -= lr * (m / correction1) / (np.sqrt(v / correction2) + self.eps)

    def state(self) -> dict[str, np.ndarray]:
        state = {f"optim/exp_avg/{name}": value for name, value in self.exp_avg.items()}
        state.update({f"optim/exp_avg_sq/{name}": value for name, value in self.exp_avg_sq.items()})
        state["optim/step"] = np.array(self.step_count)
        return state

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        for name in self.exp_avg:
            self.exp_avg[name] = np.array(arrays[f"optim/exp_avg/{name}"])
            self.exp_avg_sq[name] = np.array(arrays[f"optim/exp_avg_sq/{name}"])
        self.step_count = int(arrays["optim/step"])


def clip_grad_norm(grads: dict[str, np.ndarray], max_norm: float) -> float:
    """Scale gradients in place so their global norm is at most max_norm; returns the norm before clipping."""
    norm = float(np.sqrt(sum(float((g * g).sum()) for g in grads.values())))
    if max_norm > 0 and norm > max_norm:
        for grad in grads.values():
            grad *= max_norm / norm
    return norm
