"""Compiled passes of the neural DriftMoE's CPU engine (numba, compiled on first use and
cached on disk).

At micro-batch sizes a numpy step is dozens of calls of a few microseconds each on arrays
of a few thousand floats; one compiled pass over the rows does the same arithmetic at the
speed of the arithmetic. The passes work row by row, so a row's forward values never
depend on the rows that came with it.

The model's own arithmetic (``moe_grads``, ``moe_mix``) lets LLVM reassociate sums and
fuse multiply-adds (fastmath ``reassoc``/``contract``) so that it runs as vector code, and
the dense steps' first layer is BLAS's product (scipy's, which numba binds): the results
are the same on every run of one machine, but a CPU with other vector widths or without
FMA may round them differently, as OpenBLAS's kernels do. The other passes do not: Adam is
numpy's float32 passes operation for operation (but for setting subnormal moments to 0),
the running averages and the moments' fold numpy's and scipy's float64 ones, and the votes
make each distance the same way whatever else is in the call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

_VECTOR_SUMS = {"reassoc", "contract"}


@njit(cache=True, error_model="numpy", fastmath=_VECTOR_SUMS)
def _expert_probs(h, w2t, b2, cb, p):  # pragma: no cover - compiled
    """Each expert's softmax over the classes for one row's hidden layer ``h``, into
    ``p`` (K, C); returns nothing. ``w2t`` is the experts' output layer as (K, C, hidden)."""
    k, cc, hd = w2t.shape
    zero = np.float32(0.0)
    for e in range(k):
        he = h[e * hd : (e + 1) * hd]
        mx = zero
        for c in range(cc):
            wc = w2t[e, c]
            s = zero
            for j in range(hd):
                s += he[j] * wc[j]
            s += b2[e, c] + cb[c]
            p[e, c] = s
            if c == 0 or s > mx:
                mx = s
        tot = zero
        for c in range(cc):
            p[e, c] = math.exp(p[e, c] - mx)
            tot += p[e, c]
        for c in range(cc):
            p[e, c] /= tot


@njit(cache=True, error_model="numpy", fastmath=_VECTOR_SUMS)
def _gate(h, r2t, rb2, g):  # pragma: no cover - compiled
    """The router's logits for one row: ``g[q] = rb2[q] + h[K*hidden:] . r2[:, q]``."""
    ng, hr = r2t.shape
    hr_ = h[h.shape[0] - hr :]
    for q in range(ng):
        wq = r2t[q]
        s = np.float32(0.0)
        for j in range(hr):
            s += hr_[j] * wq[j]
        g[q] = s + rb2[q]


@njit(cache=True, error_model="numpy", fastmath=_VECTOR_SUMS)
def moe_mix(a, w2, b2, cb, r2, rb2, temperature, top1, out):  # pragma: no cover - compiled
    """The prediction from the first layer's pre-activations ``a`` (B, F): per row, the
    router-softmax-weighted mixture of the experts' class probabilities (``top1``: the
    probabilities of the expert the router weighs most), into ``out`` (B, C)."""
    b, f = a.shape
    k, _, cc = w2.shape
    ng = r2.shape[1]
    zero = np.float32(0.0)
    w2t = np.ascontiguousarray(w2.transpose(0, 2, 1))
    r2t = np.ascontiguousarray(r2.T)
    inv_t = np.float32(1.0) / np.float32(temperature)
    h = np.empty(f, dtype=np.float32)
    p = np.empty((k, cc), dtype=np.float32)
    g = np.empty(ng, dtype=np.float32)
    for i in range(b):
        for j in range(f):
            h[j] = max(a[i, j], zero)
        _expert_probs(h, w2t, b2, cb, p)
        _gate(h, r2t, rb2, g)
        best = 0
        for q in range(1, k):
            if g[q] > g[best]:
                best = q
        if top1:
            for c in range(cc):
                out[i, c] = p[best, c]
            continue
        mx = g[best] * inv_t
        tot = zero
        for q in range(k):
            g[q] = math.exp(g[q] * inv_t - mx)
            tot += g[q]
        for c in range(cc):
            s = zero
            for q in range(k):
                s += g[q] * p[q, c]
            out[i, c] = s / tot


