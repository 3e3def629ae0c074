"""DriftMoE with Hoeffding-tree experts, as published (Aspis et al., 2025).

An online mixture of experts: a small MLP router co-trained with a pool of incremental
Hoeffding trees. The router picks the expert that predicts; the experts learn from the true
label; the router learns from a mask marking the experts that were right.

Two variants, both strictly test-then-train, one event at a time:

- :class:`DriftMoEData` (the paper's *MoE-Data*): 12 multi-class trees; the top-1 routed
  expert predicts, the router's top-3 experts learn, the router takes one Adam step on the
  mean BCE against the multi-hot correctness mask every 256 events.
- :class:`DriftMoETask` (the paper's *MoE-Task*): one one-vs-rest binary tree per class.

Shared choices, and where they differ from the reference (CapyMOA) code:

- Experts are River ``HoeffdingTreeClassifier(grace_period=50, delta=1e-7,
  leaf_prediction="nba")``. Their *votes* are read the way MOA's ``getVotesForInstance``
  returns them, unnormalised: the leaf's class counts for a majority-class leaf, and
  prior × ∏ densities for a naive-Bayes leaf (computed in log space; a class with no weight
  in the leaf gets no vote; a degenerate density is skipped as River's naive Bayes does).
  River's ``predict_proba_one`` normalises, which would change the cross-expert
  comparison of the best-vote fallback, so the leaf is read directly. The trees are a
  River subclass whose naive-Bayes-adaptive leaves cache their Gaussian terms as arrays
  (12 votes per event made River's per-term Python loop the bottleneck); they learn as
  River's do. Pickled with ``learners.pickling.dumps_river``, identical trees give identical bytes.
- An expert's predicted class is the argmax of its votes, first index on ties. Labels are
  encoded ``0..C-1`` in first-seen order, so an empty tree (all votes zero) predicts the
  *first label the learner ever saw*, as a fresh MOA tree predicts the header's class 0.
- The router's input is the raw feature vector (no scaling, as in the paper), built by
  ``FeatureSpace(standardize=False)``: numbers as they are, strings one-hot (MOA gives the
  category index instead), a missing feature 0.
- New features and new classes grow the router in place: new input columns and new output
  rows are drawn Xavier-uniform for the grown shape from the learner's own generator, new
  biases are zero, and the Adam moments of the new entries start at zero (the step count
  is shared). A zero input column contributes nothing and gets no gradient, so growing
  only when a feature first appears is the same as having had the column from the start
  with zeros in it. Growth happens at the event that introduces the feature or class, so
  the model does not depend on how the stream is cut into micro-batches.
- The router is a numpy MLP with hand-written backprop and torch's Adam update rule
  (``Adam(lr=2e-3)``, default betas, no weight decay): at batch size 1 it is several times
  faster than torch's per-call overhead allows. Its forward pass for routing and prediction
  is one matrix-vector product per event, so a prediction does not depend on the batch it
  is made in. ``state_dict`` exports the router and its optimiser state as torch tensors.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from river import tree as river_tree
from river.tree.nodes.branch import DTBranch
from river.tree.nodes.htc_nodes import LeafMajorityClass, LeafNaiveBayesAdaptive
from river.tree.splitter import GaussianSplitter
from scipy.special import expit

from learners.base import Classifier, Features, Label, validate_batch, validate_x, validate_y
from learners.features import FeatureSpace, LabelSpace
from learners.pickling import dumps_river, loads_river

logger = logging.getLogger(__name__)

__all__ = ["DriftMoEData", "DriftMoETask", "correctness_mask"]

STATE_VERSION = 1

_H1, _H2 = 256, 128
_DROPOUT = 0.2
_BETA1, _BETA2, _EPS = 0.9, 0.999, 1e-8
_PARAMS = ("w1", "b1", "w2", "b2", "w3", "b3")
_HALF_LOG_TAU = 0.5 * math.log(math.tau)


# --------------------------------------------------------------------------- router
def _xavier(
    rng: np.random.Generator, fan_out: int, fan_in: int, cols: int | None = None
) -> np.ndarray:
    """Xavier-uniform block for a ``(fan_out, fan_in)`` layer; ``cols`` draws only that many columns."""
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    shape = (fan_out, fan_in if cols is None else cols)
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


class _Router:
    """``Linear(d,256) → ReLU → Dropout(0.2) → Linear(256,128) → ReLU → Linear(128,E)`` + Adam."""

    def __init__(self, d: int, n_out: int, lr: float, rng: np.random.Generator) -> None:
        self.lr = lr
        self.p: dict[str, np.ndarray] = {
            "w1": _xavier(rng, _H1, d),
            "b1": np.zeros(_H1, np.float32),
            "w2": _xavier(rng, _H2, _H1),
            "b2": np.zeros(_H2, np.float32),
            "w3": _xavier(rng, n_out, _H2),
            "b3": np.zeros(n_out, np.float32),
        }
        self.m = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.v = {k: np.zeros_like(v) for k, v in self.p.items()}
        self.steps = 0

    @property
    def d(self) -> int:
        return self.p["w1"].shape[1]

    @property
    def n_out(self) -> int:
        return self.p["w3"].shape[0]

    # ---- growth
    def grow_inputs(self, d: int, rng: np.random.Generator) -> None:
        extra = d - self.d
        if extra <= 0:
            return
        self.p["w1"] = np.concatenate([self.p["w1"], _xavier(rng, _H1, d, cols=extra)], axis=1)
        for mom in (self.m, self.v):
            mom["w1"] = np.concatenate([mom["w1"], np.zeros((_H1, extra), np.float32)], axis=1)

    def grow_outputs(self, n_out: int, rng: np.random.Generator) -> None:
        extra = n_out - self.n_out
        if extra <= 0:
            return
        bound = math.sqrt(6.0 / (_H2 + n_out))
        rows = rng.uniform(-bound, bound, size=(extra, _H2)).astype(np.float32)
        self.p["w3"] = np.concatenate([self.p["w3"], rows])
        self.p["b3"] = np.concatenate([self.p["b3"], np.zeros(extra, np.float32)])
        for mom in (self.m, self.v):
            mom["w3"] = np.concatenate([mom["w3"], np.zeros((extra, _H2), np.float32)])
            mom["b3"] = np.concatenate([mom["b3"], np.zeros(extra, np.float32)])

    # ---- compute
    def logits(self, x: np.ndarray, keep: np.ndarray | None = None) -> np.ndarray:
        """Logits of one event; ``keep`` is the dropout scale vector (0 or 1/(1-p)), None in eval mode."""
        p = self.p
        h = p["w1"] @ x
        h += p["b1"]
        np.maximum(h, 0.0, out=h)
        if keep is not None:
            h *= keep
        h2 = p["w2"] @ h
        h2 += p["b2"]
        np.maximum(h2, 0.0, out=h2)
        out = p["w3"] @ h2
        out += p["b3"]
        return out

    def step(self, X: np.ndarray, T: np.ndarray, keep: np.ndarray | None = None) -> float:
        """One Adam step on the mean BCE-with-logits of ``X`` against the 0/1 targets ``T``."""
        p = self.p
        z1 = X @ p["w1"].T + p["b1"]
        a1 = np.maximum(z1, 0.0)
        if keep is not None:
            a1 = a1 * keep
        z2 = a1 @ p["w2"].T + p["b2"]
        a2 = np.maximum(z2, 0.0)
        z3 = a2 @ p["w3"].T + p["b3"]
        loss = float(np.mean(np.maximum(z3, 0.0) - z3 * T + np.log1p(np.exp(-np.abs(z3)))))
        g3 = ((expit(z3) - T) / np.float32(T.size)).astype(np.float32)
        d2 = g3 @ p["w3"]
        d2 *= z2 > 0
        d1 = d2 @ p["w2"]
        if keep is not None:
            d1 *= keep
        d1 *= z1 > 0
        grads = {
            "w3": g3.T @ a2,
            "b3": g3.sum(0),
            "w2": d2.T @ a1,
            "b2": d2.sum(0),
            "w1": d1.T @ X,
            "b1": d1.sum(0),
        }
        self.steps += 1
        t = self.steps
        step_size = self.lr / (1.0 - _BETA1**t)
        bc2_sqrt = math.sqrt(1.0 - _BETA2**t)
        for k in _PARAMS:
            g = grads[k].astype(np.float32, copy=False)
            m, v = self.m[k], self.v[k]
            m += (g - m) * np.float32(1.0 - _BETA1)
            v *= np.float32(_BETA2)
            v += np.float32(1.0 - _BETA2) * g * g
            denom = np.sqrt(v) / np.float32(bc2_sqrt)
            denom += np.float32(_EPS)
            p[k] -= np.float32(step_size) * m / denom
        return loss

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"steps": self.steps}
        for k in _PARAMS:
            out[k] = torch.from_numpy(self.p[k].copy())
            out[f"adam_m.{k}"] = torch.from_numpy(self.m[k].copy())
            out[f"adam_v.{k}"] = torch.from_numpy(self.v[k].copy())
        return out

    @classmethod
    def from_state(cls, state: Mapping[str, Any], lr: float) -> _Router:
        r = cls.__new__(cls)
        r.lr = lr
        r.steps = int(state["steps"])

        def arr(t: Any) -> np.ndarray:
            a = t.detach().cpu().numpy() if isinstance(t, torch.Tensor) else np.asarray(t)
            return np.ascontiguousarray(a, dtype=np.float32).copy()

        r.p = {k: arr(state[k]) for k in _PARAMS}
        r.m = {k: arr(state[f"adam_m.{k}"]) for k in _PARAMS}
        r.v = {k: arr(state[f"adam_v.{k}"]) for k in _PARAMS}
        return r


# --------------------------------------------------------------------------- experts
class _NBTerms:
    """A leaf's naive-Bayes terms, read once from River's estimators and kept until it learns.

    For a numeric feature *j* and class *i* with a usable Gaussian, the log density of ``v``
    is ``(v - mu) ** 2 * coef + lognorm`` with ``coef = -1 / (2 var)``; an unusable one
    (unseen class, fewer than 2 values, zero variance) has all three at 0, so it adds
    nothing, which is how River's naive Bayes skips a zero density.
    """

    __slots__ = (
        "atts",
        "classes",
        "coef",
        "dirty",
        "gauss_cols",
        "index",
        "lognorm",
        "logprior",
        "mu",
        "nominal",
        "rows",
        "splitters",
        "weights",
    )

    def __init__(self, stats: Mapping[Any, float], splitters: dict[Any, Any]) -> None:
        self.splitters = splitters
        self.classes = list(stats)
        self.index = {c: i for i, c in enumerate(self.classes)}
        self.weights = np.array([stats[c] for c in self.classes], dtype=np.float64)
        atts = list(splitters)
        gauss = [a for a in atts if isinstance(splitters[a], GaussianSplitter)]
        self.atts = gauss
        self.gauss_cols = [splitters[a] for a in gauss]
        self.nominal = [
            (a, splitters[a]) for a in atts if not isinstance(splitters[a], GaussianSplitter)
        ]
        shape = (len(self.classes), len(gauss))
        self.mu = np.zeros(shape)
        self.coef = np.zeros(shape)
        self.lognorm = np.zeros(shape)
        self.rows: list[list[tuple[Any, float, float, float]]] = [[] for _ in self.classes]
        self.logprior = np.zeros(len(self.classes))
        self.dirty = set(range(len(self.classes)))
        self.refresh()

    def refresh(self) -> None:
        n_att = len(self.gauss_cols)
        for i in self.dirty:
            c = self.classes[i]
            row: list[tuple[Any, float, float, float]] = []
            mus, coefs, lognorms = [0.0] * n_att, [0.0] * n_att, [0.0] * n_att
            for j, spl in enumerate(self.gauss_cols):
                g = spl._att_dist_per_class.get(c)
                if g is not None:
                    v = g._var
                    n = v.mean.n
                    if n > v.ddof:
                        variance = v._S / (n - v.ddof)
                        if variance > 0.0:
                            mu = mus[j] = v.mean._mean
                            coef = coefs[j] = -0.5 / variance
                            lognorm = lognorms[j] = -_HALF_LOG_TAU - 0.5 * math.log(variance)
                            row.append((self.atts[j], mu, coef, lognorm))
            # whole rows at once: numpy's per-element writes cost more than the reads
            self.mu[i] = mus
            self.coef[i] = coefs
            self.lognorm[i] = lognorms
            self.rows[i] = row
        self.dirty.clear()
        total = self.weights.sum()
        with np.errstate(divide="ignore", invalid="ignore"):
            self.logprior = (
                np.log(self.weights / total) if total > 0 else np.full(len(self.classes), -np.inf)
            )

    def log_votes(self, x: Mapping[str, Any], moa: bool) -> np.ndarray:
        """Per-class log prior + Σ log p(x_j | class) over the features present in ``x``.

        A class with no weight gets a log vote of -inf (MOA: a vote of 0) when ``moa``, else
        0 (River's naive Bayes gives it a vote of 1).
        """
        n_cls, n_att = self.mu.shape
        if n_cls * n_att <= 48:
            # small leaves: plain Python beats numpy's per-call overhead
            out = []
            for i in range(n_cls):
                if self.weights[i] <= 0:
                    out.append(-math.inf if moa else 0.0)
                    continue
                s = float(self.logprior[i])
                for att, mu, coef, lognorm in self.rows[i]:
                    v = x.get(att)
                    if v is not None:
                        s += (v - mu) ** 2 * coef + lognorm
                out.append(s)
            s_arr = np.array(out)
        else:
            if all(a in x for a in self.atts):
                xa = np.array([x[a] for a in self.atts], dtype=np.float64)
                lp = (xa - self.mu) ** 2
                lp *= self.coef
                lp += self.lognorm
            else:
                xa = np.array([x.get(a, 0.0) for a in self.atts], dtype=np.float64)
                present = np.array([a in x for a in self.atts])
                lp = np.where(present, (xa - self.mu) ** 2 * self.coef + self.lognorm, 0.0)
            s_arr = lp.sum(axis=1) + self.logprior
            s_arr[self.weights <= 0] = -np.inf if moa else 0.0
        for att, spl in self.nominal:
            if att not in x:
                continue
            for i, c in enumerate(self.classes):
                if self.weights[i] > 0:
                    s_arr[i] += _generic_log_proba(spl, x[att], c)
        return s_arr


class _NBALeaf(LeafNaiveBayesAdaptive):
    """River's naive-Bayes-adaptive leaf with its naive-Bayes terms cached.

    Same learning as River's leaf. A leaf is voted on many times between updates (12
    experts vote per event, 3 learn), so its Gaussian parameters are read once and reused;
    after it learns, only the learned class's terms are re-read. The cache is not part of
    the pickled state.
    """

    _nbc: _NBTerms | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_nbc", None)
        return state

    def terms(self) -> _NBTerms:
        t = self._nbc
        # a leaf deactivated and reactivated by memory management gets a new splitter dict
        if t is None or t.splitters is not self.splitters:
            t = self._nbc = _NBTerms(self.stats, self.splitters)
        elif t.dirty:
            t.refresh()
        return t

    def uses_nb(self) -> bool:
        return self.is_active() and self._nb_correct_weight >= self._mc_correct_weight

    def learn_one(self, x, y, *, w=1.0, tree=None):  # type: ignore[no-untyped-def]
        if self.is_active():
            stats = self.stats
            # River's majority-class prediction normalises a deep copy; its argmax is this
            if len(stats) == 0 or max(stats, key=stats.get) == y:
                self._mc_correct_weight += w
            if self.stats and sum(self.stats.values()) > 0:
                t = self.terms()
                if t.classes[int(np.argmax(t.log_votes(x, moa=False)))] == y:
                    self._nb_correct_weight += w
        n_splitters = len(self.splitters) if self.splitters is not None else -1
        LeafMajorityClass.learn_one(self, x, y, w=w, tree=tree)
        t = self._nbc
        if t is None:
            return
        i = t.index.get(y)
        if i is None or t.splitters is not self.splitters or len(self.splitters) != n_splitters:
            self._nbc = None
        else:
            t.weights[i] = self.stats[y]
            t.dirty.add(i)


def _generic_log_proba(spl: Any, value: Any, c: Any) -> float:
    log_proba = getattr(spl, "cond_log_proba", None)
    if log_proba is not None:
        lp = log_proba(value, c)
    else:
        pr = spl.cond_proba(value, c)
        lp = math.log(pr) if pr > 0 else -math.inf
    return lp if lp > -math.inf else 0.0


class _ExpertTree(river_tree.HoeffdingTreeClassifier):
    """River's Hoeffding tree whose naive-Bayes-adaptive leaves cache their terms."""

    def _new_leaf(self, initial_stats=None, parent=None):  # type: ignore[no-untyped-def]
        leaf = super()._new_leaf(initial_stats, parent)
        if type(leaf) is LeafNaiveBayesAdaptive:
            fast = _NBALeaf.__new__(_NBALeaf)
            fast.__dict__.update(leaf.__dict__)
            return fast
        return leaf


