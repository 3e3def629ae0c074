"""Feature dicts to dense matrices, and labels to class indices, for neural learners.

``FeatureSpace`` keeps one column per numeric (or bool) feature and one per ``name=value``
pair of a string feature (or one per hash bucket when ``hash_dim`` is set). Columns are
appended in first-seen order, so two runs over the same stream build the same space.
With ``width`` set, at most that many features get a column of their own: features first
seen after that are hashed (crc32 of the name, or of ``name=value``) into ``hash_buckets``
shared columns, so the space, its statistics and every model weight on it stay bounded
whatever the vocabulary (bags of words, one-hot ids).

Numeric columns are standardised with running (Welford/Chan) statistics kept in float64.
A column present in at least half of the rows learned is dense: a missing value is imputed
with its mean, i.e. 0 after standardising. A column present in fewer rows is sparse (a
word, an id): missing means 0, and a present value is divided by the root mean square of
its present values without centring, so absence stays 0 and a row costs only the features
it holds (centring would turn a word that is always 1 when present into a constant 0).
``transform_sparse`` gives the standardised rows as CSR coordinates for sparse first layers.

``LabelSpace`` maps labels to ``0..C-1`` in first-seen order.
"""

from __future__ import annotations

import itertools
import math
import operator
import zlib
from collections.abc import Hashable, Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np

from learners.exceptions import InvalidInputError

#: standardised values are clipped to this many standard deviations
CLIP_SD = 10.0
# a categorical-key cache bigger than this is dropped: with hashing the key set is unbounded
_HASH_CACHE_MAX = 200_000

_NUM, _CAT, _HASH, _OVER = 0, 1, 2, 3
# value types taken by the vectorised path (exact types: subclasses go item by item)
_PLAIN_NUMBERS = frozenset({float, int, bool})
_PLAIN_VALUES = _PLAIN_NUMBERS | {str}
_NUMBER = (int, float, np.integer, np.floating)
_DICTS = frozenset({dict})


class _WordTable(NamedTuple):
    """``word_columns``' tables (see ``FeatureSpace._build_words``)."""

    names: np.ndarray  # the named numeric features' names, UTF-8 bytes end to end
    ends: np.ndarray  # where each name's bytes end
    cols: np.ndarray  # each name's column
    slots: np.ndarray  # the open-addressing table over the names
    over: np.ndarray  # each overflow bucket's column, -1 while it has none