@njit(cache=True, error_model="numpy", fastmath=_VECTOR_SUMS)
def moe_grads(a, y, w2, b2, cb, r2, rb2, gw2, gb2, gr2, grb2, gb1, da, acc, decay):  # pragma: no cover
    """One step's gradients from the first layer's pre-activations ``a`` (B, F) and the
    class indices ``y``: softmax cross-entropy of every expert on every row, and binary
    cross-entropy of the router against the multi-hot mask of the experts that are right
    (the one giving ``y`` the most probability where none is). Writes the output layers'
    gradients, the first layer's bias gradient ``gb1`` and its pre-activation gradient
    ``da`` (B, F), and folds the step's accuracy of each expert into ``acc``."""
    b, f = a.shape
    k, hd, cc = w2.shape
    kh = k * hd
    ng, hr = r2.shape[1], f - k * hd
    zero, one = np.float32(0.0), np.float32(1.0)
    inv_b = one / np.float32(b)
    gscale = one / np.float32(b * ng)
    w2t = np.ascontiguousarray(w2.transpose(0, 2, 1))
    r2t = np.ascontiguousarray(r2.T)
    gw2t = np.zeros((k, cc, hd), dtype=np.float32)
    gr2t = np.zeros((ng, hr), dtype=np.float32)
    gb2[:] = zero
    grb2[:] = zero
    gb1[:] = zero
    hits = np.zeros(k, dtype=np.float32)
    h = np.empty(f, dtype=np.float32)
    p = np.empty((k, cc), dtype=np.float32)
    mask = np.empty(ng, dtype=np.float32)
    g = np.empty(ng, dtype=np.float32)
    for i in range(b):
        yi = y[i]
        ai, di = a[i], da[i]
        for j in range(f):
            h[j] = max(ai[j], zero)
            di[j] = zero
        _expert_probs(h, w2t, b2, cb, p)
        none, best, best_py = True, 0, np.float32(-1.0)
        for e in range(k):
            top = 0
            for c in range(1, cc):
                if p[e, c] > p[e, top]:
                    top = c
            mask[e] = zero
            if top == yi:
                mask[e] = one
                hits[e] += one
                none = False
            if p[e, yi] > best_py:
                best_py, best = p[e, yi], e
            p[e, yi] -= one
            for c in range(cc):
                p[e, c] *= inv_b
        if none:
            mask[best] = one
        for e in range(k):
            he = h[e * hd : (e + 1) * hd]
            de = di[e * hd : (e + 1) * hd]
            for c in range(cc):
                dl = p[e, c]
                gb2[e, c] += dl
                gw, wc = gw2t[e, c], w2t[e, c]
                for j in range(hd):
                    gw[j] += dl * he[j]
                    de[j] += dl * wc[j]
        _gate(h, r2t, rb2, g)
        hr_, dr = h[kh:], di[kh:]
        for q in range(ng):
            dg = (one / (one + math.exp(-g[q])) - mask[q]) * gscale
            grb2[q] += dg
            gq, wq = gr2t[q], r2t[q]
            for j in range(hr):
                gq[j] += dg * hr_[j]
                dr[j] += dg * wq[j]
        for j in range(f):
            # a select, not a branch: the sign of a pre-activation is a coin toss the CPU
            # mispredicts half the time (a fifth of this pass, as a branch)
            dj = zero if ai[j] <= zero else di[j]
            di[j] = dj
            gb1[j] += dj
    gw2[:] = gw2t.transpose(0, 2, 1)
    gr2[:] = gr2t.T
    for e in range(k):
        acc[e] = acc[e] * np.float32(1.0 - decay) + np.float32(decay) * (hits[e] * inv_b)


_SMALLEST_NORMAL = np.float32(np.finfo(np.float32).tiny)


@njit(cache=True, error_model="numpy", inline="always")
def _flush(x):  # pragma: no cover - compiled
    """``x``, or 0 where it is subnormal (see ``adam``)."""
    return np.float32(0.0) if abs(x) < _SMALLEST_NORMAL else x


@njit(cache=True, error_model="numpy")
def adam(w, m, v, g, lr, step, beta1, beta2, eps):  # pragma: no cover - compiled
    """One Adam step on flat float32 buffers: counts it in ``step`` (float32, one entry),
    takes the bias corrections ``1 - beta**t`` in float64 as Python would, then element by
    element ``m = m*b1 + c1*g``, ``v = v*b2 + (c2*g)*g``, ``w -= ((m*lr)*inv_bc1) /
    (sqrt(v*inv_bc2) + eps)`` in float32. Returns the two bias corrections.

    A moment that decays into float32's subnormal range is set to 0 (``_flush``): there,
    ``m * 0.9`` of a few units in the last place rounds back to itself, so the moments of
    parameters whose gradient stopped (dead units) stay subnormal for good, and every
    operation on a subnormal costs the CPU a hundred cycles (after 300,000 SEA events 40%
    of the moments were). The step such a moment would give is below a unit in the last
    place of any weight above 1e-28, so no weight of normal size moves differently."""
    f32 = np.float32
    step[0] += f32(1.0)
    t = float(step[0])
    bc1 = 1.0 - beta1**t
    bc2 = 1.0 - beta2**t
    b1, b2, c1, c2 = f32(beta1), f32(beta2), f32(1.0 - beta1), f32(1.0 - beta2)
    inv_bc1, inv_bc2, eps32 = f32(1.0 / bc1), f32(1.0 / bc2), f32(eps)
    for i in range(w.shape[0]):
        gi = g[i]
        mi = _flush(m[i] * b1 + c1 * gi)
        vi = _flush(v[i] * b2 + (c2 * gi) * gi)
        m[i] = mi
        v[i] = vi
        w[i] -= ((mi * lr[i]) * inv_bc1) / (np.sqrt(vi * inv_bc2) + eps32)
    return bc1, bc2