def _new_tree(grace_period: int, delta: float) -> river_tree.HoeffdingTreeClassifier:
    return _ExpertTree(grace_period=grace_period, delta=delta, leaf_prediction="nba")


def _log_votes(ht: river_tree.HoeffdingTreeClassifier, x: Features, n_classes: int) -> np.ndarray:
    """Log of the tree's unnormalised MOA-style votes for ``x`` over classes ``0..n_classes-1``.

    -inf stands for a zero vote. Logs keep naive-Bayes products from under- or overflowing
    and compare across experts exactly as the raw votes would.
    """
    out = np.full(n_classes, -np.inf)
    root = ht._root
    if root is None:
        return out
    leaf = root.traverse(x, until_leaf=True) if isinstance(root, DTBranch) else root
    stats = leaf.stats
    if isinstance(leaf, _NBALeaf) and leaf.uses_nb():
        if sum(stats.values()) <= 0:
            return out
        t = leaf.terms()
        for c, v in zip(t.classes, t.log_votes(x, moa=True), strict=True):
            if c < n_classes:
                out[c] = v
        return out
    for c, w in stats.items():
        if w > 0 and c < n_classes:
            out[c] = math.log(w)
    return out


def correctness_mask(log_votes: np.ndarray, cls: int) -> np.ndarray:
    """The router's target: 1 for every expert whose argmax vote is ``cls``.

    ``log_votes`` is ``(n_experts, n_classes)``. When no expert is right, the one expert
    with the largest (raw, unnormalised) vote for ``cls`` is marked instead, the first on
    ties; with no votes at all that is expert 0, as in the reference code.
    """
    mask = (log_votes.argmax(axis=1) == cls).astype(np.float32)
    if not mask.any():
        mask[int(log_votes[:, cls].argmax())] = 1.0
    return mask


