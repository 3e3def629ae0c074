"""DriftMoE with neural experts: a router MLP co-trained with K small MLPs held as stacked tensors."""

from __future__ import annotations

import contextlib
import logging
import math
import operator
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, NamedTuple

import numpy as np
import torch

from learners.base import Classifier, Features, Label, validate_batch, validate_y
from learners.exceptions import InvalidInputError
from learners.features import FeatureSpace, LabelSpace

logger = logging.getLogger(__name__)

_BETA1 = 0.9
_BETA2 = 0.999
_EPS = 1e-8
# logit bias that switches off a padded (not yet seen) class
_NEG = -1e9
# weight of the newest micro-batch in each expert's running accuracy
_ACC_DECAY = 0.05
_STATE_VERSION = 4
# the causal path's predictors: experts, neighbour vote, recent labels
_N_CAUSAL = 3
# exponential-weights mix of the experts and the neighbour vote: learning rate on the
# running mean log-loss, and that mean's decay per micro-batch
_MIX_ETA = 5.0
_MIX_DECAY = 0.9


_BLAS: Any = None
_LABEL_TYPES = frozenset((int, str, bool))
_LABEL_TYPES_OR_NONE = _LABEL_TYPES | {type(None)}
#: prediction calls are padded to a multiple of this many rows
_ROW_TILE = 16
#: rows up to this wide measure their distances to the neighbour memory in the compiled
#: pass; wider ones through a GEMM
_NARROW = 16
#: on sparse rows a resting neighbour vote is consulted on every this-many-th block whatever
#: its weight, to score it again (see ``_vote_on``)
_VOTE_PROBE = 8
_NO_ROWS = np.zeros((0, 0), dtype=np.float32)


def use_one_thread() -> None:
    """Run torch and BLAS on one thread for the rest of the process. A process that learns
    or serves this model calls it once at start: the scoped limits below then cost nothing,
    where setting and restoring them around every call costs about a fifth of a single
    row's prediction."""
    global _BLAS
    from threadpoolctl import threadpool_limits

    _load_blas()
    torch.set_num_threads(1)
    threadpool_limits(limits=1, user_api="blas")
    _BLAS = False


def _load_blas() -> None:
    """Load scipy's BLAS, which the compiled steps call, beside numpy's: a thread limit
    set before a library loads does not reach it."""
    import scipy.linalg.cython_blas  # noqa: F401


def _one_blas_thread() -> Any:
    """Limit BLAS to one thread around our products: at these sizes extra threads only
    add synchronisation, and they fight the worker's other threads for the cores (5-6x
    slower measured on two shared cores). Scoped, so the process's setting is untouched;
    a no-op where BLAS already runs on one thread (the limit itself costs ~0.2 ms)."""
    global _BLAS
    if _BLAS is None:
        from threadpoolctl import ThreadpoolController

        _load_blas()
        blas = ThreadpoolController().select(user_api="blas")
        _BLAS = blas if any(lib["num_threads"] > 1 for lib in blas.info()) else False
    return _BLAS.limit(limits=1) if _BLAS else contextlib.nullcontext()


_KERNELS: Any = None


def _kernels() -> Any:
    """The compiled passes (:mod:`learners.neural_kernels`), imported on first use: numba
    loads (and compiles, or reads from its disk cache) only in a process that learns."""
    global _KERNELS
    if _KERNELS is None:
        from learners import neural_kernels

        _KERNELS = neural_kernels
    return _KERNELS


class _Parts(NamedTuple):
    """A prediction's parts: the experts' mixture and the neighbour vote (B, classes), the
    rows as the neighbour memory reads them (padded to a multiple of 16) and each row's
    nearest remembered rows: squared distances (less the row's own norm) and class
    indices, (B, k) each. Any may be None (not built, memory empty). Sparse rows on the
    numpy engine also keep their first-layer gather: (offsets, input rows, values) and its
    result, which the learning step on the same rows reuses."""

    experts: np.ndarray | None
    neighbours: np.ndarray | None
    query: np.ndarray | None
    bank_near: tuple[np.ndarray, np.ndarray] | None
    gathered: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None


def _same_rows(
    gathered: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
    step: tuple[np.ndarray, np.ndarray, np.ndarray],
    rows: int,
) -> bool:
    """Whether a step's first ``rows`` CSR rows are those a gather was made of."""
    offsets, idx, vals, _ = gathered
    return (
        offsets.shape[0] >= rows
        and np.array_equal(offsets[:rows], step[0])
        and np.array_equal(idx, step[1])
        and np.array_equal(vals, step[2])
    )


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """The logistic function without overflow warnings: for x below about -88 (float32)
    exp(-x) is inf and 1 / (1 + inf) is 0, the logistic's value to float32 precision (it
    is under the smallest normal number there), so that overflow is expected and silenced
    rather than a sign of lost precision. The two-branch form would round the other values
    differently and change every learned bit of the models learned so far."""
    with np.errstate(over="ignore"):
        return 1.0 / (1.0 + np.exp(-x))


def _log_loss(p: np.ndarray, rows: np.ndarray, y: np.ndarray) -> float:
    """The mean log-loss of probabilities ``p`` (B, C) at classes ``y``, clipped at 1e-6:
    ``np.mean``'s sum and division, without its Python wrapper."""
    x = -np.log(np.maximum(p[rows, y], 1e-6))
    return float(np.add.reduce(x) / x.shape[0])