@njit(cache=True, error_model="numpy", fastmath=_VECTOR_SUMS)
def _first_layer(x, w1, b1, a):  # pragma: no cover - compiled
    """``a = x @ w1 + b1``: BLAS's product (called from compiled code, without the few
    microseconds a call from Python costs, it is three times a loop's speed), then the
    bias row by row."""
    np.dot(x, w1, a)
    for i in range(a.shape[0]):
        ai = a[i]
        for f in range(ai.shape[0]):
            ai[f] += b1[f]


@njit(cache=True, error_model="numpy", fastmath=_VECTOR_SUMS)
def _first_layer_grad(x, da, gw1):  # pragma: no cover - compiled
    """``gw1 = x.T @ da``, BLAS's product."""
    np.dot(x.T, da, gw1)


@njit(cache=True, error_model="numpy")
def moe_steps(x, y, rows, w1, b1, w2, b2, cb, r2, rb2, gw1, gb1, gw2, gb2, gr2, grb2,
              flat, m, v, gflat, lr, step, acc, decay, beta1, beta2, eps):  # pragma: no cover  # fmt: skip
    """A dense block's learning: steps of ``rows`` rows of ``x`` (B, d) with classes ``y``,
    each the forward pass, ``moe_grads``, the first layer's gradient and Adam on the flat
    buffers (``adam``). The weight and gradient arrays are views into ``flat`` and
    ``gflat``."""
    b = x.shape[0]
    for s in range(0, b, rows):
        e = min(b, s + rows)
        xs = x[s:e]
        a = np.empty((e - s, w1.shape[1]), dtype=np.float32)
        _first_layer(xs, w1, b1, a)
        da = np.empty_like(a)
        moe_grads(a, y[s:e], w2, b2, cb, r2, rb2, gw2, gb2, gr2, grb2, gb1, da, acc, decay)
        _first_layer_grad(xs, da, gw1)
        adam(flat, m, v, gflat, lr, step, beta1, beta2, eps)


@njit(cache=True, error_model="numpy")
def running_average(x, start, a, before):  # pragma: no cover - compiled
    """The exponential average ``s = (1 - a) * x[i] + a * s`` down the rows of ``x`` from
    ``start``: writes each row's average of the rows before it into ``before`` (float64)
    and returns the average after the last row (the float64 operations of scipy's
    ``lfilter([1 - a], [1, -a])``, in its order)."""
    m, d = x.shape
    s = start.copy()
    b0 = 1.0 - a
    for i in range(m):
        for j in range(d):
            before[i, j] = s[j]
            s[j] = b0 * np.float64(x[i, j]) + a * s[j]
    return s


@njit(cache=True, error_model="numpy")
def context_rows(z, start, a, out):  # pragma: no cover - compiled
    """Each row of ``z`` (B, d) beside its deviation from the running average of the rows
    before it (``running_average`` from ``start``): ``out[i, 2j] = z[i, j]`` and ``out[i,
    2j + 1] = z[i, j] - average`` (in float64, rounded to float32 as numpy's mixed
    subtraction and assignment round it). Returns the average after the last row."""
    m, d = z.shape
    s = start.copy()
    b0 = 1.0 - a
    for i in range(m):
        for j in range(d):
            x = np.float64(z[i, j])
            out[i, 2 * j] = z[i, j]
            out[i, 2 * j + 1] = np.float32(x - s[j])
            s[j] = b0 * x + a * s[j]
    return s


@njit(cache=True, error_model="numpy")
def fold_moments(c, v, count, mean, m2):  # pragma: no cover - compiled
    """Fold a batch's values ``v`` (float64) at columns ``c`` into the running per-column
    ``count``, ``mean`` and ``m2`` (float64, in place) by Chan et al.'s parallel combine:
    the batch's sums in entry order, as ``np.bincount`` adds them, and the combine's
    float64 operations in numpy's order, so the moments are numpy's bit for bit (a unit
    test checks) in one pass instead of some twenty calls."""
    d = count.shape[0]
    n_b = np.zeros(d)
    sum_b = np.zeros(d)
    for i in range(c.shape[0]):
        n_b[c[i]] += 1.0
        sum_b[c[i]] += v[i]
    mean_b = np.zeros(d)
    for j in range(d):
        if n_b[j] > 0.0:
            mean_b[j] = sum_b[j] / n_b[j]
    m2_b = np.zeros(d)
    for i in range(c.shape[0]):
        t = v[i] - mean_b[c[i]]
        m2_b[c[i]] += t * t
    for j in range(d):
        if n_b[j] > 0.0:
            n = count[j] + n_b[j]
            delta = mean_b[j] - mean[j]
            mean[j] = mean[j] + delta * n_b[j] / n
            m2[j] = m2[j] + m2_b[j] + delta * delta * count[j] * n_b[j] / n
            count[j] = n