def _normalise_log_votes(lv: np.ndarray) -> np.ndarray:
    """Votes → probabilities; no votes at all → uniform (the argmax stays index 0)."""
    top = lv.max()
    if not np.isfinite(top):
        return np.full(lv.shape[0], 1.0 / lv.shape[0])
    e = np.exp(lv - top)
    return e / e.sum()


# --------------------------------------------------------------------------- RNG state
def _rng_state(rng: np.random.Generator) -> np.ndarray:
    s = rng.bit_generator.state
    mask = (1 << 64) - 1
    st, inc = s["state"]["state"], s["state"]["inc"]
    return np.array(
        [st >> 64, st & mask, inc >> 64, inc & mask, s["has_uint32"], s["uinteger"]],
        dtype=np.uint64,
    )


def _rng_from_state(a: Any) -> np.random.Generator:
    v = [int(i) for i in np.asarray(a, dtype=np.uint64)]
    rng = np.random.Generator(np.random.PCG64())
    rng.bit_generator.state = {
        "bit_generator": "PCG64",
        "state": {"state": (v[0] << 64) | v[1], "inc": (v[2] << 64) | v[3]},
        "has_uint32": v[4],
        "uinteger": v[5],
    }
    return rng


def _clone_rng(rng: np.random.Generator) -> np.random.Generator:
    return _rng_from_state(_rng_state(rng))


