"""DriftMoE with neural experts: a router MLP co-trained with K small MLPs held as stacked tensors."""

from __future__ import annotations

import logging
import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch

from learners.base import Classifier, Features, Label, validate_batch, validate_y
from learners.features import FeatureSpace, LabelSpace

logger = logging.getLogger(__name__)

_BETA1 = 0.9
_BETA2 = 0.999
_EPS = 1e-8
# logit bias that switches off a padded (not yet seen) class
_NEG = -1e9
# weight of the newest micro-batch in each expert's running accuracy
_ACC_DECAY = 0.05

_EXPERT_PARAMS = ("w1", "b1", "w2", "b2")
_ROUTER_PARAMS = ("r1", "rb1", "r2", "rb2")


def _next_pow2(n: int, floor: int) -> int:
    return max(floor, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


class NeuralDriftMoE(Classifier):
    """DriftMoE with K neural experts.

    PLACEHOLDER DOCSTRING: rewritten once the design is measured.
    """

    registry_name: ClassVar[str] = "driftmoe"

    def __init__(
        self,
        n_experts: int = 8,
        hidden: int = 32,
        router_hidden: int = 32,
        lr: float = 1e-2,
        router_lr: float = 1e-2,
        lr_spread: float = 1.0,
        top_k: int | None = None,
        combine: str = "mixture",
        temperature: float = 1.0,
        batch_size: int = 32,
        standardize: bool = True,
        hash_dim: int | None = None,
        device: str = "auto",
        cuda_graph: bool = False,
        seed: int = 0,
    ) -> None:
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts}")
        if hidden < 1 or router_hidden < 1:
            raise ValueError("hidden and router_hidden must be >= 1")
        if lr <= 0 or router_lr <= 0:
            raise ValueError("lr and router_lr must be > 0")
        if lr_spread < 1.0:
            raise ValueError(f"lr_spread must be >= 1, got {lr_spread}")
        if top_k is not None and top_k < 1:
            raise ValueError(f"top_k must be >= 1 or None, got {top_k}")
        if combine not in ("mixture", "top1"):
            raise ValueError(f"combine must be 'mixture' or 'top1', got {combine!r}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]', got {device!r}")
        self.n_experts = n_experts
        self.hidden = hidden
        self.router_hidden = router_hidden
        self.lr = lr
        self.router_lr = router_lr
        self.lr_spread = lr_spread
        self.top_k = top_k
        self.combine = combine
        self.temperature = temperature
        self.batch_size = batch_size
        self.standardize = standardize
        self.hash_dim = hash_dim
        self.device = device
        self.cuda_graph = cuda_graph
        self.seed = seed
        self._reset()

    # ------------------------------------------------------------------ setup
    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def _reset(self) -> None:
        self._dev = self._resolve_device()
        if self.cuda_graph and self._dev.type != "cuda":
            logger.info("cuda_graph=True ignored: learner runs on %s", self._dev)
        self._features = FeatureSpace(standardize=self.standardize, hash_dim=self.hash_dim)
        self._labels = LabelSpace()
        # CPU generator: the same seed gives the same initial weights on any device
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(self.seed)
        self._d_cap = 0
        self._c_cap = 0
        self._p: dict[str, torch.Tensor] = {}
        self._m: dict[str, torch.Tensor] = {}
        self._v: dict[str, torch.Tensor] = {}
        self._graph: Any = None
        self._n_seen = 0

    def _init_uniform(self, shape: tuple[int, ...], fan_in: int, fan_out: int) -> torch.Tensor:
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        t = torch.rand(shape, generator=self._gen, dtype=torch.float32) * (2 * bound) - bound
        return t.to(self._dev)

    def _expert_lrs(self) -> torch.Tensor:
        k = self.n_experts
        if k == 1 or self.lr_spread == 1.0:
            f = torch.ones(k, dtype=torch.float64)
        else:
            # geometric ladder centred on lr: slow experts for stable concepts, fast for drift
            e = torch.linspace(-0.5, 0.5, k, dtype=torch.float64)
            f = self.lr_spread**e
        return (f * self.lr).to(torch.float32)

    def _shapes(self, dc: int, cc: int) -> dict[str, tuple[int, ...]]:
        k, h, hr = self.n_experts, self.hidden, self.router_hidden
        return {
            "w1": (k, dc, h),
            "b1": (k, h),
            "w2": (k, h, cc),
            "b2": (k, cc),
            "r1": (dc, hr),
            "rb1": (hr,),
            "r2": (hr, k),
            "rb2": (k,),
        }

    def _alloc(self, dc: int, cc: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One flat zeroed buffer and named views into it: the optimiser updates it in one go."""
        shapes = self._shapes(dc, cc)
        flat = torch.zeros(sum(math.prod(s) for s in shapes.values()), device=self._dev)
        views: dict[str, torch.Tensor] = {}
        off = 0
        for name, shape in shapes.items():
            n = math.prod(shape)
            views[name] = flat[off : off + n].view(shape)
            off += n
        return flat, views

    def _lr_buffer(self) -> torch.Tensor:
        """Per-element learning rate laid out like the flat parameter buffer."""
        flat, lr = self._alloc(self._d_cap, self._c_cap)
        lr_k = self._expert_lrs().to(self._dev)
        k = self.n_experts
        for name in _EXPERT_PARAMS:
            lr[name].copy_(lr_k.view((k,) + (1,) * (lr[name].dim() - 1)).expand_as(lr[name]))
        for name in _ROUTER_PARAMS:
            lr[name].fill_(self.router_lr)
        return flat

    def _init_expert(self, j: int, d: int, c: int) -> None:
        """Fresh Glorot weights for expert ``j`` on the real dims; padding stays zero."""
        h = self.hidden
        p = self._p
        p["w1"][j].zero_()
        p["w1"][j, :d] = self._init_uniform((d, h), d, h)
        p["b1"][j].zero_()
        p["w2"][j].zero_()
        p["w2"][j, :, :c] = self._init_uniform((h, c), h, c)
        p["b2"][j].zero_()

    def _build(self, d: int, c: int) -> None:
        """First allocation, once the first batch fixed the initial dim and class count."""
        k, hr = self.n_experts, self.router_hidden
        self._d_cap, self._c_cap = _next_pow2(d, 8), _next_pow2(c, 2)
        self._flat, self._p = self._alloc(self._d_cap, self._c_cap)
        self._mflat, self._m = self._alloc(self._d_cap, self._c_cap)
        self._vflat, self._v = self._alloc(self._d_cap, self._c_cap)
        self._gflat, self._g = self._alloc(self._d_cap, self._c_cap)
        for j in range(k):
            self._init_expert(j, d, c)
        self._p["r1"][:d] = self._init_uniform((d, hr), d, hr)
        self._p["r2"].copy_(self._init_uniform((hr, k), hr, k))
        self._lr = self._lr_buffer()
        self._step = torch.zeros((), dtype=torch.float32, device=self._dev)
        self._acc = torch.full((k,), 0.5, dtype=torch.float32, device=self._dev)
        self._class_bias = torch.full((self._c_cap,), _NEG, device=self._dev)
        self._class_bias[:c] = 0.0

    def _realloc(self, dc: int, cc: int) -> None:
        """Move parameters and optimiser state into bigger buffers, zero-padding new slots."""
        for flat_attr, view_attr in (("_flat", "_p"), ("_mflat", "_m"), ("_vflat", "_v")):
            old = getattr(self, view_attr)
            flat, views = self._alloc(dc, cc)
            for name, t in old.items():
                views[name][tuple(slice(0, s) for s in t.shape)] = t
            setattr(self, flat_attr, flat)
            setattr(self, view_attr, views)
        self._gflat, self._g = self._alloc(dc, cc)
        old_cc = self._c_cap
        self._d_cap, self._c_cap = dc, cc
        self._lr = self._lr_buffer()
        if cc > old_cc:
            self._class_bias = torch.cat(
                [self._class_bias, self._class_bias.new_full((cc - old_cc,), _NEG)]
            )
        self._graph = None

    def _grow(self, d: int, c: int) -> None:
        """Make room for ``d`` inputs and ``c`` classes, keeping weights and optimiser state."""
        if not self._p:
            self._build(d, c)
            return
        if d > self._d_cap or c > self._c_cap:
            dc = self._d_cap if d <= self._d_cap else _next_pow2(d, self._d_cap * 2)
            cc = self._c_cap if c <= self._c_cap else _next_pow2(c, self._c_cap * 2)
            self._realloc(dc, cc)
        # a new class starts with zero output weights; unmask its logit
        self._class_bias[:c] = 0.0

    # ------------------------------------------------------------------ maths
    def _forward(
        self, x: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        p = self._p
        a1 = torch.matmul(x, p["w1"]) + p["b1"].unsqueeze(1)
        h1 = torch.relu(a1)
        logits = torch.bmm(h1, p["w2"]) + (p["b2"] + self._class_bias).unsqueeze(1)
        probs = torch.softmax(logits, dim=2)  # (K, B, C)
        ar = x @ p["r1"] + p["rb1"]
        hr = torch.relu(ar)
        g = hr @ p["r2"] + p["rb2"]  # (B, K) router logits
        return a1, h1, probs, hr, g

    def _combine(self, probs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        if self.combine == "top1":
            best = g.argmax(dim=1)  # (B,)
            return probs[best, torch.arange(probs.shape[1], device=probs.device)]
        w = torch.softmax(g / self.temperature, dim=1)  # (B, K)
        return torch.einsum("bk,kbc->bc", w, probs)

    def _adam(self, grad: torch.Tensor) -> None:
        """Adam on the flat buffer, per-element learning rates: a handful of kernels per step."""
        self._step.add_(1.0)
        bc1 = 1.0 - torch.pow(_BETA1, self._step)
        bc2 = 1.0 - torch.pow(_BETA2, self._step)
        m, v = self._mflat, self._vflat
        m.mul_(_BETA1).add_(grad, alpha=1.0 - _BETA1)
        v.mul_(_BETA2).addcmul_(grad, grad, value=1.0 - _BETA2)
        denom = (v / bc2).sqrt_().add_(_EPS)
        self._flat.addcdiv_(m * self._lr / bc1, denom, value=-1.0)

    def _train_step(self, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor) -> None:
        """One optimiser step for the experts and the router on one micro-batch.

        ``rows`` is 1 for real rows and 0 for padding, so a fixed-size (graph-captured) step
        can take fewer rows. Gradients are derived by hand and written straight into the flat
        gradient buffer: no autograd tape, no host sync, so the step can be captured whole.
        """
        p, gr = self._p, self._g
        k = self.n_experts
        a1, h1, probs, hr, g = self._forward(x)
        n = rows.sum().clamp_min(1.0)
        y_oh = torch.zeros_like(probs[0]).scatter_(1, y.unsqueeze(1), 1.0)  # (B, C)

        # multi-hot mask: expert argmax == y; if none is right, the expert giving y most mass
        correct = (probs.argmax(dim=2) == y.unsqueeze(0)).to(probs.dtype)  # (K, B)
        p_y = (probs * y_oh).sum(dim=2)  # (K, B)
        best = torch.zeros_like(p_y).scatter_(0, p_y.argmax(dim=0, keepdim=True), 1.0)
        none = correct.sum(dim=0, keepdim=True) == 0
        mask = torch.where(none, best, correct)  # (K, B)

        # which experts learn each row: all of them, or the router's top-k
        if self.top_k is None or self.top_k >= k:
            w = (rows / n).unsqueeze(0)
        else:
            top = g.topk(self.top_k, dim=1).indices  # (B, top_k)
            sel = torch.zeros_like(g).scatter_(1, top, 1.0)  # (B, K)
            w = sel.T * (rows / n).unsqueeze(0)
        dlogits = (probs - y_oh) * w.unsqueeze(2)  # (K, B, C): softmax cross-entropy
        torch.bmm(h1.transpose(1, 2), dlogits, out=gr["w2"])
        torch.sum(dlogits, dim=1, out=gr["b2"])
        dh1 = torch.bmm(dlogits, p["w2"].transpose(1, 2)).mul_(a1 > 0)
        torch.matmul(x.T, dh1, out=gr["w1"])
        torch.sum(dh1, dim=1, out=gr["b1"])

        # router: binary cross-entropy against the mask
        dg = (torch.sigmoid(g) - mask.T).mul_((rows / (n * k)).unsqueeze(1))  # (B, K)
        torch.mm(hr.T, dg, out=gr["r2"])
        torch.sum(dg, dim=0, out=gr["rb2"])
        dhr = torch.mm(dg, p["r2"].T).mul_(hr > 0)
        torch.mm(x.T, dhr, out=gr["r1"])
        torch.sum(dhr, dim=0, out=gr["rb1"])

        self._adam(self._gflat)
        acc = (correct * rows.unsqueeze(0)).sum(dim=1) / n
        self._acc.mul_(1.0 - _ACC_DECAY).add_(acc, alpha=_ACC_DECAY)

    # ------------------------------------------------------------------ API
    def _to_tensor(self, z: np.ndarray) -> torch.Tensor:
        out = np.zeros((z.shape[0], self._d_cap), dtype=np.float32)
        out[:, : z.shape[1]] = z
        return torch.from_numpy(out).to(self._dev)

    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        # feature values are validated by the feature space in the same pass that reads them
        if len(X) != len(y):
            validate_batch(X, y)
        for i, label in enumerate(y):
            validate_y(label, f"y[{i}]")
        if not X:
            return
        z = self._features.update_and_transform(X)
        yi = self._labels.update_and_encode(list(y))
        self._grow(z.shape[1], len(self._labels))
        xt = self._to_tensor(z)
        yt = torch.from_numpy(yi).to(self._dev)
        bs = self.batch_size
        for i in range(0, xt.shape[0], bs):
            xb, yb = xt[i : i + bs], yt[i : i + bs]
            rows = torch.ones(xb.shape[0], device=self._dev)
            self._train_step(xb, yb, rows)
        self._n_seen += len(X)

    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]:
        if not self._p or not X:
            validate_batch(X)
            return [{} for _ in X]
        z = self._features.transform(X)
        with torch.inference_mode():
            xt = self._to_tensor(z)
            _, _, probs, _, g = self._forward(xt)
            mix = self._combine(probs, g)[:, : len(self._labels)].to("cpu").numpy()
        labels = self._labels.labels
        return [dict(zip(labels, row.tolist(), strict=True)) for row in mix]

    def predict_many(self, X: Sequence[Features]) -> list[Label | None]:
        if not self._p or not X:
            validate_batch(X)
            return [None for _ in X]
        z = self._features.transform(X)
        with torch.inference_mode():
            xt = self._to_tensor(z)
            _, _, probs, _, g = self._forward(xt)
            idx = self._combine(probs, g)[:, : len(self._labels)].argmax(dim=1).to("cpu")
        labels = self._labels.labels
        return [labels[i] for i in idx.tolist()]

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        raise NotImplementedError

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"n_experts": 3, "hidden": 8, "router_hidden": 8, "batch_size": 8, "device": "cpu"}


__all__ = ["NeuralDriftMoE"]
_ = Hashable