@njit(cache=True, error_model="numpy")
def gather_rows(offsets, idx, vals, w, b, out):  # pragma: no cover - compiled
    """The sparse first layer: row ``i`` of ``out`` is ``sum(vals[e] * w[idx[e]])`` over its
    entries ``offsets[i]:offsets[i + 1]`` (the last row's run to the end), in entry order,
    plus ``b``: the bags ``torch.nn.functional.embedding_bag`` sums with per-entry weights,
    without its dispatch (and its threads)."""
    n, rows, f = idx.shape[0], offsets.shape[0], w.shape[1]
    for i in range(rows):
        hi = offsets[i + 1] if i + 1 < rows else n
        o = out[i]
        o[:] = 0.0
        for e in range(offsets[i], hi):
            v = vals[e]
            src = w[idx[e]]
            for j in range(f):
                o[j] += v * src[j]
        for j in range(f):
            o[j] += b[j]


@njit(cache=True, error_model="numpy")
def csr_values(r, c, v, shift, scale, clip, indptr, z):  # pragma: no cover - compiled
    """Standardised sparse coordinates as CSR: ``z = float32(min(max((v - shift[c]) *
    scale[c], -clip), clip))`` (no clipping when ``clip`` is 0), the float64 operations
    and the rounding of numpy's passes, and ``indptr`` from the rows ``r``. Returns False,
    writing nothing of use, when the rows are not in order (the caller sorts them then)."""
    indptr[:] = 0
    for i in range(r.shape[0]):
        if i and r[i] < r[i - 1]:
            return False
        indptr[r[i] + 1] += 1
    for i in range(1, indptr.shape[0]):
        indptr[i] += indptr[i - 1]
    for i in range(c.shape[0]):
        x = (v[i] - shift[c[i]]) * scale[c[i]]
        if clip > 0.0:
            x = min(max(x, -clip), clip)
        z[i] = np.float32(x)
    return True


def _crc_table() -> np.ndarray:
    t = np.zeros(256, dtype=np.int64)
    for n in range(256):
        c = n
        for _ in range(8):
            c = (0xEDB88320 ^ (c >> 1)) if c & 1 else c >> 1
        t[n] = c
    return t


#: zlib's crc32 table (reflected polynomial 0xEDB88320), for ``word_columns``
CRC_TABLE = _crc_table()


@njit(cache=True, inline="always")
def _fnv(blob, start, end):  # pragma: no cover - compiled
    h = np.uint64(0xCBF29CE484222325)
    for p in range(start, end):
        h = (h ^ np.uint64(blob[p])) * np.uint64(0x100000001B3)
    return h


@njit(cache=True)
def word_slots(names, name_ends, slots):  # pragma: no cover - compiled
    """Fill ``slots`` (int64, a power of two long, -1 when empty) with the open-addressing
    table of the names ``names[name_ends[j-1]:name_ends[j]]`` (UTF-8 bytes) that
    ``word_columns`` probes: FNV-1a of a name's bytes, then linear probing."""
    mask = np.uint64(slots.shape[0] - 1)
    start = 0
    for j in range(name_ends.shape[0]):
        s = np.int64(_fnv(names, start, name_ends[j]) & mask)
        while slots[s] >= 0:
            s = np.int64((np.uint64(s) + np.uint64(1)) & mask)
        slots[s] = j
        start = name_ends[j]


@njit(cache=True)
def word_columns(blob, names, name_ends, name_cols, slots, over_cols, crc_table, out):  # pragma: no cover
    """The column of each name in ``blob``, the names' bytes joined by zero bytes (none
    holds one), once a feature space's width is full: its own column when it is one of the
    named ones (``word_slots``' table, bytes compared), else its overflow bucket's,
    ``over_cols[crc32(name) % len(over_cols)]`` (-1: that bucket has no column yet).
    zlib's crc32, so the buckets are those ``FeatureSpace._bucket`` computes, in one pass
    over the bytes instead of a dict lookup, a string hash and a cache per name."""
    mask = np.uint64(slots.shape[0] - 1)
    buckets = over_cols.shape[0]
    start = 0
    for i in range(out.shape[0]):
        end = start
        while end < blob.shape[0] and blob[end] != 0:
            end += 1
        n = end - start
        col = -1
        s = np.int64(_fnv(blob, start, end) & mask)
        while slots[s] >= 0:
            j = slots[s]
            a = 0 if j == 0 else name_ends[j - 1]
            if name_ends[j] - a == n:
                t = 0
                while t < n and names[a + t] == blob[start + t]:
                    t += 1
                if t == n:
                    col = name_cols[j]
                    break
            s = np.int64((np.uint64(s) + np.uint64(1)) & mask)
        if col < 0:
            c = np.int64(0xFFFFFFFF)
            for p in range(start, end):
                c = crc_table[(c ^ np.int64(blob[p])) & 0xFF] ^ (c >> 8)
            col = over_cols[(c ^ 0xFFFFFFFF) % buckets]
        out[i] = col
        start = end + 1