# --------------------------------------------------------------------------- shared base
class _DriftMoEBase(Classifier):
    """Feature and label spaces, router growth, validation and state shared by both variants."""

    _kind: ClassVar[str] = ""

    def __init__(self, lr: float, grace_period: int, delta: float, seed: int) -> None:
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr!r}")
        if grace_period < 1:
            raise ValueError(f"grace_period must be >= 1, got {grace_period!r}")
        if not 0 < delta < 1:
            raise ValueError(f"delta must be in (0, 1), got {delta!r}")
        self.lr = lr
        self.grace_period = grace_period
        self.delta = delta
        self.seed = seed

    def _params(self) -> dict[str, Any]:
        raise NotImplementedError

    def _reset(self) -> None:
        self._features = FeatureSpace(standardize=False)
        self._labels = LabelSpace()
        # keys the feature space already has a column for: lets an event skip update()
        self._known_num: set[str] = set()
        self._known_cat: set[tuple[str, str]] = set()
        seq = np.random.SeedSequence(self.seed)
        init_seq, drop_seq = seq.spawn(2)
        self._init_rng = np.random.Generator(np.random.PCG64(init_seq))
        self._drop_rng = np.random.Generator(np.random.PCG64(drop_seq))
        self._router: _Router | None = None
        self._experts: list[river_tree.HoeffdingTreeClassifier] = []
        self._n_learned = 0

    # ---- input handling
    def _register(self, X: Sequence[Features]) -> list[int]:
        """Add the columns ``X`` introduces; the feature-space width after each event."""
        widths: list[int] = []
        fs = self._features
        for x in X:
            new = False
            for k, v in x.items():
                if isinstance(v, str):
                    if (k, v) not in self._known_cat:
                        self._known_cat.add((k, v))
                        new = True
                elif k not in self._known_num:
                    self._known_num.add(k)
                    new = True
            if new:
                fs.update([x])
            widths.append(fs.dim)
        return widths

    def _matrix(self, X: Sequence[Features]) -> np.ndarray:
        """``X`` as raw feature rows as wide as the router's input."""
        M = self._features.transform(X)
        d = self._router.d if self._router is not None else M.shape[1]
        if M.shape[1] < d:
            M = np.pad(M, ((0, 0), (0, d - M.shape[1])))
        return np.ascontiguousarray(M[:, :d])

    # ---- verbs
    def learn_one(self, x: Features, y: Label) -> None:
        validate_x(x)
        y = validate_y(y)
        self._learn([x], [y])

    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        validate_batch(X, y)
        self._learn(list(X), [validate_y(v) for v in y])

    def _learn(self, X: list[Features], y: list[Label]) -> None:
        if not X:
            return
        widths = self._register(X)
        M = self._features.transform(X)
        for i, (x, label) in enumerate(zip(X, y, strict=True)):
            self._labels.update([label])
            cls = int(self._labels.encode([label])[0])
            self._learn_event(x, M[i, : widths[i]], cls)
            self._n_learned += 1

    def _learn_event(self, x: Features, v: np.ndarray, cls: int) -> None:
        raise NotImplementedError

    def _ensure_router(self, d: int, n_out: int) -> _Router:
        if self._router is None:
            self._router = _Router(d, n_out, self.lr, self._init_rng)
        else:
            self._router.grow_inputs(d, self._init_rng)
            self._router.grow_outputs(n_out, self._init_rng)
        return self._router

    def predict_one(self, x: Features) -> Label | None:
        validate_x(x)
        return self._labels_of([x])[0]

    def predict_proba_one(self, x: Features) -> dict[Label, float]:
        validate_x(x)
        return self._probas_of([x])[0]

    def predict_many(self, X: Sequence[Features]) -> list[Label | None]:
        validate_batch(X)
        return self._labels_of(list(X))

    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]:
        validate_batch(X)
        return self._probas_of(list(X))

    def _labels_of(self, X: list[Features]) -> list[Label | None]:
        if self._router is None or not X:
            return [None] * len(X)
        labels = self._labels.labels
        return [labels[c] for c, _ in self._predict(X)]

    def _probas_of(self, X: list[Features]) -> list[dict[Label, float]]:
        if self._router is None or not X:
            return [{} for _ in X]
        labels = self._labels.labels
        return [
            {lab: float(p) for lab, p in zip(labels, proba, strict=True)}
            for _, proba in self._predict(X)
        ]

    def _predict(self, X: list[Features]) -> list[tuple[int, np.ndarray]]:
        """(class index, probabilities over all known classes) per row; never mutates."""
        raise NotImplementedError

    # ---- state
    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": self._kind,
            "version": STATE_VERSION,
            "params": self._params(),
            "features": self._features.state_dict(),
            "labels": self._labels.state_dict(),
            "known_num": sorted(self._known_num),
            "known_cat": sorted([k, v] for k, v in self._known_cat),
            "init_rng": _rng_state(self._init_rng),
            "drop_rng": _rng_state(self._drop_rng),
            "router": None if self._router is None else self._router.state_dict(),
            # River trees have no state export but pickle; the runtime signs the snapshot
            "experts": [dumps_river(e) for e in self._experts],
            "n_learned": self._n_learned,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if state.get("kind") != self._kind:
            raise ValueError(f"state is for {state.get('kind')!r}, not {self._kind!r}")
        if int(state.get("version", -1)) != STATE_VERSION:
            raise ValueError(f"state version {state.get('version')!r} != {STATE_VERSION}")
        for name, value in state["params"].items():
            mine = self._params().get(name)
            if mine != value:
                raise ValueError(f"state has {name}={value!r} but this learner has {name}={mine!r}")
        self._reset()
        self._features.load_state_dict(state["features"])
        self._labels.load_state_dict(state["labels"])
        self._known_num = {str(k) for k in state["known_num"]}
        self._known_cat = {(str(k), str(v)) for k, v in state["known_cat"]}
        self._init_rng = _rng_from_state(state["init_rng"])
        self._drop_rng = _rng_from_state(state["drop_rng"])
        r = state["router"]
        self._router = None if r is None else _Router.from_state(r, self.lr)
        self._experts = [loads_river(b) for b in state["experts"]]
        self._n_learned = int(state["n_learned"])

    @property
    def n_learned(self) -> int:
        """Events learned so far."""
        return self._n_learned

    @property
    def router_steps(self) -> int:
        """Optimiser steps the router has taken."""
        return 0 if self._router is None else self._router.steps


