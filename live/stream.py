"""A streaming student on the CPU: each eighth-note step computed once, the bar line left
with the steps it has not seen and the head.

A bundle whose window encoder is :class:`train.models.StreamCNN` carries, beside its whole
graph, two graphs that split it (``export.stream`` writes and checks them): ``steps`` maps M
steps of the input side by side, ``[1, 5, 128, M]``, to what each contributes ``[1, W, M]``,
each read alone; ``head`` maps windows' 16 steps ``[N, 16, W]`` and the parts' states to the
answers the whole graph gives. What a step contributes depends on nothing but that step's
input column, so :class:`StepCache` keeps it by the column's content: the same column, in
this window or the next (windows hop by one bar, so half of each window was the previous
one's), in a computation made ahead during a quiet moment (``live.ahead``) or at the bar
line, is computed once. Which steps are new needs no bookkeeping of channels, bars or events,
and a changed column is never answered from an old one.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

#: Step embeddings kept (the most recent): 16 busy channels' two windows, four times over.
CAPACITY = 2048
#: A step's key: this many exact dot products (float32) with random integers.
KEY_WORDS = 8


class StepCache:
    """Step embeddings by the content of their input column.

    A column's key is 8 dot products of it with fixed random integers below 205 (32 bytes).
    For contract inputs (integers up to 127) every partial sum stays below 2**24, so float32
    computes them exactly, in any order: a column has one key wherever it stands. Two
    different columns differ by a nonzero integer vector, which each of the 8 independent
    products maps to zero with probability at most 1/205: they share a key with probability
    below 205**-8 (3e-19), far below one in the lifetime of any rig. The oldest entries go
    first.
    """

    def __init__(self, column: int, width: int, *, capacity: int = CAPACITY) -> None:
        rng = np.random.default_rng(0)
        top = max(2, (2**24 - 1) // (127 * column))  # no partial sum reaches 2**24
        self._mix = rng.integers(1, top, size=(KEY_WORDS, column)).astype(np.float32)
        self._slot: dict[bytes, int] = {}
        self._keys: list[bytes | None] = [None] * capacity
        self._emb = np.zeros((capacity, width), np.float32)
        self._next = 0
        #: Columns answered from the cache / computed, since the cache was made or cleared.
        self.hits = 0
        self.computed = 0

    def __len__(self) -> int:
        return len(self._slot)

    def clear(self) -> None:
        """Forget every step (and the counts)."""
        self._slot.clear()
        self._keys = [None] * len(self._keys)
        self.hits = self.computed = 0

    def keys(self, x: npt.NDArray[np.float32]) -> list[bytes]:
        """The keys of the columns of ``x`` ``[N, column, T]``, window by window, step by step."""
        k = np.ascontiguousarray(np.matmul(self._mix, x).transpose(0, 2, 1))
        return k.view(f"V{4 * KEY_WORDS}").ravel().tolist()  # type: ignore[no-any-return]

    def embed(
        self,
        x: npt.NDArray[np.float32],
        compute: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]],
    ) -> npt.NDArray[np.float32]:
        """Embeddings ``[N * T, width]`` of the columns of ``x`` ``[N, column, T]`` (window by
        window, step by step); ``compute(cols)`` makes those of the columns ``[column, M]``
        not kept, each distinct column once."""
        n_steps = x.shape[2]
        keys = self.keys(x)
        found = np.array([self._slot.get(k, -1) for k in keys], np.int64)
        out = self._emb[found]
        miss = np.flatnonzero(found < 0)
        self.hits += len(keys) - len(miss)
        if len(miss):
            first: dict[bytes, int] = {}  # key -> its place among the columns computed
            which: list[int] = []
            for i in miss.tolist():
                if keys[i] not in first:
                    first[keys[i]] = len(which)
                    which.append(i)
            at = np.array(which)
            emb = compute(np.ascontiguousarray(x[at // n_steps, :, at % n_steps].T))
            out[miss] = emb[[first[keys[i]] for i in miss.tolist()]]
            self.computed += len(which)
            self._keep([keys[i] for i in which], emb)
        return out

    def _keep(self, keys: list[bytes], emb: npt.NDArray[np.float32]) -> None:
        capacity = len(self._keys)
        for key, e in zip(keys[-capacity:], emb[-capacity:], strict=True):
            slot = self._next
            old = self._keys[slot]
            if old is not None and self._slot.get(old) == slot:
                del self._slot[old]
            self._keys[slot] = key
            self._emb[slot] = e
            self._slot[key] = slot
            self._next = (slot + 1) % capacity


class StreamRunner:
    """The CPU backend of a streaming bundle: ``step`` and ``logits`` as the whole graph's,
    through the step cache. ``steps`` and ``head`` are ONNX Runtime sessions of the bundle's
    two streaming graphs."""

    name = "onnxruntime-cpu-stream"

    def __init__(
        self,
        steps: Any,
        head: Any,
        *,
        shape: tuple[int, int, int],
        state: int,
        capacity: int = CAPACITY,
    ) -> None:
        self.steps_session, self.head_session = steps, head
        self.channels, self.pitches, self.n_steps = shape
        width = int(head.get_inputs()[0].shape[2])
        self.cache = StepCache(self.channels * self.pitches, width, capacity=capacity)
        self.state_size = state
        self._steps_in = steps.get_inputs()[0].name
        self._head_in = [i.name for i in head.get_inputs()]
        self._head_out = [o.name for o in head.get_outputs()]

    def _embed(self, cols: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        """Columns ``[C * P, M]`` -> step embeddings ``[M, W]``, as one image of M steps."""
        x = cols.reshape(1, self.channels, self.pitches, cols.shape[1])
        return np.ascontiguousarray(self.steps_session.run(None, {self._steps_in: x})[0][0].T)

    def _answers(
        self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32] | None
    ) -> list[npt.NDArray[np.float32]]:
        n = len(inputs)
        z = self.cache.embed(inputs.reshape(n, -1, self.n_steps), self._embed)
        feeds = {self._head_in[0]: z.reshape(n, self.n_steps, -1)}
        if state is not None:
            feeds[self._head_in[1]] = state
        return list(self.head_session.run(self._head_out, feeds))

    def step(
        self, inputs: npt.NDArray[np.float32], state: npt.NDArray[np.float32]
    ) -> tuple[npt.NDArray[np.float32], npt.NDArray[np.float32], npt.NDArray[np.float32]]:
        logits, part, out = self._answers(inputs, state)
        return logits, part, out

    def logits(self, rolls: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
        if not self.state_size:
            return self._answers(rolls, None)[0]
        return self._answers(rolls, np.zeros((len(rolls), self.state_size), np.float32))[0]