@njit(cache=True, error_model="numpy")
def sparse_rmsprop(w, vw, idx, vals, row_of, da, lr, b2, c2, eps):  # pragma: no cover
    """The sparse first layer's step: for each input row the step's entries touch, its
    gradient summed over those entries in batch order, then a lazy RMSprop step on that row
    whose second moment starts at the row's first gradient squared (see
    ``NeuralDriftMoE._sparse_step_t`` for why).

    The gradient is ``g += value * da[batch row]`` entry by entry, and the step the same
    float32 operations in the same order as numpy's elementwise passes would make (``v =
    g*g`` where ``v`` is 0, else ``v*b2 + (g*g)*(1-b2)``; ``w -= (g*lr) / (sqrt(v) +
    eps)``), so the result is theirs bit for bit (a unit test checks; subnormal moments are
    set to 0 as in ``adam``). As one loop, with the entries of a row chained in a linked
    list rather than sorted, it reads and writes each row once instead of a sort, a sparse
    product and about twenty passes. Rows are visited in ascending order: each row's update
    is its own, and the weights and moments are read front to back rather than in the order
    words happen to come, which the memory prefetches better (a sixth less time on a hashed
    vocabulary)."""
    f, n = da.shape[1], idx.shape[0]
    g = np.empty(f, dtype=np.float32)
    head = np.full(w.shape[0], -1, dtype=np.int64)
    nxt = np.empty(n, dtype=np.int64)
    for e in range(n - 1, -1, -1):
        nxt[e] = head[idx[e]]
        head[idx[e]] = e
    for r in range(w.shape[0]):
        e = head[r]
        if e < 0:
            continue
        g[:] = 0.0
        while e >= 0:
            val = vals[e]
            src = da[row_of[e]]
            for j in range(f):
                g[j] += val * src[j]
            e = nxt[e]
        for j in range(f):
            gj = g[j]
            v0 = vw[r, j]
            v = gj * gj if v0 == 0.0 else _flush(v0 * b2 + (gj * gj) * c2)
            vw[r, j] = v
            w[r, j] -= (gj * lr[j]) / (np.sqrt(v) + eps)


@njit(cache=True, error_model="numpy")
def project(indptr, cols, vals, width, out):  # pragma: no cover - compiled
    """CSR rows hashed down to ``width`` dims into ``out`` (rows, width), zeroed here:
    column j < width keeps its place, a later one lands in a fixed pseudo-random slot
    (Knuth's multiplicative hash) with a fixed sign; entries of one slot add up in entry
    order."""
    out[:, :] = 0.0
    for i in range(indptr.shape[0] - 1):
        for e in range(indptr[i], indptr[i + 1]):
            c = cols[e]
            if c < width:
                out[i, c] += vals[e]
            else:
                h = (np.uint64(c) * np.uint64(2654435761)) & np.uint64(0xFFFFFFFF)
                slot = (h >> np.uint64(1)) % np.uint64(width)
                v = vals[e]
                out[i, slot] += -v if (h & np.uint64(1)) == np.uint64(1) else v


@njit(cache=True, error_model="numpy", inline="always")
def _insert(vals, idx, kk, filled, v, j):  # pragma: no cover - compiled
    """Insert ``(v, j)`` into the ``filled`` best of a sorted buffer of at most ``kk``;
    returns the new fill. An entry equal to a kept one goes after it: earlier wins a tie."""
    if filled < kk:
        p = filled
        filled += 1
    elif v < vals[kk - 1]:
        p = kk - 1
    else:
        return filled
    while p > 0 and vals[p - 1] > v:
        vals[p] = vals[p - 1]
        idx[p] = idx[p - 1]
        p -= 1
    vals[p] = v
    idx[p] = j
    return filled


# groups the nearest-row search splits a row's distances into (strided: group g holds
# entries g, g + 128, ...), half as many under 512 entries; under four entries a group it
# scans them all. 128 groups of 8 read 150 entries of 1,024 after the minima, 64 of 16 read
# 270: the vote on SEA went from 0.90 to 0.78 µs an event
_GROUPS = 128
# the neighbour count (the default) whose sets of groups, g mod 8, fill vector lanes
_LANES = 8