# --------------------------------------------------------------------------- MoE-Data
class DriftMoEData(_DriftMoEBase):
    """DriftMoE *MoE-Data*: multi-class Hoeffding-tree experts, hard top-1 routing.

    Per event, test-then-train:

    1. the router (eval mode: dropout off) gives logits and ``w = softmax(logits / T)``;
    2. every expert votes; ``pred_i`` is the argmax of expert *i*'s votes;
    3. the mask is ``m_i = [pred_i == y]``, or, when no expert is right, one-hot at the
       expert with the largest vote for ``y`` (raw votes compared across experts);
    4. the prediction is ``pred_{argmax w}``;
    5. the event's ``(x, m)`` is kept; every ``router_batch`` events the router takes one
       Adam step on the mean BCE over those events (the logits are recomputed then: the
       router does not change between steps, so the gradient is the same as keeping
       each event's graph);
    6. the ``top_k`` experts by ``w`` learn ``(x, y)``; the others are untouched.

    There is no drift detector, reset or pruning: the router moving and the experts
    learning are the only adaptation, as in the paper.

    ``predict_proba_*`` returns the routed expert's normalised votes (uniform for an empty
    expert), so its argmax is the prediction.

    Parameters
    ----------
    n_experts
        Number of tree experts (12 in the paper).
    top_k
        Experts trained per event, by routing weight (3).
    router_batch
        Events per router step (256).
    lr
        Adam learning rate (2e-3).
    temperature
        Softmax temperature of the routing weights (0.8); it never changes a ranking.
    grace_period, delta
        Hoeffding-tree grace period (50) and split confidence (1e-7).
    seed
        Seeds the router's initial weights.
    """

    registry_name: ClassVar[str] = "driftmoe-ht-data"
    _kind: ClassVar[str] = "driftmoe-ht-data"

    def __init__(
        self,
        n_experts: int = 12,
        top_k: int = 3,
        router_batch: int = 256,
        lr: float = 2e-3,
        temperature: float = 0.8,
        grace_period: int = 50,
        delta: float = 1e-7,
        seed: int = 0,
    ) -> None:
        super().__init__(lr=lr, grace_period=grace_period, delta=delta, seed=seed)
        if n_experts < 1:
            raise ValueError(f"n_experts must be >= 1, got {n_experts!r}")
        if not 1 <= top_k <= n_experts:
            raise ValueError(f"top_k must be in 1..n_experts={n_experts}, got {top_k!r}")
        if router_batch < 1:
            raise ValueError(f"router_batch must be >= 1, got {router_batch!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        self.n_experts = n_experts
        self.top_k = top_k
        self.router_batch = router_batch
        self.temperature = temperature
        self._reset()

    def _params(self) -> dict[str, Any]:
        return {
            "n_experts": self.n_experts,
            "top_k": self.top_k,
            "router_batch": self.router_batch,
            "lr": self.lr,
            "temperature": self.temperature,
            "grace_period": self.grace_period,
            "delta": self.delta,
            "seed": self.seed,
        }

    def _reset(self) -> None:
        super()._reset()
        self._experts = [_new_tree(self.grace_period, self.delta) for _ in range(self.n_experts)]
        self._buf_x: list[np.ndarray] = []
        self._buf_mask: list[np.ndarray] = []
        self._expert_updates = np.zeros(self.n_experts, dtype=np.int64)

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"n_experts": 4, "top_k": 2, "router_batch": 16, "grace_period": 10}

    def _weights(self, logits: np.ndarray) -> np.ndarray:
        z = logits / np.float32(self.temperature)
        e = np.exp(z - z.max())
        return e / e.sum()

    def _learn_event(self, x: Features, v: np.ndarray, cls: int) -> None:
        router = self._ensure_router(v.shape[0], self.n_experts)
        if v.shape[0] < router.d:
            v = np.pad(v, (0, router.d - v.shape[0]))
        w = self._weights(router.logits(v))
        n_classes = len(self._labels)
        votes = np.stack([_log_votes(e, x, n_classes) for e in self._experts])
        mask = correctness_mask(votes, cls)
        self._buf_x.append(v)
        self._buf_mask.append(mask)
        if len(self._buf_x) >= self.router_batch:
            self._router_step()
        for i in np.argsort(-w, kind="stable")[: self.top_k]:
            self._experts[i].learn_one(x, cls)
            self._expert_updates[i] += 1

    def _router_step(self) -> None:
        assert self._router is not None
        d = self._router.d
        X = np.zeros((len(self._buf_x), d), np.float32)
        for i, row in enumerate(self._buf_x):
            X[i, : row.shape[0]] = row
        loss = self._router.step(X, np.stack(self._buf_mask))
        self._buf_x.clear()
        self._buf_mask.clear()
        logger.debug("router step %d: loss=%.5f", self._router.steps, loss)

    def _predict(self, X: list[Features]) -> list[tuple[int, np.ndarray]]:
        assert self._router is not None
        M = self._matrix(X)
        n_classes = len(self._labels)
        out = []
        for x, v in zip(X, M, strict=True):
            e = int(self._weights(self._router.logits(v)).argmax())
            lv = _log_votes(self._experts[e], x, n_classes)
            out.append((int(lv.argmax()), _normalise_log_votes(lv)))
        return out

    @property
    def expert_updates(self) -> np.ndarray:
        """How many events each expert has learned."""
        return self._expert_updates.copy()

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        d = 0 if self._router is None else self._router.d
        buf = np.zeros((len(self._buf_x), d), np.float32)
        for i, row in enumerate(self._buf_x):
            buf[i, : row.shape[0]] = row
        state["buffer_x"] = torch.from_numpy(buf)
        state["buffer_mask"] = torch.from_numpy(
            np.stack(self._buf_mask)
            if self._buf_mask
            else np.zeros((0, self.n_experts), np.float32)
        )
        state["expert_updates"] = torch.from_numpy(self._expert_updates.copy())
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        super().load_state_dict(state)
        self._buf_x = [np.array(r, dtype=np.float32) for r in state["buffer_x"].numpy()]
        self._buf_mask = [np.array(r, dtype=np.float32) for r in state["buffer_mask"].numpy()]
        self._expert_updates = state["expert_updates"].numpy().astype(np.int64).copy()