class FeatureSpace:
    """Feature dicts → dense float32 matrices with a growing set of columns.

    Parameters
    ----------
    standardize
        Standardise numeric columns with their running mean and standard deviation
        (population, ``ddof=0``), clipped to ±10 sd. Off: raw values, missing → 0.
    hash_dim
        When set, string features are hashed (crc32 of ``name=value``) into this many
        buckets instead of one column per category, bounding the width of the space.
    width
        At most this many named columns (numeric features and ``name=value`` pairs); those
        first seen later share ``hash_buckets`` hashed columns (default: ``width``). None:
        unbounded.
    """

    def __init__(
        self,
        standardize: bool = True,
        hash_dim: int | None = None,
        width: int | None = None,
        hash_buckets: int | None = None,
    ) -> None:
        if hash_dim is not None and hash_dim < 1:
            raise ValueError(f"hash_dim must be a positive integer or None, got {hash_dim!r}")
        if width is not None and width < 1:
            raise ValueError(f"width must be a positive integer or None, got {width!r}")
        if hash_buckets is not None and hash_buckets < 1:
            raise ValueError(f"hash_buckets must be a positive integer or None, got {hash_buckets!r}")
        self.standardize = standardize
        self.hash_dim = hash_dim
        self.width = width
        self.hash_buckets = hash_buckets
        self._reset()

    @property
    def _buckets(self) -> int:
        return self.hash_buckets or self.width or 1

    def _reset(self) -> None:
        self._num_index: dict[str, int] = {}
        self._cat_index: dict[tuple[str, str], int] = {}
        self._hash_index: dict[int, int] = {}
        # overflow bucket -> column, for features first seen once ``width`` were named
        self._over_index: dict[int, int] = {}
        self._named = 0
        # rows learned, against which a column's presence is measured
        self._rows = 0
        # (name, value) -> bucket, and numeric name -> column for the named ones and the
        # overflow ones met lately (empty until the width is full): caches only, rebuilt
        # on demand, never in the state
        self._over_cache: dict[str, int] = {}
        self._bucket_cache: dict[tuple[str, str], int] = {}
        # the compiled lookup's tables once the width is full (``_build_words``); a cache
        self._words: _WordTable | None = None
        self._names: list[str] = []
        self._kinds: list[int] = []
        self._keys: list[Any] = []
        cap = 16
        self._count = np.zeros(cap, dtype=np.float64)
        self._mean = np.zeros(cap, dtype=np.float64)
        self._m2 = np.zeros(cap, dtype=np.float64)
        # the last transform's scan, for the learn that usually follows the predict on the
        # same rows (see update_and_transform); a cache only, never in the state
        self._memo: tuple[list[Any], int, tuple[np.ndarray, ...]] | None = None

    # ------------------------------------------------------------------ properties
    @property
    def dim(self) -> int:
        return len(self._names)

    @property
    def has_overflow(self) -> bool:
        """Some features share hashed overflow columns (so a row may hit one twice)."""
        return bool(self._over_index)

    @property
    def columns(self) -> list[str]:
        return list(self._names)

    @property
    def mean(self) -> np.ndarray:
        """Running mean per column (0 for categorical columns)."""
        return self._mean[: self.dim].copy()

    @property
    def std(self) -> np.ndarray:
        """Running population standard deviation per column (0 for categorical columns)."""
        n = self._count[: self.dim]
        with np.errstate(invalid="ignore", divide="ignore"):
            var = np.where(n > 0, self._m2[: self.dim] / np.maximum(n, 1), 0.0)
        return np.sqrt(var)

    # ------------------------------------------------------------------ growth
    def _add_column(self, name: str, kind: int, key: Any) -> int:
        col = len(self._names)
        if col >= self._count.shape[0]:
            new = max(16, 2 * self._count.shape[0])
            for attr in ("_count", "_mean", "_m2"):
                old = getattr(self, attr)
                grown = np.zeros(new, dtype=np.float64)
                grown[: old.shape[0]] = old
                setattr(self, attr, grown)
        self._names.append(name)
        self._kinds.append(kind)
        self._keys.append(key)
        return col

    def _bucket(self, name: str, value: str | None, modulus: int) -> int:
        key = (name, value, modulus)
        b = self._bucket_cache.get(key)
        if b is None:
            # crc32, not hash(): Python's string hash is salted per process
            text = name if value is None else f"{name}={value}"
            b = zlib.crc32(text.encode()) % modulus
            if len(self._bucket_cache) >= _HASH_CACHE_MAX:
                self._bucket_cache.clear()
            self._bucket_cache[key] = b
        return b

    def _full(self) -> bool:
        return self.width is not None and self._named >= self.width

    def _overflow_column(self, name: str, value: str | None, grow: bool) -> int:
        """The shared hashed column of a feature first seen after ``width`` were named."""
        b = self._bucket(name, value, self._buckets)
        col = self._over_index.get(b)
        if col is None:
            if not grow:
                return -1
            col = self._add_column(f"overflow_{b}", _OVER, b)
            self._over_index[b] = col
            if self._words is not None:
                self._words.over[b] = col
        return col

    def _numeric_column(self, name: str, grow: bool, row: int) -> int:
        col = self._num_index.get(name)
        if col is None:
            if not isinstance(name, str):
                raise InvalidInputError(f"X[{row}]: feature names must be strings, got {name!r}")
            if self._full():
                return self._overflow_column(name, None, grow)
            if not grow:
                return -1
            col = self._add_column(name, _NUM, name)
            self._num_index[name] = col
            self._named += 1
        return col

    def _column(self, name: str, value: str, grow: bool, row: int) -> int:
        """Column of one (string feature, value) pair; -1 when unknown and not growing."""
        if not isinstance(name, str):
            raise InvalidInputError(f"X[{row}]: feature names must be strings, got {name!r}")
        if self.hash_dim is not None:
            b = self._bucket(name, value, self.hash_dim)
            col = self._hash_index.get(b)
            if col is None:
                if not grow:
                    return -1
                col = self._add_column(f"hash_{b}", _HASH, b)
                self._hash_index[b] = col
            return col
        ckey = (name, value)
        col = self._cat_index.get(ckey)
        if col is None:
            if self._full():
                return self._overflow_column(name, value, grow)
            if not grow:
                return -1
            col = self._add_column(f"{name}={value}", _CAT, [name, value])
            self._cat_index[ckey] = col
            self._named += 1
        return col

    def _scatter(
        self, X: Sequence[Mapping[str, Any]], grow: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Sparse coordinates of ``X``: rows, columns, values and an is-numeric flag.

        Validates as it goes (the message names the row and feature). When growing and a
        row is invalid, the columns added by this call are removed again, so a rejected
        batch leaves the space as it was.
        """
        dim0 = self.dim
        try:
            return self._scatter_unchecked(X, grow)
        except Exception:
            if self.dim > dim0:
                self._truncate(dim0)
            raise

    def _truncate(self, dim: int) -> None:
        for col in range(dim, self.dim):
            kind, key = self._kinds[col], self._keys[col]
            if kind == _NUM:
                del self._num_index[key]
                self._named -= 1
            elif kind == _CAT:
                del self._cat_index[(key[0], key[1])]
                self._named -= 1
            elif kind == _OVER:
                del self._over_index[key]
            else:
                del self._hash_index[key]
        self._over_cache = {}
        self._words = None
        del self._names[dim:], self._kinds[dim:], self._keys[dim:]
        self._count[dim:] = 0.0
        self._mean[dim:] = 0.0
        self._m2[dim:] = 0.0

    @staticmethod
    def _uniform_rows(X: Sequence[Any]) -> tuple[tuple[Any, ...], list[Any]] | None:
        """The usual batch: plain dicts with the first row's keys in its order, every value a
        plain number. Its keys and all rows' values in one flat list, or None for anything
        else. Checked and read with C-level passes over the rows, no Python loop."""
        if not X or not _DICTS.issuperset(map(type, X)):
            return None
        keys = tuple(X[0])
        # every row's keys, one row after another, against the first row's repeated: a dict
        # holds no key twice, so no row can be shorter or longer than the first, and each
        # row's keys are the first row's in its order
        if list(itertools.chain.from_iterable(X)) != list(keys) * len(X):
            return None
        vals = list(itertools.chain.from_iterable(map(dict.values, X)))
        if not _PLAIN_NUMBERS.issuperset(map(type, vals)):
            return None
        return keys, vals

    def _ragged_block(
        self, X: Sequence[Any], grow: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """Coordinates of plain dicts of plain numbers whose keys differ from row to row (bags
        of words, sparse ids): one pass over all items, no per-row numpy call. None when a
        row is anything else."""
        if not _DICTS.issuperset(map(type, X)):
            return None
        vals_l = list(itertools.chain.from_iterable(map(dict.values, X)))
        if not _PLAIN_NUMBERS.issuperset(map(type, vals_l)):
            return None
        keys = list(itertools.chain.from_iterable(X))
        lens = np.fromiter(map(len, X), np.int64, len(X))
        rows = np.repeat(np.arange(len(X), dtype=np.int64), lens)
        cols = self._word_columns(keys) if self._full() else None
        if cols is not None:
            if grow:
                # buckets without a column yet, in item order, as the general path adds them
                for p in np.flatnonzero(cols < 0).tolist():
                    cols[p] = self._numeric_column(keys[p], True, int(rows[p]))
        else:
            # one lookup per item: named columns and the overflow columns of names past the width
            lookup = self._over_cache if self._over_cache else self._num_index
            get = lookup.get
            cols = np.fromiter(map(get, keys, itertools.repeat(-1)), np.int64, len(keys))
            misses = np.flatnonzero(cols < 0).tolist()
            if misses:
                self._resolve_misses(keys, rows, cols, misses, grow)
        vals = np.array(vals_l, dtype=np.float64)
        bad = ~np.isfinite(vals)
        if bad.any():
            p = int(np.flatnonzero(bad)[0])
            raise InvalidInputError(f"X[{rows[p]}][{keys[p]!r}] must be finite, got {vals[p]!r}")
        keep = cols >= 0
        if not keep.all():
            return rows[keep], cols[keep], vals[keep]
        return rows, cols, vals

    def _word_columns(self, keys: list[Any]) -> np.ndarray | None:
        """The columns of plain ASCII names once the width is full (-1: an overflow bucket
        with no column yet), by one compiled pass over their bytes; None for other names,
        which take the dict lookups."""
        from learners.neural_kernels import CRC_TABLE, word_columns

        try:
            text = "\0".join(keys)
        except TypeError:  # a name that is not a str: the general path says which
            return None
        if not text.isascii() or text.count("\0") != len(keys) - 1:
            return None
        words = self._words if self._words is not None else self._build_words()
        out = np.empty(len(keys), dtype=np.int64)
        word_columns(np.frombuffer(text.encode("ascii"), dtype=np.uint8), *words, CRC_TABLE, out)
        return out

    def _build_words(self) -> _WordTable:
        """``word_columns``' tables, kept while the width is full, when no name is added: a
        new overflow column is written into ``over``."""
        from learners.neural_kernels import word_slots

        enc = [k.encode("utf-8", "surrogatepass") for k in self._num_index]
        names = np.frombuffer(b"".join(enc), dtype=np.uint8)
        ends = np.cumsum(np.fromiter(map(len, enc), np.int64, len(enc)))
        cols = np.fromiter(self._num_index.values(), np.int64, len(enc))
        slots = np.full(1 << (2 * len(enc) + 1).bit_length(), -1, dtype=np.int64)
        word_slots(names, ends, slots)
        over = np.full(self._buckets, -1, dtype=np.int64)
        for b, col in self._over_index.items():
            over[b] = col
        self._words = _WordTable(names, ends, cols, slots, over)
        return self._words

    def _resolve_misses(
        self, keys: list[Any], rows: np.ndarray, cols: np.ndarray, misses: list[int], grow: bool
    ) -> None:
        """Columns of the names ``_ragged_block``'s lookup did not know, in place. Past the
        width nearly every miss is a word seen for the first time: its overflow column is its
        crc32 bucket's, found here without the general path's per-name calls."""
        over, over_index, buckets, crc32 = self._over_cache, self._over_index, self._buckets, zlib.crc32
        names = [keys[p] for p in misses]
        found: list[int | None] = [None] * len(names)
        if self._full() and all(type(k) is str for k in names):
            # the bucket _overflow_column would compute for a name (value None), in one pass
            found = [over_index.get(crc32(k.encode()) % buckets) for k in names]
        resolved = []
        for i, col in enumerate(found):
            if col is None:
                col = self._numeric_column(names[i], grow, int(rows[misses[i]]))
                if col >= 0 and self._kinds[col] == _OVER:
                    found[i] = col
            resolved.append(col)
        cols[misses] = resolved
        cached = [(k, col) for k, col in zip(names, found, strict=True) if col is not None]
        if not over or len(over) + len(cached) > _HASH_CACHE_MAX:
            over.clear()
            over.update(self._num_index)
        over.update(cached)

    def _numeric_block(
        self, keys: Sequence[Any], idx: list[int], rows: Sequence[Any], grow: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Coordinates of rows ``idx`` whose values under ``keys`` are ``rows`` (plain numbers,
        one list per row or all rows' in one flat list)."""
        cols = np.fromiter(
            (self._numeric_column(k, grow, idx[0]) for k in keys), np.int64, len(keys)
        )
        vals = np.array(rows, dtype=np.float64).reshape(len(idx), len(keys))
        bad = ~np.isfinite(vals)
        if bad.any():
            r, c = np.argwhere(bad)[0]
            raise InvalidInputError(f"X[{idx[r]}][{keys[c]!r}] must be finite, got {vals[r, c]!r}")
        keep = cols >= 0
        return (
            np.repeat(np.asarray(idx, dtype=np.int64), int(keep.sum())),
            np.tile(cols[keep], len(idx)),
            vals[:, keep].ravel(),
        )

    def _scatter_unchecked(
        self, X: Sequence[Mapping[str, Any]], grow: bool
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        uniform = self._uniform_rows(X)
        if uniform is not None:
            keys, rows = uniform
            r, c, v = self._numeric_block(keys, list(range(len(X))), rows, grow)
            return r, c, v, self._scaled(c)
        ragged = self._ragged_block(X, grow) if len(X) > 1 else None
        if ragged is not None:
            return (*ragged, self._scaled(ragged[1]))
        # Rows sharing one schema (same keys in the same order, each value a plain number or
        # a str) take a vectorised path; anything else (numpy scalars, bad values) goes item
        # by item.
        groups: dict[tuple[Any, ...], list[int]] = {}
        slow: list[int] = []
        for i, x in enumerate(X):
            if not isinstance(x, Mapping):
                raise InvalidInputError(
                    f"X[{i}] must be a dict of feature -> value, got {type(x).__name__}"
                )
            types = tuple(map(type, x.values()))
            if _PLAIN_NUMBERS.issuperset(types):
                groups.setdefault((tuple(x), None), []).append(i)
            elif _PLAIN_VALUES.issuperset(types):
                groups.setdefault((tuple(x), types), []).append(i)
            else:
                slow.append(i)
        rs: list[np.ndarray] = []
        cs: list[np.ndarray] = []
        vs: list[np.ndarray] = []
        for (keys, types), idx in groups.items():
            rows = [list(X[i].values()) for i in idx]
            if types is None:
                num_keys = keys
            else:
                # the first row's columns in its item order, as the item-by-item path adds them
                for k, v in zip(keys, rows[0], strict=True):
                    if type(v) is str:
                        self._column(k, v, grow, idx[0])
                    else:
                        self._numeric_column(k, grow, idx[0])
                num_at = [j for j, t in enumerate(types) if t is not str]
                str_at = [j for j, t in enumerate(types) if t is str]
                num_keys = tuple(keys[j] for j in num_at)
                r_s: list[int] = []
                c_s: list[int] = []
                for i, row in zip(idx, rows, strict=True):
                    for j in str_at:
                        col = self._column(keys[j], row[j], grow, i)
                        if col >= 0:
                            r_s.append(i)
                            c_s.append(col)
                rs.append(np.asarray(r_s, dtype=np.int64))
                cs.append(np.asarray(c_s, dtype=np.int64))
                vs.append(np.ones(len(c_s)))
                rows = [[row[j] for j in num_at] for row in rows]
            r, c, v = self._numeric_block(num_keys, idx, rows, grow)
            rs.append(r)
            cs.append(c)
            vs.append(v)
        if slow:
            r_l: list[int] = []
            c_l: list[int] = []
            v_l: list[float] = []
            for i in slow:
                for k, v in X[i].items():
                    if isinstance(v, str):
                        col = self._column(k, v, grow, i)
                        val = 1.0
                    elif isinstance(v, _NUMBER):
                        val = float(v)
                        if not math.isfinite(val):
                            raise InvalidInputError(f"X[{i}][{k!r}] must be finite, got {v!r}")
                        col = self._numeric_column(k, grow, i)
                    else:
                        raise InvalidInputError(
                            f"X[{i}][{k!r}] must be a number, string or bool, "
                            f"got {type(v).__name__}"
                        )
                    if col >= 0:
                        r_l.append(i)
                        c_l.append(col)
                        v_l.append(val)
            rs.append(np.asarray(r_l, dtype=np.int64))
            cs.append(np.asarray(c_l, dtype=np.int64))
            vs.append(np.asarray(v_l, dtype=np.float64))
        if not cs:
            empty = np.zeros(0, dtype=np.int64)
            return empty, empty, np.zeros(0), np.zeros(0, dtype=bool)
        r_all = np.concatenate(rs)
        c_all = np.concatenate(cs)
        v_all = np.concatenate(vs)
        return r_all, c_all, v_all, self._scaled(c_all)

    def _scaled(self, c: np.ndarray) -> np.ndarray:
        """Which coordinates hold numbers to standardise (not one-hot or hashed categories)."""
        if c.size == 0:
            return np.zeros(0, dtype=bool)
        kinds = np.asarray(self._kinds, dtype=np.int8)[c]
        return (kinds == _NUM) | (kinds == _OVER)

    # ------------------------------------------------------------------ API
    def update(self, X: Sequence[Mapping[str, Any]]) -> None:
        """Learn the running statistics of ``X`` and add the columns it introduces."""
        if not X:
            return
        _, c, v, is_num = self._scatter(X, grow=True)
        self._fold(len(X), c, v, is_num)

    def _fold(self, n_rows: int, c: np.ndarray, v: np.ndarray, is_num: np.ndarray) -> None:
        self._rows += n_rows
        c, v = c[is_num], v[is_num]
        if c.size == 0:
            return
        from learners.neural_kernels import fold_moments

        d = self.dim
        # Chan et al.'s parallel combine of the batch moments into the running ones
        fold_moments(c, v, self._count[:d], self._mean[:d], self._m2[:d])

    def _shift_scale(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.dim
        if not self.standardize:
            return np.zeros(d), np.ones(d)
        n = self._count[:d]
        var = self._m2[:d] / np.maximum(n, 1.0)
        # a constant (or once-seen) feature carries no scale information: leave it unscaled
        sd = np.where(var > 1e-12, np.sqrt(var), 1.0)
        shift, scale = self._mean[:d].copy(), 1.0 / sd
        sparse = 2.0 * n < self._rows
        if sparse.any():
            # absent in most rows: no centring (absence stays 0), scale by the root mean square
            ms = var[sparse] + self._mean[:d][sparse] ** 2
            shift[sparse] = 0.0
            scale[sparse] = 1.0 / np.where(ms > 1e-12, np.sqrt(ms), 1.0)
        return shift, scale

    def transform(self, X: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """``X`` as an ``(len(X), dim)`` float32 matrix; never changes the space."""
        if not X or self.dim == 0:
            return np.zeros((len(X), self.dim), dtype=np.float32)
        coords = self._scatter(X, grow=False)
        # every feature known: a learning scan of the same rows would give the same coordinates
        if coords[1].size == sum(map(len, X)):
            self._memo = (list(X), self.dim, coords)
        return self._dense(len(X), *coords)

    def _recall(self, X: Sequence[Mapping[str, Any]]) -> tuple[np.ndarray, ...] | None:
        memo, self._memo = self._memo, None
        if memo is None or memo[1] != self.dim or len(memo[0]) != len(X):
            return None
        if not all(map(operator.is_, memo[0], X)):
            return None
        return memo[2]

    def _values(self, c: np.ndarray, v: np.ndarray, is_num: np.ndarray) -> np.ndarray:
        """The standardised values of coordinates ``(c, v)``."""
        shift, scale = self._shift_scale()
        if is_num.all():  # numbers only (no one-hot or hashed categories): no masks needed
            z = (v - shift[c]) * scale[c]
            if self.standardize:
                np.minimum(np.maximum(z, -CLIP_SD, out=z), CLIP_SD, out=z)  # np.clip, less its wrapper
            return z
        z = v.copy()
        zn = (v[is_num] - shift[c[is_num]]) * scale[c[is_num]]
        if self.standardize:
            np.minimum(np.maximum(zn, -CLIP_SD, out=zn), CLIP_SD, out=zn)  # np.clip, less its wrapper
        z[is_num] = zn
        return z

    def _dense(
        self, n: int, r: np.ndarray, c: np.ndarray, v: np.ndarray, is_num: np.ndarray
    ) -> np.ndarray:
        out = np.zeros((n, self.dim), dtype=np.float32)
        if c.size == 0:
            return out
        z = self._values(c, v, is_num)
        if self._over_index:
            # two features of a row may share an overflow bucket: they add up
            np.add.at(out, (r, c), z.astype(np.float32))
        else:
            out[r, c] = z
        return out

    def _csr(
        self, n: int, r: np.ndarray, c: np.ndarray, v: np.ndarray, is_num: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if is_num.all():  # numbers only, rows in order (the usual): one compiled pass
            from learners.neural_kernels import csr_values

            shift, scale = self._shift_scale()
            indptr, z = np.empty(n + 1, dtype=np.int64), np.empty(c.shape[0], dtype=np.float32)
            if csr_values(r, c, v, shift, scale, CLIP_SD if self.standardize else 0.0, indptr, z):
                return indptr, c, z
        z = self._values(c, v, is_num).astype(np.float32)
        if r.size > 1 and (r[1:] < r[:-1]).any():
            order = np.argsort(r, kind="stable")
            r, c, z = r[order], c[order], z[order]
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(np.bincount(r, minlength=n), out=indptr[1:])
        return indptr, c, z

    def transform_sparse(
        self, X: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``X`` standardised as CSR ``(indptr, columns, float32 values)``, rows in order and
        each row's entries in its item order; never changes the space. Unknown features
        are dropped; a feature sharing an overflow bucket appears once per feature."""
        if not X or self.dim == 0:
            return np.zeros(len(X) + 1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        coords = self._scatter(X, grow=False)
        if coords[1].size == sum(map(len, X)):
            self._memo = (list(X), self.dim, coords)
        return self._csr(len(X), *coords)

    def update_scan(self, X: Sequence[Mapping[str, Any]]) -> tuple[int, tuple[np.ndarray, ...]]:
        """Learn from non-empty ``X`` and return its scan, to read with ``dense`` or ``csr``
        under the updated statistics: for a caller that picks one only once the space has
        grown. Reading the dicts costs as much as a training step, so it is done once: and
        not at all when the last ``transform`` read the very same dict objects (the
        prequential predict-then-learn), whose scan is reused. A caller must not change a
        row's contents in place between the two calls."""
        coords = self._recall(X) or self._scatter(X, grow=True)
        self._fold(len(X), *coords[1:])
        return len(X), coords

    def dense(self, scan: tuple[int, tuple[np.ndarray, ...]]) -> np.ndarray:
        """A scan (``update_scan``) as a dense ``(rows, dim)`` float32 matrix."""
        return self._dense(scan[0], *scan[1])

    def csr(self, scan: tuple[int, tuple[np.ndarray, ...]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """A scan (``update_scan``) as CSR coordinates (see ``transform_sparse``)."""
        return self._csr(scan[0], *scan[1])

    def update_and_transform_sparse(
        self, X: Sequence[Mapping[str, Any]]
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``update_and_transform``, as CSR coordinates (see ``transform_sparse``)."""
        if not X:
            return np.zeros(1, dtype=np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
        return self.csr(self.update_scan(X))

    def update_and_transform(self, X: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Learn from ``X``, then return it transformed with the updated statistics (see
        ``update_scan``)."""
        if not X:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.dense(self.update_scan(X))

    # ------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        d = self.dim
        return {
            "standardize": self.standardize,
            "hash_dim": self.hash_dim,
            "width": self.width,
            "hash_buckets": self.hash_buckets,
            "rows": self._rows,
            "names": list(self._names),
            "kinds": list(self._kinds),
            "keys": [list(k) if isinstance(k, list) else k for k in self._keys],
            "count": self._count[:d].copy(),
            "mean": self._mean[:d].copy(),
            "m2": self._m2[:d].copy(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.standardize = bool(state["standardize"])
        hd = state["hash_dim"]
        self.hash_dim = None if hd is None else int(hd)
        width, buckets = state.get("width"), state.get("hash_buckets")
        self.width = None if width is None else int(width)
        self.hash_buckets = None if buckets is None else int(buckets)
        self._reset()
        count = np.asarray(state["count"], dtype=np.float64)
        mean = np.asarray(state["mean"], dtype=np.float64)
        m2 = np.asarray(state["m2"], dtype=np.float64)
        for name, kind, key in zip(state["names"], state["kinds"], state["keys"], strict=True):
            kind = int(kind)
            if kind == _NUM:
                self._num_index[str(key)] = self._add_column(str(name), kind, str(key))
                self._named += 1
            elif kind == _CAT:
                k, v = key
                self._cat_index[(k, v)] = self._add_column(str(name), kind, [k, v])
                self._named += 1
            elif kind == _OVER:
                self._over_index[int(key)] = self._add_column(str(name), kind, int(key))
            else:
                self._hash_index[int(key)] = self._add_column(str(name), kind, int(key))
        d = self.dim
        self._count[:d] = count
        self._mean[:d] = mean
        self._m2[:d] = m2
        # states written before presence was counted: every column counts as dense
        self._rows = int(state.get("rows", int(count.max()) if count.size else 0))


class LabelSpace:
    """Labels → class indices ``0..C-1`` in first-seen order."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self._index: dict[Hashable, int] = {}
        self._labels: list[Hashable] = []

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def labels(self) -> list[Hashable]:
        return list(self._labels)

    def update(self, y: Sequence[Hashable]) -> None:
        """Add the labels of ``y`` not seen before."""
        if self._index.keys() >= set(y):
            return  # the usual batch: every label known, checked without a Python loop
        for label in y:
            if label not in self._index:
                self._index[label] = len(self._labels)
                self._labels.append(label)

    def encode(self, y: Sequence[Hashable]) -> np.ndarray:
        """Class indices of ``y`` (int64); -1 for a label never seen."""
        get = self._index.get
        return np.fromiter(map(get, y, itertools.repeat(-1)), dtype=np.int64, count=len(y))

    def update_and_encode(self, y: Sequence[Hashable]) -> np.ndarray:
        self.update(y)
        return self.encode(y)

    def decode(self, idx: int) -> Hashable:
        return self._labels[idx]

    def state_dict(self) -> dict[str, Any]:
        return {"labels": list(self._labels)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._reset()
        self.update(list(state["labels"]))