@njit(cache=True, error_model="numpy", inline="always")
def _bounded(dist, n, k, groups, gmin, sel, cand_v, cand_j):  # pragma: no cover - compiled
    """``_nearest``'s candidates with ``groups`` groups (a constant where it is inlined, so
    that the passes over the groups compile to vector code): their count, or -1 when ties
    leave most groups under the bound."""
    rows = n // groups
    for g in range(groups):
        gmin[g] = dist[g]
    for r in range(1, rows):
        base = r * groups
        for g in range(groups):
            v = dist[base + g]
            gmin[g] = v if v < gmin[g] else gmin[g]
    if k == _LANES:
        # the sets g mod 8 with their minima side by side (cand_v's head, not yet written,
        # holds them): a vector pass a row of 8 groups, where k sets of a count only known
        # at run time take a scalar chain each
        low = cand_v[:_LANES]
        low[:] = gmin[:_LANES]
        for g0 in range(_LANES, groups, _LANES):
            for s in range(_LANES):
                v = gmin[g0 + s]
                low[s] = v if v < low[s] else low[s]
        u = low[0]
        for s in range(1, _LANES):
            u = low[s] if low[s] > u else u
    else:
        u = np.float32(-np.inf)
        for s in range(k):
            low_s = gmin[s]
            for g in range(s + k, groups, k):
                low_s = gmin[g] if gmin[g] < low_s else low_s
            u = low_s if low_s > u else u
    ng = 0
    for g in range(groups):
        sel[ng] = g
        ng += gmin[g] <= u
    if 2 * ng > groups:
        return -1
    m = 0
    for r in range(rows):
        base = r * groups
        for t in range(ng):
            j = base + sel[t]
            v = dist[j]
            cand_v[m] = v
            cand_j[m] = j
            m += v <= u
    for j in range(rows * groups, n):
        v = dist[j]
        cand_v[m] = v
        cand_j[m] = j
        m += v <= u
    return m