def _next_pow2(n: int, floor: int) -> int:
    return max(floor, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


class NeuralDriftMoE(Classifier):
    """DriftMoE with K neural experts.

    A router MLP and K one-hidden-layer MLP experts are co-trained prequentially. The
    experts' first layers and the router's first layer form one ``(d, K*hidden +
    router_hidden)`` matrix, the experts' second layers a ``(K, hidden, C)`` stack, so the
    forward and backward pass for every expert over a micro-batch is two GEMMs and two
    batched matmuls, with no Python loop over experts. Gradients are derived by hand and all
    parameters, Adam moments and per-element learning rates live in flat buffers: an optimiser
    step is a few kernels, and on a GPU the whole step can be captured in a CUDA graph.

    Learning (``learn_many``): features and labels grow the spaces; the batch is cut into
    steps of ``batch_size`` rows; each step computes every expert's softmax, the multi-hot
    correctness mask (expert argmax == y, or the expert that gave y the most probability when
    none is right), one Adam step of softmax cross-entropy for the experts (all experts on
    every row, or the router's ``top_k``) and one of binary cross-entropy on the mask for the
    router.

    Prediction: the router-softmax-weighted mixture of the experts' probabilities
    (``combine="mixture"``) or the paper's hard top-1 routing (``combine="top1"``).

    Parameters
    ----------
    n_experts, hidden, router_hidden
        Pool size and hidden widths.
    lr, router_lr
        Adam learning rates. Expert ``j`` uses ``lr * lr_spread ** (j/(K-1) - 1/2)``.
    lr_spread
        Ratio between the fastest and the slowest expert's learning rate. Slow experts are
        accurate on a stable concept, fast ones recover after a drift; the router learns which
        to trust, so the pool adapts without a detector.
    top_k
        Train only the router's top-k experts per row (None: all experts learn every row).
    combine, temperature
        How experts are combined at prediction; softmax temperature of the router weights.
    neighbours, neighbour_window
        The neighbour vote: class shares among the ``neighbours`` nearest of the last
        ``neighbour_window`` learned rows (standardised features), mixed with the experts by
        exponential weights on their running log-loss. None turns it off.
    input_halflife
        Half-life, in events, of the recent average each feature's deviation is measured
        from (an extra input per feature); None turns the input context off.
    label_context, context_halflife
        Add a recent-label expert (an exponentially weighted histogram of the latest labels,
        half-life in events) to the router's choices. Off by default: it did not help here.
    causal, recent_halflife
        The label-aware prediction path (``predict_many_causal(X, y)``): in a prequential
        stream the labels of a micro-batch's earlier rows are known before its later rows
        are predicted. Row i's prediction then also uses rows ``< i`` of the call with
        their labels: they join the neighbour vote's memory, and a recent-label predictor
        (an exponentially weighted histogram of the labels, half-life ``recent_halflife``
        events) joins the mix, so classes that arrive in runs are followed event by event
        without a weight step per row. The three are mixed by exponential weights on their
        running log-loss, scored at every block on its rows with their true labels.
        ``causal=False`` skips that scoring (and the path then ignores the labels).
    warmup
        The first ``warmup`` events learn in steps of ``batch_size // 4`` rows: short
        streams start learning from their first events.
    batch_size
        Rows per optimiser step. A block of 256 events takes 256 / batch_size steps.
    block
        Rows learned as one unit (feature statistics, the mix's scores, the steps, the
        neighbour memory). ``learn_many`` keeps rows that do not fill a block in its state
        until they do, so how a stream is split into calls never changes the model; the
        runtime hands it whole micro-batches, so a micro-batch of ``block`` rows is learned
        at once.
    standardize, hash_dim
        Passed to the :class:`~learners.features.FeatureSpace`.
    width
        The feature space's hashing width: at most this many features get a column of their
        own, later ones share ``width`` hashed columns, so memory is bounded whatever the
        vocabulary (the first layer has at most ``2 * width`` rows per input kind).
    sparse_above
        Once the feature space is wider than this, the first layer reads each row's present
        features only (an embedding-bag gather forward, a scatter-add backward, lazy RMSprop
        on the touched rows only), without the input context: a row costs what it holds, not
        the width. The neighbour vote then runs on the rows hashed down to this many
        dimensions.
    sparse_batch_size
        Rows per optimiser step on the sparse first layer (a step's cost is mostly the
        update of the weight rows its rows touch, which grows slower than the rows).
    sparse_vote_floor
        On sparse rows the neighbour vote is consulted while its weight in the plain or the
        label-aware mixture is at least this (and on every eighth block whatever its weight,
        to score it again): there it is the costliest part of a block. 0: always consulted.
    device
        ``"auto"`` (CUDA when available), ``"cpu"`` or ``"cuda[:n]"``. On the CPU the model
        runs on numpy arrays sharing memory with the torch tensors, through compiled passes
        (:mod:`learners.neural_kernels`: a block's steps, the prediction's mix, the
        neighbour votes) where a sequence of numpy calls would cost more in calls than in
        arithmetic. BLAS should run on one thread (more only slow such small products
        down): a worker sets that for the whole process (``use_one_thread``), and the numpy
        passes limit it around their own products.
    engine
        ``"auto"``: numpy on the CPU, torch on CUDA. ``"torch"`` runs the torch step (the one
        CUDA runs and a CUDA graph captures) on any device, so that path is exercised and
        tested on machines without a GPU.
    cuda_graph
        On CUDA, capture the training step (fixed ``batch_size`` rows, smaller steps padded with
        a row mask) in a CUDA graph and replay it. Ignored, with a log line, on the CPU.
    seed
        Seeds a local ``torch.Generator`` (initial weights and expert resets). On the CPU the
        same seed and input order give the same model bit for bit.

    Design choices, measured prequentially (predict a micro-batch of 256, then learn it) on
    the first 20k events of LED (abrupt/gradual), SEA (abrupt/gradual), RBF with moderate and
    fast drift, Electricity and CovType, mean accuracy over the 8 streams, one CPU thread:

    ======================================================  ======
    configuration (others at defaults)                      mean
    ======================================================  ======
    one step per 256-row micro-batch, lr 1e-2                0.708
    one step per 256, lr 3e-2                                0.727
    steps of 128 / 64 / 32 rows, lr 1e-2                     0.728 / 0.755 / 0.781
    steps of 32, lr 2e-2 / 5e-3                              0.787 / 0.771
    steps of 32, top-1 routing instead of mixture            0.778
    steps of 32, only the router's top-2 experts learn       0.781
    steps of 32, hidden 64 / K=4 / K=16                      0.786 / 0.781 / 0.783
    steps of 32, lr_spread 10                                0.789
    steps of 16                                              0.791
    steps of 16, lr_spread 10                                0.795
    defaults + recent-label expert                           0.791
    ======================================================  ======

    Input context (``input_halflife``): each feature also enters as its deviation from an
    exponential average of the preceding rows, the micro-batch's own earlier rows
    included. A micro-batch is predicted before any of it is learned, so it cannot use
    the labels of its neighbours the way a per-event learner does; the recent inputs are
    the next best thing. First 50k events of the 8 streams, steps of 16:

    ======================================================  ======
    input_halflife                                          mean
    ======================================================  ======
    None (off)                                               0.819
    8 / 32 (the default) / 128 events                        0.833 / 0.839 / 0.826
    ======================================================  ======

    Electricity gains most (0.780 → 0.893) and fast-drifting RBF gains a point; SEA and LED,
    whose events are independent, lose 0.1-0.5. ``hidden=64`` adds 0.2 points for 15% of
    the speed, steps of 8 rows 0.3 points for 35%.

    Neighbour vote (``neighbours``): a micro-batch is predicted with weights up to 256 events
    old, and on streams whose concept moves continuously (RBF) or whose neighbouring
    events share labels (CovType) that lag costs more than the MLPs can win back. The
    nearest recent rows carry exactly what the lag hides; the mix weight follows whichever
    of the two predicted the last micro-batches better. First 100k events, micro-batch 256:
    RBF fast 0.795 → 0.909, RBF moderate 0.917 → 0.953, CovType 0.869 → 0.881, Electricity,
    SEA and LED within ±0.1. It is the largest single cost on narrow streams (each row's
    distances to the 1,024 remembered rows and the scan that keeps the eight nearest); the
    prediction's vote is reused when the same rows are then learned.

    With the neighbour vote in place the MLPs' step size matters little, so the defaults
    trade a tenth of a point for speed (first 100k events, mean of the six distinct
    streams): steps of 16 rows at lr 1e-2 0.876, 32 rows 0.876, 64 rows at lr 2e-2 (the
    defaults) 0.875, 128 rows at 3e-2 0.874, one step per 256 rows 0.872.

    Without the neighbour vote, several small steps per micro-batch matter most under fast drift (RBF fast: 0.60 with one
    step per 256 rows, 0.79 with steps of 16); the mixture beats top-1 routing because under
    drift several experts are partly right and averaging them is smoother than switching;
    letting all experts learn every row (mask-free expert loss) beats top-k because the pool's
    diversity comes from the learning-rate ladder instead. ``on_drift`` (re-initialise the
    expert with the worst running accuracy) is offered to the runtime for drift alerts.
    """

    registry_name: ClassVar[str] = "driftmoe"

    def __init__(
        self,
        n_experts: int = 8,
        hidden: int = 32,
        router_hidden: int = 32,
        lr: float = 2e-2,
        router_lr: float = 2e-2,
        lr_spread: float = 10.0,
        top_k: int | None = None,
        combine: str = "mixture",
        temperature: float = 1.0,
        label_context: bool = False,
        context_halflife: float = 128.0,
        input_halflife: float | None = 32.0,
        neighbours: int | None = 8,
        neighbour_window: int = 1024,
        causal: bool = True,
        recent_halflife: float = 3.0,
        warmup: int = 2048,
        batch_size: int = 64,
        block: int = 256,
        standardize: bool = True,
        hash_dim: int | None = None,
        width: int | None = 2048,
        sparse_above: int = 256,
        sparse_batch_size: int = 256,
        sparse_vote_floor: float = 0.1,
        device: str = "auto",
        engine: str = "auto",
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
        if context_halflife <= 0:
            raise ValueError(f"context_halflife must be > 0, got {context_halflife}")
        if neighbours is not None and (neighbours < 1 or neighbour_window < neighbours):
            raise ValueError("neighbours must be >= 1 (or None) and <= neighbour_window")
        if input_halflife is not None and input_halflife <= 0:
            raise ValueError(f"input_halflife must be > 0 or None, got {input_halflife}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if recent_halflife <= 0:
            raise ValueError(f"recent_halflife must be > 0, got {recent_halflife}")
        if warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {warmup}")
        if block < 1:
            raise ValueError(f"block must be >= 1, got {block}")
        if width is not None and width < 1:
            raise ValueError(f"width must be >= 1 or None, got {width}")
        if sparse_above < 1:
            raise ValueError(f"sparse_above must be >= 1, got {sparse_above}")
        if sparse_batch_size < 1:
            raise ValueError(f"sparse_batch_size must be >= 1, got {sparse_batch_size}")
        if not 0.0 <= sparse_vote_floor <= 1.0:
            raise ValueError(f"sparse_vote_floor must be in [0, 1], got {sparse_vote_floor}")
        if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
            raise ValueError(f"device must be 'auto', 'cpu' or 'cuda[:n]', got {device!r}")
        if engine not in ("auto", "torch"):
            raise ValueError(f"engine must be 'auto' or 'torch', got {engine!r}")
        self.n_experts = n_experts
        self.hidden = hidden
        self.router_hidden = router_hidden
        self.lr = lr
        self.router_lr = router_lr
        self.lr_spread = lr_spread
        self.top_k = top_k
        self.combine = combine
        self.temperature = temperature
        self.label_context = label_context
        self.context_halflife = context_halflife
        self.input_halflife = input_halflife
        self.neighbours = neighbours
        self.neighbour_window = neighbour_window
        self.causal = causal
        self.recent_halflife = recent_halflife
        self.warmup = warmup
        self.batch_size = batch_size
        self.block = block
        self.standardize = standardize
        self.hash_dim = hash_dim
        self.width = width
        self.sparse_above = sparse_above
        self.sparse_batch_size = sparse_batch_size
        self.sparse_vote_floor = sparse_vote_floor
        self.device = device
        self.engine = engine
        self.cuda_graph = cuda_graph
        self.seed = seed
        self._reset()

    # ------------------------------------------------------------------ setup
    def _resolve_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    @property
    def _in_dim(self) -> int:
        # with input context, feature j feeds inputs 2j (its value) and 2j+1 (its deviation
        # from the recent average): a new feature appends two inputs, so growth never moves
        # the weights of known inputs
        return self._features.dim * (2 if self.input_halflife else 1)

    @property
    def _stride(self) -> int:
        return 2 if self.input_halflife else 1

    def _sparse(self) -> bool:
        """The first layer reads present features only (the space is wider than ``sparse_above``)."""
        return self._features.dim > self.sparse_above

    @property
    def _n_gate(self) -> int:
        # the recent-label expert, when on, is one more choice for the router
        return self.n_experts + (1 if self.label_context else 0)

    def _reset(self) -> None:
        self._dev = self._resolve_device()
        self._numpy = self._dev.type == "cpu" and self.engine == "auto"
        # the compiled step and prediction cover every expert learning every row, without
        # the recent-label expert; other settings run the numpy passes
        self._fused = (
            self._numpy
            and not self.label_context
            and (self.top_k is None or self.top_k >= self.n_experts)
        )
        self._use_graph = self.cuda_graph and self._dev.type == "cuda"
        if self.cuda_graph and not self._use_graph:
            logger.info("cuda_graph=True ignored: the learner runs on %s", self._dev)
        self._features = FeatureSpace(
            standardize=self.standardize, hash_dim=self.hash_dim, width=self.width
        )
        self._labels = LabelSpace()
        # rows waiting for their block to fill: not learned yet, part of the state
        self._wait_x: list[Features] = []
        self._wait_y: list[Label] = []
        # a CPU generator: the same seed gives the same initial weights on any device
        self._gen = torch.Generator(device="cpu")
        self._gen.manual_seed(self.seed)
        self._d_cap = 0
        self._c_cap = 0
        # recent average of each (standardised) feature, for the input context
        self._ema = np.zeros(0, dtype=np.float64)
        # the most recent learned rows and labels, for the neighbour vote, and the running
        # losses of [experts, neighbours] that weigh the two
        self._bank_x = np.zeros((0, 0), dtype=np.float32)
        # the same rows as columns, made when first needed (see _bank_columns)
        self._bank_t: np.ndarray | None = None
        self._bank_y = np.zeros(0, dtype=np.int64)
        self._bank_len = 0
        self._bank_pos = 0
        self._mix_loss = np.zeros(2, dtype=np.float64)
        # the causal path: recent-label histogram (one weight per class) and the running
        # losses of [experts, neighbours, recent labels] that weigh its three predictors
        self._recent = np.zeros(0, dtype=np.float64)
        self._cmix_loss = np.zeros(_N_CAUSAL, dtype=np.float64)
        # the last prediction's rows and its parts (see _Parts), so that learning the rows
        # just predicted scores the mixes without computing them again; not in the state
        self._pred_memo: tuple[list[Any], _Parts] | None = None
        # the last label-aware prediction's neighbour vote: (parts, labels, classes, vote)
        self._vote_memo: tuple[_Parts, np.ndarray, int, np.ndarray] | None = None
        self._p: dict[str, torch.Tensor] = {}
        self._graph: Any = None
        self._n_seen = 0

    @property
    def n_seen(self) -> int:
        """Events given to learn so far, those waiting for their block included."""
        return self._n_seen + len(self._wait_x)

    @property
    def expert_accuracy(self) -> np.ndarray:
        """Running accuracy of each expert on the micro-batches it learned from."""
        if not self._p:
            return np.zeros(self.n_experts, dtype=np.float32)
        return self._acc.detach().to("cpu").numpy().copy()

    def _shapes(self, dc: int, cc: int) -> dict[str, tuple[int, ...]]:
        k, h, hr = self.n_experts, self.hidden, self.router_hidden
        # the first layers of all experts and of the router are one (d, K*h + hr) matrix,
        # so the input is read by a single GEMM
        return {
            "w1": (dc, k * h + hr),
            "b1": (k * h + hr,),
            "w2": (k, h, cc),
            "b2": (k, cc),
            "r2": (hr, self._n_gate),
            "rb2": (self._n_gate,),
        }

    def _alloc(self, dc: int, cc: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """One zeroed flat buffer and named views into it: the optimiser updates it in one go."""
        shapes = self._shapes(dc, cc)
        flat = torch.zeros(sum(math.prod(s) for s in shapes.values()), device=self._dev)
        views: dict[str, torch.Tensor] = {}
        off = 0
        for name, shape in shapes.items():
            n = math.prod(shape)
            views[name] = flat[off : off + n].view(shape)
            off += n
        return flat, views

    def _expert_lrs(self) -> torch.Tensor:
        k = self.n_experts
        if k == 1 or self.lr_spread == 1.0:
            f = torch.ones(k, dtype=torch.float64)
        else:
            # a geometric ladder centred on lr: slow experts for stable concepts, fast for drift
            f = self.lr_spread ** torch.linspace(-0.5, 0.5, k, dtype=torch.float64)
        return (f * self.lr).to(torch.float32)

    def _lr_buffer(self) -> torch.Tensor:
        """Per-element learning rates laid out like the flat parameter buffer."""
        flat, lr = self._alloc(self._d_cap, self._c_cap)
        k, h = self.n_experts, self.hidden
        lr_k = self._expert_lrs().to(self._dev)
        per_col = torch.cat(
            [lr_k.repeat_interleave(h), lr_k.new_full((self.router_hidden,), self.router_lr)]
        )
        lr["w1"].copy_(per_col.expand_as(lr["w1"]))
        lr["b1"].copy_(per_col)
        lr["w2"].copy_(lr_k.view(k, 1, 1).expand_as(lr["w2"]))
        lr["b2"].copy_(lr_k.view(k, 1).expand_as(lr["b2"]))
        lr["r2"].fill_(self.router_lr)
        lr["rb2"].fill_(self.router_lr)
        return flat

    def _uniform(self, shape: tuple[int, ...], fan_in: int, fan_out: int) -> torch.Tensor:
        bound = math.sqrt(6.0 / (fan_in + fan_out))
        t = torch.rand(shape, generator=self._gen, dtype=torch.float32) * (2 * bound) - bound
        return t.to(self._dev)

    def _init_expert(self, j: int, fresh: bool = False) -> None:
        """Fresh Glorot weights for expert ``j`` on the known dims; padding stays zero.
        ``fresh``: the buffers were just allocated, all zero (a wide sparse model's first
        layer is millions of floats: zeroing its columns again took a third of the build)."""
        d, c, h = self._in_dim, len(self._labels), self.hidden
        p = self._p
        cols = slice(j * h, (j + 1) * h)
        if not fresh:
            p["w1"][:, cols] = 0.0
        p["w1"][:d, cols] = self._uniform((d, h), d, h)
        p["b1"][cols] = 0.0
        p["w2"][j] = 0.0
        p["w2"][j, :, :c] = self._uniform((h, c), h, c)
        p["b2"][j] = 0.0
        for store in () if fresh else (self._m, self._v):
            store["w1"][:, cols] = 0.0
            store["b1"][cols] = 0.0
            store["w2"][j] = 0.0
            store["b2"][j] = 0.0

    def _build(self) -> None:
        """First allocation, once the first batch has fixed the initial dim and class count."""
        d, c = self._in_dim, len(self._labels)
        k, h, hr = self.n_experts, self.hidden, self.router_hidden
        self._d_cap, self._c_cap = _next_pow2(d, 8), _next_pow2(c, 2)
        self._allocate_all()
        for j in range(k):
            self._init_expert(j, fresh=True)
        self._p["w1"][:d, k * h :] = self._uniform((d, hr), d, hr)
        self._p["r2"].copy_(self._uniform((hr, self._n_gate), hr, self._n_gate))
        self._step.zero_()
        self._acc.fill_(0.5)
        self._class_bias[:c] = 0.0

    def _allocate_all(self) -> None:
        self._flat, self._p = self._alloc(self._d_cap, self._c_cap)
        self._mflat, self._m = self._alloc(self._d_cap, self._c_cap)
        self._vflat, self._v = self._alloc(self._d_cap, self._c_cap)
        self._gflat, self._g = self._alloc(self._d_cap, self._c_cap)
        self._lr = self._lr_buffer()
        self._step = torch.zeros((), dtype=torch.float32, device=self._dev)
        self._acc = torch.full((self.n_experts,), 0.5, dtype=torch.float32, device=self._dev)
        self._class_bias = torch.full((self._c_cap,), _NEG, device=self._dev)
        self._open_classes = 0
        self._ctx = torch.zeros(self._c_cap, device=self._dev)
        self._graph = None
        self._refresh_numpy_views()
        if self._numpy or self.neighbours:
            # the compiled passes loaded now, as the model is built or restored, not inside
            # the first prediction a replica serves; once a process
            _kernels().warm()

    def _refresh_numpy_views(self) -> None:
        # on the CPU the step runs in numpy on views that share memory with the tensors:
        # numpy's per-call overhead is a fraction of torch's at micro-batch sizes
        if not self._numpy:
            self._np: dict[str, Any] = {}
            return
        self._np = {
            "p": {n: t.numpy() for n, t in self._p.items()},
            "g": {n: t.numpy() for n, t in self._g.items()},
            "flat": self._flat.numpy(),
            "m": self._mflat.numpy(),
            "v": self._vflat.numpy(),
            "vw1": self._v["w1"].numpy(),
            "gflat": self._gflat.numpy(),
            "lr": self._lr.numpy(),
            "acc": self._acc.numpy(),
            "cb": self._class_bias.numpy(),
            "ctx": self._ctx.numpy(),
            "step": self._step.numpy().reshape(1),
        }

    def _grow(self) -> None:
        """Make room for the current dim and class count, keeping weights and optimiser state."""
        d, c = self._in_dim, len(self._labels)
        if not self._p:
            self._build()
            return
        if d > self._d_cap or c > self._c_cap:
            dc = self._d_cap if d <= self._d_cap else _next_pow2(d, self._d_cap * 2)
            cc = self._c_cap if c <= self._c_cap else _next_pow2(c, self._c_cap * 2)
            old = (self._p, self._m, self._v, self._step, self._acc, self._class_bias, self._ctx)
            self._d_cap, self._c_cap = dc, cc
            self._allocate_all()
            # old weights and moments land in the top-left corner; new slots start at zero,
            # so the function computed on the known inputs and classes is unchanged
            for new_store, old_store in zip((self._p, self._m, self._v), old[:3], strict=True):
                for name, t in old_store.items():
                    new_store[name][tuple(slice(0, s) for s in t.shape)] = t
            self._step.copy_(old[3])
            self._acc.copy_(old[4])
            self._class_bias[: old[5].shape[0]] = old[5]
            self._ctx[: old[6].shape[0]] = old[6]
        # a new class starts with zero output weights; unmask its logit (once: a tensor
        # write costs as much per block as reading the block's labels)
        if c != self._open_classes:
            self._class_bias[:c] = 0.0
            self._open_classes = c

    # ------------------------------------------------------------------ torch maths
    def _forward_t(
        self, x: torch.Tensor | None, a: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """Hidden pre-activations (B, K*h + hr), hidden (B, ·), expert probs (K, B, C), gate (B, K).

        ``a`` is the first layer's output when the caller computed it (the sparse gather)."""
        p = self._p
        kh = self.n_experts * self.hidden
        if a is None:
            a = torch.addmm(p["b1"], x, p["w1"])
        h = torch.relu(a)
        he = h[:, :kh].reshape(h.shape[0], self.n_experts, self.hidden).transpose(0, 1)
        logits = torch.baddbmm((p["b2"] + self._class_bias).unsqueeze(1), he, p["w2"])
        probs = torch.softmax(logits, dim=2)
        g = torch.addmm(p["rb2"], h[:, kh:], p["r2"])
        return a, h, probs, g

    def _context_probs_t(self) -> torch.Tensor:
        valid = (self._class_bias == 0).to(self._ctx.dtype)
        c = self._ctx + 1e-6 * valid
        return c / c.sum()

    def _with_context_t(self, probs: torch.Tensor) -> torch.Tensor:
        """Expert probabilities with the recent-label expert appended as the last one."""
        if not self.label_context:
            return probs
        cp = self._context_probs_t().view(1, 1, -1).expand(1, probs.shape[1], -1)
        return torch.cat([probs, cp], dim=0)

    def _combine_t(self, probs: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        probs = self._with_context_t(probs)
        if self.combine == "top1":
            best = g.argmax(dim=1)
            return probs[best, torch.arange(probs.shape[1], device=probs.device)]
        w = torch.softmax(g / self.temperature, dim=1)
        return torch.einsum("bk,kbc->bc", w, probs)

    def _adam_t(self, lo: int = 0) -> None:
        """Adam on the flat buffers from element ``lo`` on (0: every parameter)."""
        self._step.add_(1.0)
        bc1 = 1.0 - torch.pow(_BETA1, self._step)
        bc2 = 1.0 - torch.pow(_BETA2, self._step)
        grad, m, v = self._gflat[lo:], self._mflat[lo:], self._vflat[lo:]
        m.mul_(_BETA1).add_(grad, alpha=1.0 - _BETA1)
        v.mul_(_BETA2).addcmul_(grad, grad, value=1.0 - _BETA2)
        denom = (v / bc2).sqrt_().add_(_EPS)
        self._flat[lo:].addcdiv_(m * self._lr[lo:] / bc1, denom, value=-1.0)

    def _gather_t(self, sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """First layer of CSR rows: each row's present inputs' weight rows, summed (B, F)."""
        offsets, idx, vals = sparse
        a = torch.nn.functional.embedding_bag(
            idx, self._p["w1"], offsets, mode="sum", per_sample_weights=vals
        )
        return a.add_(self._p["b1"])

    def _sparse_step_t(
        self, sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor], da: torch.Tensor
    ) -> None:
        """Scatter-add the first layer's gradient onto the input rows present and take a lazy
        RMSprop step on those rows only; dense Adam on everything else.

        A row's second moment starts at its first gradient squared, so a word's first step is
        ``lr`` whenever it first comes: lazy Adam's bias corrections count the model's steps,
        not the row's, so the first step of a word grew with the model's age, from half of
        ``lr`` ten steps in to ``(1 - beta1) / sqrt(1 - beta2)``, 3.2 times ``lr``, late. No
        momentum: a row's would move only when its word comes back, and keeping none is a
        moment less to read and write per row."""
        offsets, idx, vals = sparse
        counts = torch.diff(offsets, append=offsets.new_tensor([idx.shape[0]]))
        row_of = torch.repeat_interleave(torch.arange(da.shape[0], device=da.device), counts)
        u, inv = torch.unique(idx, return_inverse=True)
        gu = torch.zeros(u.shape[0], da.shape[1], device=da.device)
        gu.index_add_(0, inv, da[row_of] * vals.unsqueeze(1))
        lo = self._p["w1"].numel()
        self._adam_t(lo)
        v0 = self._v["w1"][u]
        v = torch.where(v0 == 0.0, gu * gu, v0 * _BETA2 + (gu * gu) * (1.0 - _BETA2))
        self._v["w1"][u] = v
        lr_row = self._lr[:lo].view_as(self._p["w1"])[0]
        self._p["w1"][u] -= gu * lr_row / (v.sqrt() + _EPS)

    def _train_step_t(
        self,
        x: torch.Tensor | None,
        y: torch.Tensor,
        rows: torch.Tensor,
        sparse: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None,
    ) -> None:
        """One optimiser step for experts and router on one micro-batch (torch, any device).

        ``rows`` is 1 for real rows and 0 for padding, so a fixed-size (graph-captured) step
        can take fewer rows. Gradients are derived by hand and written into the flat gradient
        buffer: no autograd tape and no host sync, so the whole step can be captured.
        """
        p, gr = self._p, self._g
        k, hd = self.n_experts, self.hidden
        kh = k * hd
        b = y.shape[0]
        a0 = None if sparse is None else self._gather_t(sparse)
        a, h, probs, g = self._forward_t(x, a0)
        n = rows.sum().clamp_min(1.0)
        y_oh = torch.zeros_like(probs[0]).scatter_(1, y.unsqueeze(1), 1.0)  # (B, C)

        # multi-hot mask over every choice of the router: argmax == y; if none is right,
        # the one giving y the most probability
        all_probs = self._with_context_t(probs)
        correct_all = (all_probs.argmax(dim=2) == y.unsqueeze(0)).to(probs.dtype)
        correct = correct_all[:k]  # (K, B)
        p_y = (all_probs * y_oh).sum(dim=2)
        best = torch.zeros_like(p_y).scatter_(0, p_y.argmax(dim=0, keepdim=True), 1.0)
        mask = torch.where(correct_all.sum(dim=0, keepdim=True) == 0, best, correct_all)

        w = (rows / n).unsqueeze(0).expand(k, b)
        if self.top_k is not None and self.top_k < k:
            top = g[:, :k].topk(self.top_k, dim=1).indices
            w = torch.zeros_like(g[:, :k]).scatter_(1, top, 1.0).T * w
        dlogits = (probs - y_oh) * w.unsqueeze(2)  # softmax cross-entropy, (K, B, C)
        he = h[:, :kh].reshape(b, k, hd).transpose(0, 1)
        torch.bmm(he.transpose(1, 2), dlogits, out=gr["w2"])
        torch.sum(dlogits, dim=1, out=gr["b2"])
        dhe = torch.bmm(dlogits, p["w2"].transpose(1, 2)).transpose(0, 1).reshape(b, kh)

        dg = (torch.sigmoid(g) - mask.T) * (rows / (n * g.shape[1])).unsqueeze(1)  # BCE
        torch.mm(h[:, kh:].T, dg, out=gr["r2"])
        torch.sum(dg, dim=0, out=gr["rb2"])
        da = torch.cat([dhe, dg @ p["r2"].T], dim=1).mul_(a > 0)
        torch.sum(da, dim=0, out=gr["b1"])
        if sparse is None:
            torch.mm(x.T, da, out=gr["w1"])
            self._adam_t()
        else:
            self._sparse_step_t(sparse, da)
        acc = (correct * rows.unsqueeze(0)).sum(dim=1) / n
        self._acc.mul_(1.0 - _ACC_DECAY).add_(acc, alpha=_ACC_DECAY)

    # ------------------------------------------------------------------ numpy maths (CPU)
    def _forward_np(
        self, x: np.ndarray | None, a: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        p = self._np["p"]
        kh = self.n_experts * self.hidden
        if a is None:
            a = x @ p["w1"]
            a += p["b1"]
        h = np.maximum(a, 0.0)
        he = h[:, :kh].reshape(h.shape[0], self.n_experts, self.hidden).transpose(1, 0, 2)
        logits = he @ p["w2"]
        logits += (p["b2"] + self._np["cb"])[:, None, :]
        logits -= logits.max(axis=2, keepdims=True)
        probs = np.exp(logits, out=logits)
        probs /= probs.sum(axis=2, keepdims=True)
        g = h[:, kh:] @ p["r2"]
        g += p["rb2"]
        return a, h, probs, g

    def _context_probs_np(self) -> np.ndarray:
        c = self._np["ctx"] + np.float32(1e-6) * (self._np["cb"] == 0)
        return c / c.sum()

    def _with_context_np(self, probs: np.ndarray) -> np.ndarray:
        if not self.label_context:
            return probs
        cp = np.broadcast_to(self._context_probs_np(), (1, probs.shape[1], probs.shape[2]))
        return np.concatenate([probs, cp], axis=0)

    def _mix_np(self, a: np.ndarray) -> np.ndarray:
        """The prediction (B, class capacity) from the first layer's pre-activations ``a``:
        one compiled pass over the rows, or the numpy passes where it does not apply."""
        if not self._fused:
            _, _, probs, g = self._forward_np(None, a)
            return self._combine_np(probs, g)
        p = self._np["p"]
        out = np.empty((a.shape[0], self._c_cap), dtype=np.float32)
        _kernels().moe_mix(
            a, p["w2"], p["b2"], self._np["cb"], p["r2"], p["rb2"],
            float(self.temperature), self.combine == "top1", out,
        )  # fmt: skip
        return out

    def _combine_np(self, probs: np.ndarray, g: np.ndarray) -> np.ndarray:
        probs = self._with_context_np(probs)
        if self.combine == "top1":
            return probs[g.argmax(axis=1), np.arange(probs.shape[1])]
        z = g / np.float32(self.temperature)
        z -= z.max(axis=1, keepdims=True)
        w = np.exp(z)
        w /= w.sum(axis=1, keepdims=True)
        return np.einsum("bk,kbc->bc", w, probs)

    def _train_step_np(
        self,
        x: np.ndarray | None,
        y: np.ndarray,
        sparse: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        a0: np.ndarray | None = None,
    ) -> None:
        """The same step as ``_train_step_t``, in numpy on views of the same memory.

        ``sparse``: the rows as CSR ``(offsets, input rows, values)`` instead of ``x``;
        ``a0``: their first layer's gather, when already made with these weights."""
        st = self._np
        p, gr = st["p"], st["g"]
        k, hd = self.n_experts, self.hidden
        kh = k * hd
        b = y.shape[0]
        if self._fused and sparse is None:
            self._dense_steps_np(x, y, b)
            return
        if sparse is not None and a0 is None:
            a0 = self._gather_np(sparse)
        if self._fused:
            da = np.empty_like(a0)
            _kernels().moe_grads(
                a0, y, p["w2"], p["b2"], st["cb"], p["r2"], p["rb2"],
                gr["w2"], gr["b2"], gr["r2"], gr["rb2"], gr["b1"], da, st["acc"], _ACC_DECAY,
            )  # fmt: skip
            self._sparse_step_np(sparse, da)
            return
        a, h, probs, g = self._forward_np(x, a0)
        ar = np.arange(b)

        all_probs = self._with_context_np(probs)
        mask = (all_probs.argmax(axis=2) == y).astype(np.float32)  # (K [+1], B)
        correct = mask[:k].copy()
        p_y = all_probs[:, ar, y]
        none = mask.sum(axis=0) == 0
        if none.any():
            cols = np.flatnonzero(none)
            mask[p_y[:, cols].argmax(axis=0), cols] = 1.0

        dlogits = probs  # reused in place: probs is not needed after this point
        dlogits[:, ar, y] -= 1.0
        if self.top_k is not None and self.top_k < k:
            top = np.argpartition(-g[:, :k], self.top_k - 1, axis=1)[:, : self.top_k]
            sel = np.zeros((b, k), dtype=np.float32)
            np.put_along_axis(sel, top, 1.0, axis=1)
            dlogits *= (sel.T / np.float32(b))[:, :, None]
        else:
            dlogits *= np.float32(1.0 / b)
        he = h[:, :kh].reshape(b, k, hd).transpose(1, 0, 2)
        np.matmul(he.transpose(0, 2, 1), dlogits, out=gr["w2"])
        np.sum(dlogits, axis=1, out=gr["b2"])
        da = np.empty_like(a)
        da[:, :kh] = (dlogits @ p["w2"].transpose(0, 2, 1)).transpose(1, 0, 2).reshape(b, kh)

        dg = (_sigmoid(g) - mask.T) * np.float32(1.0 / (b * g.shape[1]))
        np.matmul(h[:, kh:].T, dg, out=gr["r2"])
        np.sum(dg, axis=0, out=gr["rb2"])
        np.matmul(dg, p["r2"].T, out=da[:, kh:])
        da *= a > 0
        np.sum(da, axis=0, out=gr["b1"])
        if sparse is None:
            np.matmul(x.T, da, out=gr["w1"])
            self._adam_np(0)
        else:
            self._sparse_step_np(sparse, da)
        acc = st["acc"]
        acc *= np.float32(1.0 - _ACC_DECAY)
        acc += np.float32(_ACC_DECAY) * correct.mean(axis=1)

    def _dense_steps_np(self, x: np.ndarray, y: np.ndarray, rows: int) -> None:
        """Steps of ``rows`` rows of the dense inputs ``x``, all in one compiled call."""
        st = self._np
        p, gr = st["p"], st["g"]
        _kernels().moe_steps(
            x, y, rows, p["w1"], p["b1"], p["w2"], p["b2"], st["cb"], p["r2"], p["rb2"],
            gr["w1"], gr["b1"], gr["w2"], gr["b2"], gr["r2"], gr["rb2"],
            st["flat"], st["m"], st["v"], st["gflat"], st["lr"], st["step"],
            st["acc"], _ACC_DECAY, _BETA1, _BETA2, _EPS,
        )  # fmt: skip

    def _adam_np(self, lo: int) -> None:
        """Adam on the flat buffers from element ``lo`` on."""
        st = self._np
        _kernels().adam(
            st["flat"][lo:], st["m"][lo:], st["v"][lo:], st["gflat"][lo:], st["lr"][lo:],
            st["step"], _BETA1, _BETA2, _EPS,
        )  # fmt: skip

    def _gather_np(self, sparse: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        offsets, idx, vals = sparse
        p = self._np["p"]
        a = np.empty((offsets.shape[0], p["w1"].shape[1]), dtype=np.float32)
        _kernels().gather_rows(offsets, idx, vals, p["w1"], p["b1"], a)
        return a

    def _sparse_step_np(self, sparse: tuple[np.ndarray, np.ndarray, np.ndarray], da: np.ndarray) -> None:
        """``_sparse_step_t`` in numpy and one compiled pass: the gradient of each input row
        present, summed over its entries in batch order, then lazy RMSprop on those rows."""
        st = self._np
        offsets, idx, vals = sparse
        b = da.shape[0]
        row_of = np.repeat(np.arange(b), np.diff(np.append(offsets, idx.shape[0])))
        w1, lo = st["p"]["w1"], self._p["w1"].numel()
        self._adam_np(lo)
        f32 = np.float32
        _kernels().sparse_rmsprop(
            w1, st["vw1"], idx, vals, row_of, da, st["lr"][: w1.shape[1]], f32(_BETA2), f32(1.0 - _BETA2), f32(_EPS)
        )

    # ------------------------------------------------------------------ CUDA graph
    def _graph_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """Replay the captured step on a padded copy of one micro-batch."""
        bs = self.batch_size
        if self._graph is None:
            self._capture()
        n = x.shape[0]
        self._gx[:n].copy_(x)
        self._gx[n:].zero_()
        self._gy[:n].copy_(y)
        self._gy[n:].zero_()
        self._grows[:n].fill_(1.0)
        self._grows[n:bs].zero_()
        self._graph.replay()

    def _capture(self) -> None:
        bs = self.batch_size
        self._gx = torch.zeros(bs, self._d_cap, device=self._dev)
        self._gy = torch.zeros(bs, dtype=torch.long, device=self._dev)
        self._grows = torch.ones(bs, device=self._dev)
        live = (self._flat, self._mflat, self._vflat, self._step, self._acc)
        saved = [t.clone() for t in live]
        # warm-up on a side stream (lazy cuBLAS init must not happen during capture), then
        # roll back: the warm-up steps must not count as learning
        side = torch.cuda.Stream(device=self._dev)
        side.wait_stream(torch.cuda.current_stream(self._dev))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._train_step_t(self._gx, self._gy, self._grows)
        torch.cuda.current_stream(self._dev).wait_stream(side)
        for t, s in zip(live, saved, strict=True):
            t.copy_(s)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            self._train_step_t(self._gx, self._gy, self._grows)
        self._graph = graph

    # ------------------------------------------------------------------ API
    def _neighbour_parts(self, z: np.ndarray, c: int) -> _Parts:
        """The neighbour vote (B, c) of (padded) query rows ``z``, with the rows as the bank
        reads them and each row's nearest bank rows (distances, labels; None while empty)."""
        n = self._bank_len
        if not self.neighbours or n == 0:
            return _Parts(None, None, z if self.neighbours else None, None)
        bank = self._bank_x[:n]
        zz = z
        if z.shape[1] != bank.shape[1] or z.dtype != np.float32:
            zz = np.zeros((z.shape[0], bank.shape[1]), dtype=np.float32)
            w = min(z.shape[1], bank.shape[1])
            zz[:, :w] = z[:, :w]
        k = min(self.neighbours, n)
        near = (np.empty((z.shape[0], k), dtype=np.float32), np.empty((z.shape[0], k), dtype=np.int64))
        votes = np.empty((z.shape[0], c))
        if bank.shape[1] <= _NARROW or self._sparse():
            # narrow or mostly-zero rows (hashed words): the pass reads the bank by columns
            # and skips a row's zero entries, a fraction of a GEMM's work. Chosen by the
            # model, never by the call's rows, so a row's bits never depend on its company.
            bank_t, prod, bank_sq = self._bank_columns(n), _NO_ROWS, _NO_ROWS.ravel()
        else:
            bank_t = _NO_ROWS
            with _one_blas_thread():
                prod = zz @ bank.T
            bank_sq = (bank * bank).sum(axis=1)
        _kernels().bank_votes(zz, bank_t, prod, bank_sq, self._bank_y[:n], k, *near, votes)
        return _Parts(None, votes, zz, near)

    def _bank_columns(self, n: int) -> np.ndarray:
        """The first ``n`` remembered rows as columns (d, n), C-ordered: kept beside the
        rows and updated where ``_remember`` writes, since transposing the whole memory
        for every micro-batch costs a third of a GEMM."""
        bt = self._bank_t
        if bt is None or bt.shape != (self._bank_x.shape[1], self._bank_x.shape[0]):
            bt = self._bank_t = np.ascontiguousarray(self._bank_x.T)
        return bt if n == bt.shape[1] else np.ascontiguousarray(bt[:, :n])

    def _causal_vote(
        self,
        q: np.ndarray,
        near: tuple[np.ndarray, np.ndarray] | None,
        yi: np.ndarray,
        c: int,
    ) -> np.ndarray:
        """The neighbour vote of each row over the bank and the call's earlier labelled rows.

        ``q`` (padded to a multiple of 16 rows) are the rows as the bank reads them, ``near``
        each row's k nearest bank rows (the k nearest of the union are among them and the
        call's rows), ``yi`` the call's class indices (-1: unknown). One compiled pass per
        row over its bank rows and the call's earlier rows; nothing after a row reaches it.
        Narrow and mostly-zero rows' distances are made from each row's nonzero entries,
        wide dense rows' from products against fixed-size tiles of ``block`` rows: an
        entry's bits never depend on the call's length."""
        m = yi.shape[0]
        if near is None:
            near = (np.zeros((m, 0), dtype=np.float32), np.zeros((m, 0), dtype=np.int64))
        if self._sparse() or q.shape[1] <= _NARROW:
            # narrow or mostly-zero rows (hashed words): each row's nonzero entries only
            between = np.empty((m, m), dtype=np.float32)
            _kernels().earlier_distances(q[:m], np.ascontiguousarray(q[:m].T), between)
        else:
            w, tiles = self.block, []
            with _one_blas_thread():
                for s0 in range(0, m, w):
                    tile = np.zeros((w, q.shape[1]), dtype=np.float32)
                    tile[: min(w, m - s0)] = q[s0 : min(s0 + w, m)]
                    d = q @ tile.T
                    d *= np.float32(-2.0)
                    d += (tile * tile).sum(axis=1)[None, :]
                    tiles.append(d[:m, : min(w, m - s0)])
            between = np.ascontiguousarray(np.concatenate(tiles, axis=1))
        votes = np.empty((m, c))
        _kernels().causal_votes(between, near[0][:m], near[1][:m], yi, self.neighbours or 1, votes)
        return votes

    def _recent_probs(self, yi: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
        """Each row's recent-label shares (rows before it, the call's earlier rows
        included), and the histogram after the call's last row."""
        a = 0.5 ** (1.0 / self.recent_halflife)
        h0 = np.zeros(c)
        h0[: min(c, self._recent.shape[0])] = self._recent[:c]
        e = np.zeros((yi.shape[0], c))
        known = yi >= 0
        e[np.flatnonzero(known), yi[known]] = 1.0
        before = np.empty_like(e)
        last = _kernels().running_average(e, h0, a, before)
        return (before + 1e-3) / (before.sum(axis=1, keepdims=True) + 1e-3 * c), last

    def _causal_weights(self, have: Sequence[bool]) -> np.ndarray:
        loss = np.where(np.asarray(have), self._cmix_loss, np.inf)
        w = np.exp(-_MIX_ETA * (loss - loss.min()))
        return w / w.sum()

    def _mix_weights(self) -> np.ndarray:
        # exponential weights on the running log-losses of the two predictors
        w = np.exp(-_MIX_ETA * (self._mix_loss - self._mix_loss.min()))
        return w / w.sum()

    def _remember(self, z: np.ndarray, yi: np.ndarray) -> None:
        d, cap = z.shape[1], self.neighbour_window
        if self._bank_x.shape[1] < d:  # new features: widen; older rows read 0 there
            grown = np.zeros((cap, d), dtype=np.float32)
            if self._bank_x.size:
                grown[:, : self._bank_x.shape[1]] = self._bank_x
            self._bank_x = grown
            if self._bank_y.shape[0] < cap:
                self._bank_y = np.zeros(cap, dtype=np.int64)
        take, ys = z[-cap:], yi[-cap:]
        lo, n = self._bank_pos, take.shape[0]
        # one run of slots, the usual case, is a slice; else the run wraps around
        slots: slice | np.ndarray = slice(lo, lo + n) if lo + n <= cap else (lo + np.arange(n)) % cap
        self._bank_x[slots] = 0.0
        self._bank_x[slots, :d] = take
        if self._bank_t is not None and self._bank_t.shape == self._bank_x.shape[::-1]:
            self._bank_t[:, slots] = self._bank_x[slots].T
        else:
            self._bank_t = None
        self._bank_y[slots] = ys
        self._bank_pos = int((self._bank_pos + take.shape[0]) % cap)
        self._bank_len = min(cap, self._bank_len + take.shape[0])

    def _matrix(self, z: np.ndarray, advance: bool) -> np.ndarray:
        out = np.zeros((z.shape[0], self._d_cap), dtype=np.float32)
        if not self.input_halflife:
            out[:, : z.shape[1]] = z
            return out
        d = z.shape[1]
        ema = np.zeros(d)
        ema[: self._ema.shape[0]] = self._ema[:d]
        # each row's context is the exponential average of the rows before it (this batch
        # included, in order), so a micro-batch sees the recent past that per-event
        # learners get from learning event by event: on temporally dependent streams
        # (prices, terrain) the deviation from it carries much of the signal
        a = 0.5 ** (1.0 / self.input_halflife)
        last = _kernels().context_rows(z, ema, a, out)
        if advance:
            self._ema = last
        return out

    def learn_many(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        # feature values are validated by the feature space in the pass that reads them
        if len(X) != len(y):
            validate_batch(X, y)
        if not _LABEL_TYPES.issuperset(map(type, y)):
            for i, label in enumerate(y):
                validate_y(label, f"y[{i}]")
        if not X:
            return
        if not self._wait_x and len(X) == self.block:
            # the runtime's case: the block's own scan checks every row before any is learned
            self._learn_block(X, y)
            return
        self._features.transform(X)  # refuses a malformed row before anything is kept
        wait_x, wait_y = [*self._wait_x, *X], [*self._wait_y, *y]
        full = len(wait_x) - len(wait_x) % self.block
        self._wait_x, self._wait_y = wait_x[full:], wait_y[full:]
        for i in range(0, full, self.block):
            self._learn_block(wait_x[i : i + self.block], wait_y[i : i + self.block])

    def _step_rows(self, rows: int) -> int:
        # short streams: smaller steps (more of them) until ``warmup`` events are learned
        return rows if self._n_seen >= self.warmup else max(1, rows // 4)

    def _learn_block(self, X: Sequence[Features], y: Sequence[Label]) -> None:
        before = self._probs_before_learning(X) if (self.neighbours or self.causal) else None
        scan = self._features.update_scan(X)
        yi = self._labels.update_and_encode(list(y))
        if self.causal:
            self._score_causal(before, yi)
        self._grow()
        if before is not None and before.neighbours is not None:
            assert before.experts is not None
            self._score_mix(before.experts, before.neighbours, yi)
        if self._sparse():
            self._learn_sparse(self._features.csr(scan), yi, None if before is None else before.gathered)
            return
        z = self._features.dense(scan)
        xm = self._matrix(z, advance=True)
        bs = self._step_rows(self.batch_size)
        if self._fused:
            # no scoped BLAS limit: where BLAS has threads it costs 0.2 ms a block, more than
            # the step's products; a worker limits BLAS to one thread process-wide, and a
            # process that leaves BLAS its threads lets OpenBLAS choose, as for numpy's
            self._dense_steps_np(xm, yi, bs)
        elif self._numpy:
            with _one_blas_thread():
                for i in range(0, xm.shape[0], bs):
                    self._train_step_np(xm[i : i + bs], yi[i : i + bs])
        else:
            xt = torch.from_numpy(xm).to(self._dev, non_blocking=True)
            yt = torch.from_numpy(yi).to(self._dev, non_blocking=True)
            for i in range(0, xt.shape[0], bs):
                xb, yb = xt[i : i + bs], yt[i : i + bs]
                if self._use_graph:
                    self._graph_step(xb, yb)
                else:
                    self._train_step_t(xb, yb, torch.ones(xb.shape[0], device=self._dev))
        if self.label_context:
            self._update_context(yi)
        if self.neighbours:
            self._remember(z, yi)
        self._n_seen += len(X)

    def _learn_sparse(
        self,
        csr: tuple[np.ndarray, np.ndarray, np.ndarray],
        yi: np.ndarray,
        gathered: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None = None,
    ) -> None:
        """``_learn_block``'s steps on CSR rows through the sparse first layer. ``gathered``:
        the prediction's gather of these rows with the model as it still is, used by a step
        that covers the same rows with the same inputs and values (each row's sum is its own)."""
        indptr, cols, vals = csr
        idx = cols * self._stride
        bs = self._step_rows(self.sparse_batch_size)
        for i in range(0, yi.shape[0], bs):
            j = min(i + bs, yi.shape[0])
            lo, hi = indptr[i], indptr[j]
            step = (indptr[i:j] - lo, idx[lo:hi], vals[lo:hi])
            if self._numpy:
                a0 = None
                if gathered is not None and i == 0 and _same_rows(gathered, step, j):
                    a0 = gathered[3][:j]
                with _one_blas_thread():
                    self._train_step_np(None, yi[i:j], step, a0)
            else:
                st = tuple(torch.from_numpy(t).to(self._dev) for t in step)
                yt = torch.from_numpy(yi[i:j]).to(self._dev)
                self._train_step_t(None, yt, torch.ones(j - i, device=self._dev), st)
        if self.label_context:
            self._update_context(yi)
        if self.neighbours:
            self._remember(self._project(csr), yi)
        self._n_seen += yi.shape[0]

    def _project(self, csr: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        """Rows hashed down to ``sparse_above`` dims for the neighbour vote: column j < that
        width keeps its place (so rows remembered before the space widened still match),
        a later column lands in a fixed pseudo-random slot with a fixed sign."""
        indptr, cols, vals = csr
        out = np.empty((indptr.shape[0] - 1, self.sparse_above), dtype=np.float32)
        _kernels().project(indptr, cols, vals, self.sparse_above, out)
        return out

    def _update_context(self, yi: np.ndarray) -> None:
        """Fold this batch's labels into the recent-label profile, newest weighted most.

        The profile is an exponentially weighted class histogram (half-life in events) fed to
        every expert and the router as a shared input. It is updated only after the batch
        learned, so the batch trained with the profile its predictions were made with.
        """
        n = yi.shape[0]
        decay = 0.5 ** (1.0 / self.context_halflife)
        w = (1.0 - decay) * decay ** np.arange(n - 1, -1, -1, dtype=np.float64)
        hist = np.bincount(yi, weights=w, minlength=self._c_cap).astype(np.float32)
        ctx = self._ctx
        ctx.mul_(float(decay**n)).add_(torch.from_numpy(hist).to(self._dev))

    def _proba_matrix(self, X: Sequence[Features]) -> np.ndarray:
        """Probabilities (B, n_classes); the model and the feature space are untouched."""
        parts = self._probs(X)
        self._pred_memo = (list(X), parts)
        pm, pn = parts.experts, parts.neighbours
        assert pm is not None
        if pn is None:
            return pm
        w = self._mix_weights()
        return w[0] * pm + w[1] * pn

    def _causal_matrix(
        self, X: Sequence[Features], y: Sequence[Label | None]
    ) -> tuple[np.ndarray, list[Label]]:
        """Causal probabilities (B, classes) and the classes: the learned ones, then those
        first seen among the call's labels (a run of a new class is followed at once)."""
        if len(y) != len(X):
            raise InvalidInputError(f"X has {len(X)} rows but y has {len(y)} labels")
        if not _LABEL_TYPES_OR_NONE.issuperset(map(type, y)):
            for i, label in enumerate(y):
                if label is not None:
                    validate_y(label, f"y[{i}]")
        if not self._p:
            validate_batch(X)  # when built, the feature space checks the rows it reads
        classes = self._labels.labels
        index = {label: i for i, label in enumerate(classes)}
        yi = np.full(len(X), -1, dtype=np.int64)
        for i, label in enumerate(y):
            if label is not None and self.causal:
                if label not in index:
                    index[label] = len(classes)
                    classes.append(label)
                yi[i] = index[label]
        c = len(classes)
        if not X:
            return np.zeros((0, c)), classes
        parts = self._probs(X) if self._p else None
        if parts is not None:
            self._pred_memo = (list(X), parts)
        if c == 0:
            return np.zeros((len(X), 0)), classes
        return self._causal_mix(parts, yi, c), classes

    def _causal_mix(self, parts: _Parts | None, yi: np.ndarray, c: int) -> np.ndarray:
        m = yi.shape[0]
        comps: list[np.ndarray | None] = [None, None, None]
        if parts is not None and parts.experts is not None:
            pm = parts.experts
            comps[0] = np.pad(pm, ((0, 0), (0, c - pm.shape[1]))) if pm.shape[1] < c else pm
        if not self.causal:
            pn = None if parts is None else parts.neighbours
            if pn is not None and comps[0] is not None:
                pn = np.pad(pn, ((0, 0), (0, c - pn.shape[1])))
                w = self._mix_weights()
                return w[0] * comps[0] + w[1] * pn
            return comps[0] if comps[0] is not None else np.full((m, c), 1.0 / c)
        if self.neighbours and parts is not None and parts.query is not None:
            comps[1] = self._causal_vote(parts.query, parts.bank_near, yi, c)
            self._vote_memo = (parts, yi, c, comps[1])
        comps[2] = self._recent_probs(yi, c)[0]
        w = self._causal_weights([p is not None for p in comps])
        out = np.zeros((m, c))
        for wk, p in zip(w, comps, strict=True):
            if p is not None:
                out += wk * p
        return out

    def _score_causal(self, parts: _Parts | None, yi: np.ndarray) -> None:
        """Fold this block's log-loss of the causal path's three predictors (with the block's
        true labels, as a caller passing them all would have had) into their running
        losses, and move the recent-label histogram past the block."""
        c = len(self._labels)
        comps: list[np.ndarray | None] = [None, None, None]
        if parts is not None and parts.experts is not None:
            pm = parts.experts
            comps[0] = np.pad(pm, ((0, 0), (0, c - pm.shape[1]))) if pm.shape[1] < c else pm
        memo, self._vote_memo = self._vote_memo, None
        if self.neighbours and parts is not None and parts.query is not None:
            if memo is not None and memo[0] is parts and memo[2] == c and np.array_equal(memo[1], yi):
                # the label-aware prediction of these rows had all their labels: its vote is this one
                comps[1] = memo[3]
            else:
                comps[1] = self._causal_vote(parts.query, parts.bank_near, yi, c)
        comps[2], self._recent = self._recent_probs(yi, c)
        rows = np.arange(yi.shape[0])
        loss = np.array(
            [
                # a predictor not there yet counts as the uniform guess
                math.log(c) if p is None else _log_loss(p, rows, yi)
                for p in comps
            ]
        )
        mixed = _MIX_DECAY * self._cmix_loss + (1.0 - _MIX_DECAY) * loss
        if self.neighbours and parts is not None and parts.query is None:
            mixed[1] = self._cmix_loss[1]  # a vote not consulted in this block keeps its score
        self._cmix_loss = mixed

    def _probs(self, X: Sequence[Features]) -> _Parts:
        """The experts' mixture and the neighbour vote for ``X`` (each (B, n_classes)), and
        the rows as the neighbour memory reads them with their distances to it."""
        if self._sparse():
            return self._probs_sparse(X)
        z = self._features.transform(X)
        c = len(self._labels)
        m = z.shape[0]
        # BLAS picks another kernel for a single row (gemv) and may for odd shapes: zero
        # rows pad the call to a multiple of 16, so a row's bits never depend on how many
        # rows came with it (the input context is causal: rows after a row never reach it)
        rows = -(-m // _ROW_TILE) * _ROW_TILE
        if rows != m:
            z = np.concatenate([z, np.zeros((rows - m, z.shape[1]), dtype=z.dtype)])
        pm = self._moe_probs(self._matrix(z, advance=False), c)[:m]
        nb = self._neighbour_parts(z, c)
        return _Parts(pm, None if nb.neighbours is None else nb.neighbours[:m], nb.query, nb.bank_near)

    def _vote_on(self) -> bool:
        """Whether this block consults the neighbour vote. Always on dense rows. On sparse rows
        (hashed words) the vote costs most (each present word against every remembered row:
        a fifth of a block) and often earns little (on the ``text`` stream a weight of 0.08,
        the mixture a tenth of a point less accurate with it than without), so there it runs
        while its weight in the plain or the label-aware mixture is at least
        ``sparse_vote_floor``, and on every ``_VOTE_PROBE``-th block to score it again.
        Decided by the model's state alone (its weights, the blocks learned), never by a
        call's rows."""
        if not self._sparse() or (self._n_seen // self.block) % _VOTE_PROBE == 0:
            return True
        plain = self._mix_weights()[1]
        label_aware = self._causal_weights([True, True, True])[1] if self.causal else 0.0
        return bool(max(plain, label_aware) >= self.sparse_vote_floor)

    def _probs_sparse(self, X: Sequence[Features]) -> _Parts:
        indptr, cols, vals = self._features.transform_sparse(X)
        c, m = len(self._labels), len(X)
        rows = -(-m // _ROW_TILE) * _ROW_TILE  # padded with empty rows, as in _probs
        offsets = np.concatenate([indptr[:-1], np.full(rows - m, indptr[-1])])
        step = (offsets, cols * self._stride, vals)
        gathered = None
        if self._numpy:
            with _one_blas_thread():
                a = self._gather_np(step)
                pm = self._mix_np(a)[:m, :c]
            gathered = (*step, a)
        else:
            with torch.inference_mode():
                st = tuple(torch.from_numpy(t).to(self._dev) for t in step)
                _, _, probs, g = self._forward_t(None, self._gather_t(st))
                pm = self._combine_t(probs, g)[:m, :c].to("cpu").numpy()
        if not self.neighbours or not self._vote_on():
            return _Parts(pm, None, None, None, gathered)
        q = self._project((indptr, cols, vals))
        q = np.concatenate([q, np.zeros((rows - m, q.shape[1]), dtype=q.dtype)])
        nb = self._neighbour_parts(q, c)
        return _Parts(pm, None if nb.neighbours is None else nb.neighbours[:m], nb.query, nb.bank_near, gathered)

    def _moe_probs(self, xm: np.ndarray, c: int) -> np.ndarray:
        """The router-weighted mixture of the experts (B, c)."""
        if self._numpy:
            with _one_blas_thread():
                a = xm @ self._np["p"]["w1"]
                a += self._np["p"]["b1"]
                return self._mix_np(a)[:, :c]
        with torch.inference_mode():
            _, _, probs, g = self._forward_t(torch.from_numpy(xm).to(self._dev))
            return self._combine_t(probs, g)[:, :c].to("cpu").numpy()

    def _probs_before_learning(self, X: Sequence[Features]) -> _Parts | None:
        """The parts of the prediction of ``X`` as the model stands (None before learning).

        The prediction of these very rows is reused when it was the last call; else they are
        computed now the same way (same rows, same shapes, same code), so the result never
        depends on how the caller split its predictions."""
        memo, self._pred_memo = self._pred_memo, None
        if memo is not None and len(memo[0]) == len(X) and all(map(operator.is_, memo[0], X)):
            return memo[1]
        if not self._p:
            return None
        return self._probs(X)

    def _score_mix(self, pm: np.ndarray, pn: np.ndarray, yi: np.ndarray) -> None:
        """Fold this batch's log-loss of the experts and of the neighbour vote (both as they
        were before learning it) into the running losses that weigh them."""
        c = len(self._labels)
        if pm.shape[1] < c:
            # classes first seen in this batch: neither predicted them
            pad = ((0, 0), (0, c - pm.shape[1]))
            pm, pn = np.pad(pm, pad), np.pad(pn, pad)
        rows = np.arange(yi.shape[0])
        loss = np.array([_log_loss(p, rows, yi) for p in (pm, pn)])
        self._mix_loss = _MIX_DECAY * self._mix_loss + (1.0 - _MIX_DECAY) * loss

    def router_choices(self, X: Sequence[Features]) -> list[int]:
        """For each row, the expert the router weighs most (index ``n_experts`` is the
        recent-label expert when ``label_context`` is on); for watching the router over
        time. Dense feature spaces only ([] otherwise); the model is untouched."""
        if not self._p or not X or self._sparse():
            return []
        z = self._features.transform(X)
        m = z.shape[0]
        rows = -(-m // _ROW_TILE) * _ROW_TILE
        if rows != m:
            z = np.concatenate([z, np.zeros((rows - m, z.shape[1]), dtype=z.dtype)])
        xm = self._matrix(z, advance=False)
        if self._numpy:
            with _one_blas_thread():
                g = self._forward_np(xm)[3]
        else:
            with torch.inference_mode():
                g = self._forward_t(torch.from_numpy(xm).to(self._dev))[3].to("cpu").numpy()
        return g[:m].argmax(axis=1).tolist()

    def predict_many_causal(self, X: Sequence[Features], y: Sequence[Label | None]) -> list[Label | None]:
        """Predict each row of ``X`` with the labels ``y`` of the rows before it in the call
        (None: unknown); a row's own label and later ones never reach its prediction."""
        probs, classes = self._causal_matrix(X, y)
        if not classes:
            return [None for _ in X]
        return [classes[i] for i in probs.argmax(axis=1).tolist()]

    def predict_proba_many_causal(
        self, X: Sequence[Features], y: Sequence[Label | None]
    ) -> list[dict[Label, float]]:
        probs, classes = self._causal_matrix(X, y)
        if not classes:
            return [{} for _ in X]
        return [dict(zip(classes, row.tolist(), strict=True)) for row in probs]

    def predict_proba_many(self, X: Sequence[Features]) -> list[dict[Label, float]]:
        if not self._p or not X:
            validate_batch(X)
            return [{} for _ in X]
        labels = self._labels.labels
        return [dict(zip(labels, row.tolist(), strict=True)) for row in self._proba_matrix(X)]

    def predict_many(self, X: Sequence[Features]) -> list[Label | None]:
        if not self._p or not X:
            validate_batch(X)
            return [None for _ in X]
        labels = self._labels.labels
        return [labels[i] for i in self._proba_matrix(X).argmax(axis=1).tolist()]

    # ------------------------------------------------------------------ drift
    def on_drift(self) -> int | None:
        """React to a drift alert: re-initialise the expert with the worst running accuracy.

        Returns the index of the reset expert (None before any learning). The fresh expert
        starts from random weights and zero optimiser moments; the router learns from the
        correctness mask when to trust it.
        """
        if not self._p:
            return None
        j = int(torch.argmin(self._acc).item())
        self._init_expert(j)
        self._pred_memo = None
        self._acc[j] = self._acc.mean()
        return j

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {
            "version": _STATE_VERSION,
            "n_seen": self._n_seen,
            "features": self._features.state_dict(),
            "input_context": self._ema.copy(),
            "neighbour_rows": self._bank_x.copy(),
            "neighbour_labels": self._bank_y.copy(),
            "neighbour_fill": [self._bank_len, self._bank_pos],
            "mix_loss": self._mix_loss.copy(),
            "recent_labels": self._recent.copy(),
            "causal_mix_loss": self._cmix_loss.copy(),
            "labels": self._labels.state_dict(),
            "generator": self._gen.get_state().clone(),
            "built": bool(self._p),
            "waiting": [[dict(x) for x in self._wait_x], list(self._wait_y)],
        }
        if self._p:
            state.update(
                d_cap=self._d_cap,
                c_cap=self._c_cap,
                params=self._flat.detach().to("cpu").clone(),
                exp_avg=self._mflat.detach().to("cpu").clone(),
                exp_avg_sq=self._vflat.detach().to("cpu").clone(),
                step=float(self._step.item()),
                expert_accuracy=self._acc.detach().to("cpu").clone(),
                class_bias=self._class_bias.detach().to("cpu").clone(),
                label_context=self._ctx.detach().to("cpu").clone(),
            )
        return state

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        # version 3 (before the causal path) loads with an empty label history
        if int(state.get("version", 0)) not in (3, _STATE_VERSION):
            raise ValueError(f"unsupported NeuralDriftMoE state version {state.get('version')!r}")
        self._reset()
        self._features.load_state_dict(state["features"])
        self._ema = np.asarray(state["input_context"], dtype=np.float64).copy()
        self._bank_x = np.asarray(state["neighbour_rows"], dtype=np.float32).copy()
        self._bank_y = np.asarray(state["neighbour_labels"], dtype=np.int64).copy()
        self._bank_len, self._bank_pos = (int(v) for v in state["neighbour_fill"])
        self._mix_loss = np.asarray(state["mix_loss"], dtype=np.float64).copy()
        self._recent = np.asarray(state.get("recent_labels", ()), dtype=np.float64).copy()
        self._cmix_loss = np.asarray(
            state.get("causal_mix_loss", np.zeros(_N_CAUSAL)), dtype=np.float64
        ).copy()
        self._labels.load_state_dict(state["labels"])
        self._gen.set_state(torch.as_tensor(state["generator"], dtype=torch.uint8).clone())
        self._n_seen = int(state["n_seen"])
        wait_x, wait_y = state.get("waiting", ([], []))
        self._wait_x, self._wait_y = [dict(x) for x in wait_x], list(wait_y)
        if not state["built"]:
            return
        self._d_cap, self._c_cap = int(state["d_cap"]), int(state["c_cap"])
        self._allocate_all()
        expected = self._flat.numel()
        for name, dst in (
            ("params", self._flat),
            ("exp_avg", self._mflat),
            ("exp_avg_sq", self._vflat),
        ):
            src = torch.as_tensor(state[name], dtype=torch.float32).reshape(-1)
            if src.numel() != expected:
                raise ValueError(
                    f"state {name!r} has {src.numel()} values, expected {expected} for "
                    f"n_experts={self.n_experts}, hidden={self.hidden}, "
                    f"router_hidden={self.router_hidden}"
                )
            dst.copy_(src)
        self._step.fill_(float(state["step"]))
        self._acc.copy_(torch.as_tensor(state["expert_accuracy"], dtype=torch.float32))
        self._class_bias.copy_(torch.as_tensor(state["class_bias"], dtype=torch.float32))
        self._open_classes = 0
        self._ctx.copy_(torch.as_tensor(state["label_context"], dtype=torch.float32))

    @classmethod
    def _unit_test_params(cls) -> dict[str, Any]:
        return {"n_experts": 3, "hidden": 8, "router_hidden": 8, "batch_size": 8, "block": 16, "device": "cpu"}