# --------------------------------------------------------------------------- MoE-Task
class DriftMoETask(_DriftMoEBase):
    """DriftMoE *MoE-Task*: one one-vs-rest binary Hoeffding tree per class.

    The default reproduces the published code, which reduces to an online MLP classifier:

    - the mask is always one-hot(y) (the code's "expert says positive and is the true
      class, else the true class" rule), whatever the experts say;
    - the router stays in train mode: dropout 0.2 is active for the prediction too;
    - the prediction is ``argmax(router logits)`` taken as the class index;
    - the router takes one Adam step per event on BCE(logits, one-hot(y));
    - every expert learns every event with the binary label ``[y == i]``.

    The trees never reach the prediction in the published code, and this default
    reproduces that (so they are trained but not queried).

    Dropout at prediction: the masks come from the learner's own generator, one 256-wide
    draw per learned event. ``predict_*`` draws from a *copy* of it, so the *i*-th row of a
    prediction call gets exactly the mask that learning the *i*-th next event will use: a
    predict-then-learn pass over an event (or micro-batch) scores the prediction with the
    same dropout sample as the paper's single forward pass, and predicting changes nothing.

    Deviation, off by default: ``task_experts_shape_prediction=True`` makes the trees
    matter. The mask marks the experts right on their own one-vs-rest question,
    ``m_i = [expert i says positive == (y == i)]``, and the prediction is
    ``argmax_i sigmoid(logit_i) · P_i(positive)`` (the router's trust times the expert's
    vote), falling back to ``argmax(logits)`` when no expert gives any positive vote.

    A class first seen mid-stream gets a fresh expert and a new router output.

    Parameters
    ----------
    lr
        Adam learning rate (2e-3).
    grace_period, delta
        Hoeffding-tree grace period (50) and split confidence (1e-7).
    task_experts_shape_prediction
        The deviation above.
    seed
        Seeds the router's initial weights and its dropout masks.
    """

    registry_name: ClassVar[str] = "driftmoe-ht-task"
    _kind: ClassVar[str] = "driftmoe-ht-task"

    def __init__(
        self,
        lr: float = 2e-3,
        grace_period: int = 50,
        delta: float = 1e-7,
        task_experts_shape_prediction: bool = False,
        seed: int = 0,
    ) -> None:
        super().__init__(lr=lr, grace_period=grace_period, delta=delta, seed=seed)
        self.task_experts_shape_prediction = bool(task_experts_shape_prediction)
        self._reset()

    def _params(self) -> dict[str, Any]:
        return {
            "lr": self.lr,
            "grace_period": self.grace_period,
            "delta": self.delta,
            "task_experts_shape_prediction": self.task_experts_shape_prediction,
            "seed": self.seed,
        }

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"grace_period": 10}

    @staticmethod
    def _keep(rng: np.random.Generator) -> np.ndarray:
        return (rng.random(_H1) >= _DROPOUT).astype(np.float32) * np.float32(1.0 / (1.0 - _DROPOUT))

    def _positive(self, x: Features) -> np.ndarray:
        """Each expert's normalised vote for 'positive'."""
        return np.array([_normalise_log_votes(_log_votes(e, x, 2))[1] for e in self._experts])

    def _learn_event(self, x: Features, v: np.ndarray, cls: int) -> None:
        n_classes = len(self._labels)
        while len(self._experts) < n_classes:
            self._experts.append(_new_tree(self.grace_period, self.delta))
        router = self._ensure_router(v.shape[0], n_classes)
        if v.shape[0] < router.d:
            v = np.pad(v, (0, router.d - v.shape[0]))
        keep = self._keep(self._drop_rng)
        target = np.zeros(n_classes, np.float32)
        if self.task_experts_shape_prediction:
            says_pos = self._positive(x) > 0.5
            target[:] = says_pos == (np.arange(n_classes) == cls)
        else:
            target[cls] = 1.0
        router.step(v[None, :], target[None, :], keep[None, :])
        for i, e in enumerate(self._experts):
            e.learn_one(x, int(i == cls))

    def _predict(self, X: list[Features]) -> list[tuple[int, np.ndarray]]:
        assert self._router is not None
        M = self._matrix(X)
        rng = _clone_rng(self._drop_rng)
        out = []
        for x, v in zip(X, M, strict=True):
            logits = self._router.logits(v, self._keep(rng)).astype(np.float64)
            if self.task_experts_shape_prediction:
                score = expit(logits) * self._positive(x)
                if score.max() > 0:
                    out.append((int(score.argmax()), score / score.sum()))
                    continue
            e = np.exp(logits - logits.max())
            out.append((int(logits.argmax()), e / e.sum()))
        return out