@njit(cache=True, error_model="numpy", inline="always")
def _nearest(dist, n, k, vals, idx, gmin, sel, cand_v, cand_j):  # pragma: no cover
    """The ``k`` smallest of ``dist[:n]`` into ``vals``/``idx``, smallest first and the
    earlier entry on a tie: exactly the result of inserting every entry in index order.

    Most entries are far from the ``k`` nearest, and inserting each costs branches the CPU
    mispredicts. So: each group's minimum (a vector pass), and ``u`` the largest of the
    minima of ``k`` disjoint sets of groups, which are ``k`` distinct entries, so that at
    least ``k`` entries are <= ``u`` and no entry above ``u`` can be among the nearest.
    Then only the groups whose minimum is <= ``u`` are read, their entries <= ``u`` kept
    in index order and inserted. When ties leave most groups under ``u`` (rows on a grid),
    every entry is inserted as before."""
    m = -1
    if n >= 4 * _GROUPS and 2 * k <= _GROUPS:
        m = _bounded(dist, n, k, _GROUPS, gmin, sel, cand_v, cand_j)
    elif n >= 4 * (_GROUPS // 2) and 2 * k <= _GROUPS // 2:
        m = _bounded(dist, n, k, _GROUPS // 2, gmin, sel, cand_v, cand_j)
    if m < 0:
        for j in range(n):
            cand_v[j] = dist[j]
            cand_j[j] = j
        m = n
    filled = 0
    for t in range(m):
        filled = _insert(vals, idx, k, filled, cand_v[t], cand_j[t])


@njit(cache=True, error_model="numpy", inline="always")
def _column_norms(cols_t):  # pragma: no cover - compiled
    """Each column's squared norm, for rows held as columns ``cols_t`` (d, n)."""
    sq = np.zeros(cols_t.shape[1], dtype=np.float32)
    for t in range(cols_t.shape[0]):
        col = cols_t[t]
        for j in range(sq.shape[0]):
            sq[j] += col[j] * col[j]
    return sq


@njit(cache=True, error_model="numpy", inline="always")
def _distances(qi, cols_t, sq, n, out):  # pragma: no cover - compiled
    """``out[j] = sq[j] - 2 qi . col_j`` for the first ``n`` columns of ``cols_t`` (d, ·):
    a row's distance to them less its own norm, adding up only the row's nonzero entries
    in column order. Up to four nonzero entries (narrow rows) take one pass over the
    columns, the sums kept in registers; more take a vector pass each. Either way every
    entry is ``((0 + q_a c_a) + q_b c_b) + ...`` then ``* -2 + sq``, the same float32
    operations in the same order."""
    two, zero = np.float32(-2.0), np.float32(0.0)
    m, t0, t1, t2, t3 = 0, 0, 0, 0, 0
    for t in range(qi.shape[0]):
        if qi[t] != 0.0:
            if m == 0:
                t0 = t
            elif m == 1:
                t1 = t
            elif m == 2:
                t2 = t
            elif m == 3:
                t3 = t
            m += 1
    if m == 0:
        for j in range(n):
            out[j] = zero * two + sq[j]
    elif m == 1:
        a, ca = qi[t0], cols_t[t0]
        for j in range(n):
            out[j] = (zero + a * ca[j]) * two + sq[j]
    elif m == 2:
        a, ca, b, cb = qi[t0], cols_t[t0], qi[t1], cols_t[t1]
        for j in range(n):
            out[j] = ((zero + a * ca[j]) + b * cb[j]) * two + sq[j]
    elif m == 3:
        a, ca, b, cb, c, cc = qi[t0], cols_t[t0], qi[t1], cols_t[t1], qi[t2], cols_t[t2]
        for j in range(n):
            out[j] = (((zero + a * ca[j]) + b * cb[j]) + c * cc[j]) * two + sq[j]
    elif m == 4:
        a, ca, b, cb = qi[t0], cols_t[t0], qi[t1], cols_t[t1]
        c, cc, e, ce = qi[t2], cols_t[t2], qi[t3], cols_t[t3]
        for j in range(n):
            out[j] = ((((zero + a * ca[j]) + b * cb[j]) + c * cc[j]) + e * ce[j]) * two + sq[j]
    else:
        out[:n] = 0.0
        for t in range(qi.shape[0]):
            qt = qi[t]
            if qt == 0.0:
                continue
            col = cols_t[t]
            for j in range(n):
                out[j] += qt * col[j]
        for j in range(n):
            out[j] = out[j] * two + sq[j]


@njit(cache=True, error_model="numpy")
def bank_votes(q, bank_t, prod, bank_sq, bank_y, k, near_d, near_y, votes):  # pragma: no cover
    """The neighbour vote over the remembered rows. A query row's distance to bank row j
    (less its own norm, the same for the whole row) is ``bank_sq[j] - 2 q.b_j``: from the
    products ``prod`` (B, n) and ``bank_sq`` when given (wide rows: a GEMM makes them
    best), else (``prod`` with no rows) computed here from ``q`` (B, d) and the bank as
    columns ``bank_t`` (d, n), skipping the row's zero entries: a few multiply-adds a
    pair for narrow rows (where a GEMM with an inner size of a few costs more than the
    search) and for mostly-zero ones. Writes each row's ``k``
    nearest (distance, class), nearest first and the earlier row on a tie, and its vote:
    class shares ``(count + 0.1) / (k + 0.1 * C)``."""
    narrow = prod.shape[0] == 0
    b = q.shape[0]
    n = bank_t.shape[1] if narrow else prod.shape[1]
    c = votes.shape[1]
    vals = np.empty(k, dtype=np.float32)
    idx = np.empty(k, dtype=np.int64)
    dist = np.empty(n, dtype=np.float32)
    gmin, sel = np.empty(_GROUPS, dtype=np.float32), np.empty(_GROUPS, dtype=np.int64)
    cand_v, cand_j = np.empty(n, dtype=np.float32), np.empty(n, dtype=np.int64)
    two = np.float32(-2.0)
    if narrow:
        bank_sq = _column_norms(bank_t)
    for i in range(b):
        if narrow:
            _distances(q[i], bank_t, bank_sq, n, dist)
        else:
            row = prod[i]
            for j in range(n):
                dist[j] = row[j] * two + bank_sq[j]
        _nearest(dist, n, k, vals, idx, gmin, sel, cand_v, cand_j)
        for c_ in range(c):
            votes[i, c_] = 0.1
        for t in range(k):
            lab = bank_y[idx[t]]
            near_d[i, t] = vals[t]
            near_y[i, t] = lab
            votes[i, lab] += 1.0
        for c_ in range(c):
            votes[i, c_] /= k + 0.1 * c


@njit(cache=True, error_model="numpy")
def earlier_distances(q, q_t, out):  # pragma: no cover - compiled
    """``out[i, j]`` for ``j < i``: row i's distance to the earlier row j less row i's own
    norm, ``|q_j|^2 - 2 q_i.q_j``, for narrow or mostly-zero rows ``q`` (m, d) with ``q_t``
    their columns (d, m): each row adds up only its nonzero entries' columns, in column
    order, so an entry's bits never depend on how many rows came with it."""
    sq = _column_norms(q_t)
    for i in range(q.shape[0]):
        _distances(q[i], q_t, sq, i, out[i])


@njit(cache=True, error_model="numpy")
def causal_votes(between, near_d, near_y, y, k, votes):  # pragma: no cover - compiled
    """The neighbour vote of each row over its ``near`` bank rows (zero columns when the
    bank is empty) and the call's earlier rows with a known class (``y >= 0``): the ``k``
    nearest of that union, bank rows first on a tie, then earlier rows. Nothing after a
    row, nor its own class, reaches its vote. Shares ``(count + 0.1) / (found + 0.1 * C)``.
    ``between[i, j]`` (``j < i``) is row i's distance to the earlier row j less row i's own
    norm (``earlier_distances``, or products a GEMM made for wide dense rows)."""
    m = y.shape[0]
    kb = near_d.shape[1]
    c = votes.shape[1]
    kk = min(k, kb + m)
    vals = np.empty(kk, dtype=np.float32)
    idx = np.empty(kk, dtype=np.int64)
    for i in range(m):
        filled = 0
        for t in range(kb):
            filled = _insert(vals, idx, kk, filled, near_d[i, t], t)
        for j in range(i):
            if y[j] >= 0:
                filled = _insert(vals, idx, kk, filled, between[i, j], kb + j)
        for c_ in range(c):
            votes[i, c_] = 0.1
        for t in range(filled):
            j = idx[t]
            votes[i, near_y[i, j] if j < kb else y[j - kb]] += 1.0
        for c_ in range(c):
            votes[i, c_] /= filled + 0.1 * c


_WARM = False


def warm() -> None:
    """Compile every pass (or load it from numba's disk cache) with the argument types the
    model calls it with, once a process: then no learning step or prediction pays for it."""
    global _WARM
    if _WARM:
        return
    f32 = np.float32
    k, hd, cc, hr = 1, 1, 2, 1
    a = np.zeros((1, k * hd + hr), dtype=f32)
    w2, b2, cb = np.zeros((k, hd, cc), f32), np.zeros((k, cc), f32), np.zeros(cc, f32)
    r2, rb2 = np.zeros((hr, k), f32), np.zeros(k, f32)
    y = np.zeros(1, dtype=np.int64)
    moe_mix(a, w2, b2, cb, r2, rb2, 1.0, False, np.zeros((1, cc), f32))
    grads = (np.zeros_like(w2), np.zeros_like(b2), np.zeros_like(r2), np.zeros_like(rb2))
    moe_grads(a, y, w2, b2, cb, r2, rb2, *grads, np.zeros(a.shape[1], f32), np.zeros_like(a), np.zeros(k, f32), 0.05)
    flat = np.zeros(1, f32)
    one = f32(1.0)
    adam(flat, flat.copy(), flat.copy(), flat.copy(), flat.copy(), np.zeros(1, f32), 0.9, 0.999, 1e-8)
    w1, b1 = np.zeros((1, a.shape[1]), f32), np.zeros(a.shape[1], f32)
    moe_steps(np.zeros((1, 1), f32), y, 1, w1, b1, w2, b2, cb, r2, rb2, np.zeros_like(w1), np.zeros_like(b1), *grads,
              flat, flat.copy(), flat.copy(), flat.copy(), flat.copy(), np.zeros(1, f32), np.zeros(k, f32), 0.05,
              0.9, 0.999, 1e-8)  # fmt: skip
    idx = np.zeros(1, dtype=np.int64)
    sparse_rmsprop(w1, w1.copy(), idx, np.zeros(1, f32), idx, a, b1, one, one, one)
    project(np.zeros(2, dtype=np.int64), idx, np.zeros(1, f32), 1, np.zeros((1, 1), f32))
    fold_moments(idx, np.zeros(1), np.zeros(1), np.zeros(1), np.zeros(1))
    gather_rows(idx, idx, np.zeros(1, f32), w1, b1, np.zeros((1, w1.shape[1]), f32))
    csr_values(idx, idx, np.zeros(1), np.zeros(1), np.ones(1), 1.0, np.zeros(2, dtype=np.int64), np.zeros(1, f32))
    blob = np.zeros(1, dtype=np.uint8)
    word_slots(blob, np.ones(1, dtype=np.int64), np.full(2, -1, dtype=np.int64))
    word_columns(blob, blob, idx, idx, np.full(2, -1, dtype=np.int64), idx, CRC_TABLE, idx.copy())
    running_average(np.zeros((1, 1)), np.zeros(1), 0.5, np.zeros((1, 1)))
    context_rows(np.zeros((1, 1), f32), np.zeros(1), 0.5, np.zeros((1, 2), f32))
    near_d, near_y = np.zeros((1, 1), f32), np.zeros((1, 1), dtype=np.int64)
    for prod in (np.zeros((0, 1), f32), np.zeros((1, 1), f32)):
        bank_votes(np.zeros((1, 1), f32), np.zeros((1, 1), f32), prod, np.zeros(1, f32), y, 1, near_d, near_y, np.zeros((1, 2)))
    earlier_distances(np.zeros((1, 1), f32), np.zeros((1, 1), f32), np.zeros((1, 1), f32))
    causal_votes(np.zeros((1, 1), f32), near_d, near_y, y, 1, np.zeros((1, 2)))
    _WARM = True
