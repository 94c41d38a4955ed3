"""Teacher (log-mel -> instrument) and student (piano roll -> instrument) networks.

Three presets, built by :func:`build_teacher` and :func:`build_student`:

``paper``
    Table 1 of the paper, layer for layer (:class:`PaperCNN`), for both models.
``fast`` (default)
    A CPU-sized audio CNN (:class:`TeacherCNN`) and a small, export-friendly roll CNN
    (:class:`StudentCNN`), about 50x fewer multiply-adds than the paper student.
``tiny``
    The fast architectures with a few channels, for tests.

Every model maps its input ``Tensor[B x 1 x H x W]`` to logits ``Tensor[B x 8]`` (classes in
:data:`live.taxonomy.CLASSES` order), exposes ``embed(x) -> Tensor[B x D]`` (the penultimate
representation) and ``embedding_dim`` (D), and remembers its
constructor arguments: :func:`describe` and :func:`model_from_description` rebuild the same
architecture from plain JSON, so a checkpoint can carry its own recipe.

Only export-friendly operators are used (Conv, BatchNorm, ReLU/LeakyReLU, MaxPool, Mul/Sub/Concat
with constants, ReduceMean/ReduceMax over fixed axes, Flatten, Linear): no data-dependent shapes,
so the students export to ONNX with a dynamic batch axis and compile with TensorRT.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any, ClassVar, overload

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from live.contract import MEL, WINDOW
from live.contracts import V1, V2, V3, Contract
from live.inputs import VELOCITY
from live.taxonomy import N_CLASSES
from train.batches import SparseWindows
from train.config import ARCHITECTURES
from train.stats import StatsInput

#: dB value that the teacher's fixed input scaling maps to 0 (the log-mel floor: silence).
DB_FLOOR = MEL.top_db_floor
#: dB per unit after the teacher's fixed input scaling: -100..+20 dB becomes 0..2.4.
DB_PER_UNIT = 50.0


# --------------------------------------------------------------------------- building blocks


class DbToUnit(nn.Module):
    """Fixed affine ``(x - DB_FLOOR) / DB_PER_UNIT``: log-mel dB -> roughly 0..2.4, no weights.

    The floor (silence, and end padding written at the floor) becomes exactly 0, so the
    convolutions' zero padding also means silence.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - DB_FLOOR) * (1.0 / DB_PER_UNIT)


class PitchCoordinate(nn.Module):
    """``Tensor[B x C x P x T]`` -> ``Tensor[B x (C + 1) x P x T]``: ``[x, roll * pitch]``,
    where the roll is channel 0 (the part's own notes).

    The new channel holds each active cell's pitch, scaled to -1 (pitch 0) .. +1 (pitch P - 1),
    so convolutions see absolute register and not only intervals. A constant buffer and a
    broadcast multiply: no shape arithmetic in the exported graph.
    """

    def __init__(self, n_pitches: int, channels: int = 1) -> None:
        super().__init__()
        coord = torch.linspace(-1.0, 1.0, n_pitches).view(1, 1, n_pitches, 1)
        self.coord: torch.Tensor
        self.register_buffer("coord", coord, persistent=False)
        self.channels = channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        roll = x if self.channels == 1 else x[:, :1]
        return torch.cat([x, roll * self.coord], dim=1)


def conv_bn_relu(
    c_in: int, c_out: int, kernel: tuple[int, int], *, stride: int | tuple[int, int] = 1
) -> nn.Sequential:
    """Conv2d ("same" padding for odd kernels) -> BatchNorm2d -> ReLU."""
    padding = (kernel[0] // 2, kernel[1] // 2)
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
        nn.BatchNorm2d(c_out),
        nn.ReLU(inplace=True),
    )


def pool_over_time(x: torch.Tensor) -> torch.Tensor:
    """``Tensor[B x C x F x T]`` -> ``Tensor[B x C*F]``: mean + max over time, then flatten.

    Keeps the frequency / pitch axis (register matters); fixed reduction axes, so any T works.
    """
    return (x.mean(dim=3) + x.amax(dim=3)).flatten(1)


def _pair(v: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(v, int):
        return (v, v)
    a, b = v
    return (int(a), int(b))


class KdModel(nn.Module):
    """Base class of the models here: ``forward(x) -> logits``, ``embed(x) -> Tensor[B x D]``,
    ``embedding_dim`` (D), and the JSON-able constructor arguments in ``kwargs``."""

    embedding_dim: int
    #: The input contract a student of this class reads (the paper's roll unless it says so).
    contract: Contract = V1

    #: The constructor arguments (JSON-able), recorded by every subclass's ``__init__``.
    kwargs: dict[str, Any]
    #: Constructor arguments added after models of the class were described, with the value
    #: that means "off": not recorded while off, so that the descriptions (and so the
    #: fingerprints) of models that do not use them stay as they were.
    added_later: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, **kw: Any) -> None:
        super().__init_subclass__(**kw)
        if "__init__" in cls.__dict__:
            cls.__init__ = _recording(cls.__init__)  # type: ignore[method-assign]

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def head(self, emb: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """Embedding ``Tensor[B x D]`` -> logits; ``forward(x) == head(embed(x))``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f"embedding_dim={self.embedding_dim}"


def _recording(init: Callable[..., None]) -> Callable[..., None]:
    """``init`` that also records its arguments, defaults and ``**kwargs`` included, in
    ``self.kwargs`` (what :func:`describe` stores in a checkpoint): only for the class being
    built, not for a base class's ``__init__`` reached through ``super()``; an argument of
    ``added_later`` only when it is not off."""
    signature = inspect.signature(init)

    @functools.wraps(init)
    def wrapper(self: KdModel, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if type(self).__init__ is not wrapper:
            return
        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        recorded: dict[str, Any] = {}
        for name, value in list(bound.arguments.items())[1:]:
            kind = signature.parameters[name].kind
            recorded.update(value if kind is inspect.Parameter.VAR_KEYWORD else {name: value})
        off = type(self).added_later
        self.kwargs = {
            k: _jsonable(v) for k, v in recorded.items() if not (k in off and v == off[k])
        }

    return wrapper


def _jsonable(v: Any) -> Any:
    """Tuples (nested) -> lists, so that ``kwargs`` equals its own JSON round trip."""
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    return v


# --------------------------------------------------------------------------- paper (Table 1)


class PaperCNN(KdModel):
    """Table 1 of the paper: Conv2D -> LeakyReLU -> MaxPooling2D -> Conv2D -> Flatten -> Dense.

    Input ``Tensor[B x 1 x height x width]``; output logits ``Tensor[B x n_classes]``.
    With ``height`` 128 the shapes (H x W x C, as printed in the paper) are:

    ============ ====================== =====================
    layer        teacher (width 528)    student (width 16)
    ============ ====================== =====================
    Conv2D       64 x 264 x 256         64 x 8 x 256
    LeakyReLU    64 x 264 x 256         64 x 8 x 256
    MaxPooling2D 64 x 264 x 256         64 x 8 x 256
    Conv2D       32 x 132 x 512         32 x 4 x 512
    Flatten      2,162,688              65,536
    Dense        8                      8
    ============ ====================== =====================

    The paper gives no kernel sizes; chosen here: both convolutions ``kernel_size`` x
    ``kernel_size`` (3), stride 2, padding ``kernel_size // 2`` (Keras "same": halves each axis);
    max pooling ``pool_size`` x ``pool_size`` (3), stride 1, padding 1 (shape kept). The
    LeakyReLU slope is Keras' default, 0.3. There is no activation after the second convolution,
    as in the table. ``embed`` is the flattened output of the second convolution (D = 65,536
    for the student, 2,162,688 for the teacher).

    ``normalize_db`` (teacher only) puts the weightless :class:`DbToUnit` scaling in front, so
    raw dB can go in; it changes no shape in the table.
    """

    def __init__(
        self,
        *,
        height: int = 128,
        width: int = 16,
        conv1_channels: int = 256,
        conv2_channels: int = 512,
        kernel_size: int = 3,
        pool_size: int = 3,
        negative_slope: float = 0.3,
        normalize_db: bool = False,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        pad = kernel_size // 2
        self.norm = DbToUnit() if normalize_db else nn.Identity()
        self.conv1 = nn.Conv2d(1, conv1_channels, kernel_size, stride=2, padding=pad)
        self.act = nn.LeakyReLU(negative_slope)
        self.pool = nn.MaxPool2d(pool_size, stride=1, padding=pool_size // 2)
        self.conv2 = nn.Conv2d(conv1_channels, conv2_channels, kernel_size, stride=2, padding=pad)
        self.flatten = nn.Flatten()
        h = _halve(_halve(height, kernel_size), kernel_size)
        w = _halve(_halve(width, kernel_size), kernel_size)
        self.embedding_dim = conv2_channels * h * w
        self.dense = nn.Linear(self.embedding_dim, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B x 1 x height x width]`` -> flattened features ``Tensor[B x D]``."""
        x = self.pool(self.act(self.conv1(self.norm(x))))
        return self.flatten(self.conv2(x))

    def head(self, emb: torch.Tensor) -> torch.Tensor:
        """Embedding ``Tensor[B x D]`` -> logits ``Tensor[B x n_classes]``."""
        return self.dense(emb)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B x 1 x height x width]`` -> logits ``Tensor[B x n_classes]``."""
        return self.head(self.embed(x))


def _halve(n: int, kernel: int) -> int:
    """Output length of a stride-2 convolution with padding ``kernel // 2``."""
    return (n + 2 * (kernel // 2) - kernel) // 2 + 1


class _PooledCNN(KdModel):
    """Conv features -> mean + max over time -> Linear-ReLU embedding -> Dropout -> Linear.

    Subclasses build ``layers`` and call :meth:`_build_head` with the pooled width; one that
    pools otherwise overrides :meth:`embed` (the head stays the same).
    """

    def _build_head(
        self, layers: list[nn.Module], flat: int, hidden: int, dropout: float, n_classes: int
    ) -> None:
        self.features = nn.Sequential(*layers)
        self.project = nn.Sequential(nn.Linear(flat, hidden), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(hidden, n_classes)
        self.embedding_dim = hidden

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``Tensor[B x 1 x H x T]`` -> embedding ``Tensor[B x hidden]`` (post-ReLU)."""
        return self.project(pool_over_time(self.features(x)))

    def head(self, emb: torch.Tensor) -> torch.Tensor:
        """Embedding ``Tensor[B x hidden]`` -> logits ``Tensor[B x n_classes]``."""
        return self.classifier(self.dropout(emb))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``Tensor[B x 1 x H x T]`` -> logits ``Tensor[B x n_classes]``."""
        return self.head(self.embed(x))


# --------------------------------------------------------------------------- fast teacher


class TeacherCNN(_PooledCNN):
    """Audio teacher sized for a CPU: log-mel dB ``Tensor[B x 1 x n_mels x T]`` -> logits.

    Layers (n_mels 128, T frames, default channels 16/32/64/128):

    - :class:`DbToUnit` (fixed, raw dB in; pad windows with the -100 dB floor);
    - Conv 3x3 stride 2 -> BN -> ReLU -> MaxPool 2: 32 x T/4;
    - two blocks Conv 3x3 -> BN -> ReLU -> MaxPool 2: 16 x T/8, then 8 x T/16;
    - Conv 3x3 -> BN -> ReLU: ``channels[-1]`` x 8 x T/16;
    - mean + max over time (any T >= 16 works, 32+ intended), keep the 8 mel bands, flatten;
    - Linear -> ReLU: the embedding (``hidden`` = D); Dropout; Linear -> ``n_classes``.

    About 30 M multiply-adds at T = 256 and 61 M at the paper's 528 frames (the paper teacher:
    5.0 G), 230 k parameters.
    """

    def __init__(
        self,
        *,
        n_mels: int = MEL.n_mels,
        channels: Sequence[int] = (16, 32, 64, 128),
        hidden: int = 128,
        dropout: float = 0.3,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        if len(channels) < 2:
            raise ValueError("TeacherCNN needs at least 2 conv blocks (channels of length >= 2)")
        layers: list[nn.Module] = [DbToUnit(), conv_bn_relu(1, channels[0], (3, 3), stride=2)]
        bands = _halve(n_mels, 3)
        for c_in, c_out in zip(channels[:-1], channels[1:], strict=False):
            layers += [nn.MaxPool2d((min(2, bands), 2)), conv_bn_relu(c_in, c_out, (3, 3))]
            bands = max(1, bands // 2)
        self._build_head(layers, channels[-1] * bands, hidden, dropout, n_classes)
        # Channels-last weights put PyTorch's CPU convolutions on their NHWC kernels, which
        # train and infer faster (docs/results.md). The weights' values, and so the model, are
        # the same.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # not in the stubs


# --------------------------------------------------------------------------- fast student


class StudentCNN(_PooledCNN):
    """Notes-only student: binary roll ``Tensor[B x 1 x 128 x 16]`` (0/1 float32) -> logits.

    Layers (default channels 16/32/32):

    - :class:`PitchCoordinate` (``pitch_channel``): [roll, roll * pitch] -> 2 x 128 x 16;
    - Conv ``first_kernel`` (13 pitches, an octave with both ends, x 3 steps: chord shapes) at
      ``first_stride`` (every 2nd pitch) -> BN -> ReLU -> MaxPool ``pools[0]`` (2 x 2): 32 x 8;
    - Conv 3x3 -> BN -> ReLU -> MaxPool, per further entry of ``channels``: 16 x 4, 8 x 4;
    - mean + max over time, keeping a coarse pitch axis (8 bands of 16 semitones): flatten;
    - Linear -> ReLU: the embedding (``hidden`` = D); Dropout; Linear -> ``n_classes``.

    About 3.1 M multiply-adds and 32 k parameters (the paper student: 153 M and 1.7 M), sized
    for latency on one CPU thread (docs/results.md). The first convolution is most of the
    work: striding it over pitch (the 13-pitch kernel still covers every pitch) and pooling 4
    pitches by then, plus channel counts that are multiples of 16, are what make it fast. The
    pitch channel matters: a learned per-band offset instead (cheaper) cost macro-F1; the
    stride cost nothing measurable (both in docs/results.md).
    """

    def __init__(
        self,
        *,
        n_pitches: int = WINDOW.n_pitches,
        n_steps: int = WINDOW.n_steps,
        channels: Sequence[int] = (16, 32, 32),
        first_kernel: Sequence[int] = (13, 3),
        first_stride: Sequence[int] = (2, 1),
        pools: Sequence[Sequence[int]] = ((2, 2), (2, 2), (2, 1)),
        hidden: int = 64,
        dropout: float = 0.3,
        pitch_channel: bool = True,
        in_channels: int = 1,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        if len(pools) != len(channels):
            raise ValueError(
                f"need one pool per conv block: {len(channels)} channels given, {len(pools)} pools"
            )
        layers: list[nn.Module] = [PitchCoordinate(n_pitches, in_channels)] if pitch_channel else []
        c_in, bands = in_channels + pitch_channel, n_pitches
        for i, (c_out, pool) in enumerate(zip(channels, pools, strict=True)):
            kernel = _pair(first_kernel) if i == 0 else (3, 3)
            stride = _pair(first_stride) if i == 0 else (1, 1)
            layers.append(conv_bn_relu(c_in, c_out, kernel, stride=stride))
            if tuple(pool) != (1, 1):
                layers.append(nn.MaxPool2d(_pair(pool)))
            c_in, bands = c_out, bands // stride[0] // _pair(pool)[0]
        self._build_head(layers, c_in * bands, hidden, dropout, n_classes)


class StepCNN(_PooledCNN):
    """A window encoder built for latency: what sounds at each eighth-note step (every pitch of
    every input channel) -> a dense embedding of the step, then convolutions over the steps.

    ``Tensor[B x C x P x T]`` -> ``[B x (C * P) x T]`` -> pointwise Conv1d (the step embedding,
    ``width``) -> Conv1d k=3 per ``channels`` -> mean + max over time -> Linear-ReLU (the
    embedding, ``hidden``) -> Dropout -> Linear. No weight is shared across pitch (absolute
    register is what tells a bass from a flute): all of it is matrix products, which a CPU runs
    near its peak at a small batch, where the roll CNN's small convolutions do not.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        n_pitches: int = WINDOW.n_pitches,
        width: int = 48,
        channels: Sequence[int] = (64,),
        hidden: int = 64,
        dropout: float = 0.3,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten(1, 2)]
        c_in = in_channels * n_pitches
        for c_out, k in zip((width, *channels), (1, *[3] * len(channels)), strict=True):
            layers += [
                nn.Conv1d(c_in, c_out, k, padding=k // 2, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self._build_head(layers, 2 * c_in, hidden, dropout, n_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Input ``Tensor[B x C x P x T]`` -> embedding ``Tensor[B x hidden]``: the step
        features' mean and max over time side by side (not summed), then the projection."""
        return self._pooled(self.features(x))

    def embed_cells(
        self,
        rows: torch.Tensor,
        features: torch.Tensor,
        steps: torch.Tensor,
        values: torch.Tensor,
        n: int,
    ) -> torch.Tensor:
        """:meth:`embed` of ``n`` windows given as their nonzero inputs (training reads them
        so): input ``k`` is ``values[k]`` at row ``features[k]`` (channel * P + pitch) and
        step ``steps[k]`` of window ``rows[k]``. The step embedding is then a sum over the
        few notes sounding instead of a product with every key; the same function, up to
        float rounding."""
        first = self.features[1]
        assert isinstance(first, nn.Conv1d) and first.kernel_size == (1,)
        weight = first.weight[:, :, 0].t()  # [C * P, width]
        n_steps = WINDOW.n_steps
        bag = rows * n_steps + steps  # the (window, step) each input adds into
        order = torch.argsort(bag)
        counts = torch.bincount(bag, minlength=n * n_steps)
        offsets = torch.cumsum(counts, 0) - counts
        z = F.embedding_bag(
            features[order], weight, offsets, mode="sum", per_sample_weights=values[order]
        )
        z = z.view(n, n_steps, -1).transpose(1, 2)
        return self._pooled(self.features[2:](z))

    def _pooled(self, z: torch.Tensor) -> torch.Tensor:
        return self.project(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1))


class StreamCNN(_PooledCNN):
    """A window encoder that streams: a pitch CNN on each eighth-note step alone (the step
    embedding), then convolutions over the steps, so that a step's embedding can be computed
    as soon as the step is heard and a bar line is left with the last step and the head.

    ``Tensor[B x C x P x T]`` -> :class:`PitchCoordinate` -> per ``channels``: Conv
    (``first_kernel`` pitches x 1 step at stride ``first_stride``, then 3 x 1) -> BN -> ReLU ->
    MaxPool (2 x 1) -> flatten channels x bands -> pointwise Conv1d -> BN -> ReLU (the step
    embedding, ``width``; :meth:`steps`) -> Conv1d k=3 per ``temporal`` (:meth:`over_steps`)
    -> mean and max over time side by side -> Linear-ReLU (``hidden``) -> Dropout -> Linear.
    No kernel spans two steps before the step embedding: ``steps(x)[..., t]`` reads step ``t``
    of ``x`` alone, which is what lets the daemon compute it ahead (``export.stream``).
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        n_pitches: int = WINDOW.n_pitches,
        channels: Sequence[int] = (16, 32, 32),
        first_kernel: int = 13,
        first_stride: int = 2,
        width: int = 64,
        temporal: Sequence[int] = (64,),
        hidden: int = 64,
        dropout: float = 0.3,
        n_classes: int = N_CLASSES,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [PitchCoordinate(n_pitches, in_channels)]
        c_in, bands = in_channels + 1, n_pitches
        for i, c_out in enumerate(channels):
            k, stride = (first_kernel, first_stride) if i == 0 else (3, 1)
            layers += [
                nn.Conv2d(c_in, c_out, (k, 1), stride=(stride, 1), padding=(k // 2, 0), bias=False),
                nn.BatchNorm2d(c_out),
                nn.ReLU(inplace=True),
                nn.MaxPool2d((2, 1)),
            ]
            c_in, bands = c_out, ((bands + 2 * (k // 2) - k) // stride + 1) // 2
        layers += [
            nn.Flatten(1, 2),
            nn.Conv1d(c_in * bands, width, 1, bias=False),
            nn.BatchNorm1d(width),
            nn.ReLU(inplace=True),
        ]
        self.step_features = nn.Sequential(*layers)
        over: list[nn.Module] = []
        c_in = width
        for c_out in temporal:
            over += [
                nn.Conv1d(c_in, c_out, 3, padding=1, bias=False),
                nn.BatchNorm1d(c_out),
                nn.ReLU(inplace=True),
            ]
            c_in = c_out
        self._build_head(over, 2 * c_in, hidden, dropout, n_classes)
        self.step_width = width
        # Channels-last weights: PyTorch's CPU convolutions train 1.5x faster on them (as the
        # teacher's); the same model.
        self.to(memory_format=torch.channels_last)  # type: ignore[call-overload]

    def steps(self, x: torch.Tensor) -> torch.Tensor:
        """``Tensor[B x C x P x T]`` -> step embeddings ``Tensor[B x width x T]``, step by
        step (any T, 1 included)."""
        return self.step_features(x)

    def over_steps(self, z: torch.Tensor) -> torch.Tensor:
        """Step embeddings ``Tensor[B x width x T]`` -> the window embedding ``[B x hidden]``."""
        z = self.features(z)
        return self.project(torch.cat([z.mean(dim=2), z.amax(dim=2)], dim=1))

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.over_steps(self.steps(x))


# --------------------------------------------------------------------------- contract v2


class ChannelSelect(nn.Module):
    """Contract-v2 input ``Tensor[B x 5 x P x T]`` (integers) -> the channels ``inputs`` picked,
    as model inputs: velocity (channel 2) scaled to 0..1, the others 0/1 as they are."""

    def __init__(self, inputs: Sequence[int]) -> None:
        super().__init__()
        self.index: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("index", torch.tensor(list(inputs)), persistent=False)
        scale = [1 / 127 if c == VELOCITY else 1.0 for c in inputs]
        self.register_buffer("scale", torch.tensor(scale).view(1, -1, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(1, self.index) * self.scale

    def cells(
        self, x: SparseWindows
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """What :meth:`forward` makes of cells: ``(rows, feature, step, value)`` of the
        selected channels' cells, feature = selected channel * P + pitch, velocity scaled."""
        channel, pitch, step = x.parts()
        position = torch.full((V2.input_shape[0],), -1, dtype=torch.long, device=channel.device)
        position[self.index] = torch.arange(len(self.index), device=channel.device)
        at = position[channel]
        rows, value = x.rows, x.values
        if len(self.index) < V2.input_shape[0]:  # drop the cells of channels not read
            keep = at >= 0
            rows, value, at, pitch, step = (
                rows[keep],
                value[keep],
                at[keep],
                pitch[keep],
                step[keep],
            )
        return rows, at * V2.input_shape[1] + pitch, step, value * self.scale.view(-1)[at]


class GRUCell(nn.Module):
    """A GRU cell from plain layers (Gemm, Sigmoid, Tanh): ``(x [B x D], h [B x H]) -> h'``.
    torch's own cell would do the same; these ops export to ONNX and TensorRT everywhere."""

    def __init__(self, inputs: int, state: int) -> None:
        super().__init__()
        self.x_gates = nn.Linear(inputs, 3 * state)
        self.h_gates = nn.Linear(state, 3 * state)

    def forward(self, x: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        xr, xz, xn = self.x_gates(x).chunk(3, dim=1)
        hr, hz, hn = self.h_gates(h).chunk(3, dim=1)
        r, z = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        n = torch.tanh(xn + r * hn)
        return (1 - z) * n + z * h


class ChannelAttention(nn.Module):
    """The ensemble as structure: each part's window embedding attends to the embeddings of
    the parts heard in the same window (the song's channels at one bar line), itself among
    them, and adds what it reads: ``(emb [N x D], group [N] or None) -> [N x D]``.

    Rows attend only to rows of their own ``group`` (None: all rows are one group, as at a
    daemon's bar line). There is no position: the answer does not depend on the order of the
    rows, only on who plays what (one bass, one lead, doublings). The output projection starts
    at zero, so an untrained layer passes the embedding through unchanged. Plain matrix
    products and a softmax: it exports to ONNX with the batch axis dynamic."""

    def __init__(self, dim: int, heads: int = 4) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"the embedding ({dim}) must split into {heads} heads")
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, emb: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        n, d = emb.shape
        # [3, heads, N, D / heads] each of queries, keys and values
        q, k, v = self.qkv(emb).view(n, 3, self.heads, d // self.heads).permute(1, 2, 0, 3)
        scores = torch.matmul(q, k.transpose(1, 2)) * self.scale  # [heads, N, N]
        if group is not None:
            scores = scores.masked_fill(group[None, :, None] != group[None, None, :], -1e9)
        read = torch.matmul(torch.softmax(scores, dim=2), v)  # [heads, N, D / heads]
        return emb + self.out(read.transpose(0, 1).reshape(n, d))


class PartStudent(KdModel):
    """The contract-v2 student: what a part plays in a window and around it, and its history.

    - :class:`ChannelSelect`: the contract-v2 channels ``inputs`` (default all five: the part's
      notes sounding, their onsets and velocities, the rest of the ensemble, the drums);
    - a window encoder over them (``encoder``: ``"cnn"``, a :class:`StudentCNN`, ``"steps"``,
      a :class:`StepCNN`, or ``"stream"``, a :class:`StreamCNN`; ``cnn`` are its arguments):
      the window's embedding and the *window answer*, as the paper's student gives it;
    - with ``stats``, the floor's hand statistics of the whole input (all five channels,
      whatever ``inputs`` says; :class:`train.stats.StatsInput`) beside the encoder's
      embedding: the window answer and the history read both;
    - with ``attend``, a :class:`ChannelAttention` over the embeddings of the parts heard in
      the same window: the window answer and the history read its output;
    - with ``controls``, it reads contract 3 (:mod:`live.controls`): the same planes, the
      drums' rows 0-7 holding the part's controller states; nothing else changes;
    - with ``state`` > 0, a :class:`GRUCell` over the part's successive window embeddings and a
      linear head on its state: the *running answer*, which has heard the part so far.

    ``forward(x) -> window logits`` (``Tensor[B x 5 x 128 x 16]`` -> ``[B x 8]``);
    ``step(x, h) -> (window logits, part logits, h')`` with the state ``h`` ``[B x state]``
    (zeros for a part's first window). Without a state the part logits are the window's.
    ``forward(x, valid)`` runs chunks of successive windows for training (see ``train.history``).
    With ``attend``, the rows of ``x`` attend to the rows of their ``group`` (default: all
    rows, as the daemon's channels at a bar line; see ``train.ensemble``).
    """

    contract = V2
    added_later: ClassVar[dict[str, Any]] = {"stats": False, "attend": False, "controls": False}

    def __init__(
        self,
        *,
        inputs: Sequence[int] = tuple(range(5)),
        state: int = 64,
        encoder: str = "cnn",
        stats: bool = False,
        attend: bool = False,
        controls: bool = False,
        n_classes: int = N_CLASSES,
        **cnn: Any,
    ) -> None:
        super().__init__()
        if controls:
            self.contract = V3  # the drums plane's rows 0-7 hold the part's controllers
        self.select = ChannelSelect(inputs)
        encoders: dict[str, type[StudentCNN | StepCNN | StreamCNN]] = {
            "cnn": StudentCNN,
            "steps": StepCNN,
            "stream": StreamCNN,
        }
        if encoder not in encoders:
            raise ValueError(f"encoder is one of {', '.join(encoders)}, got {encoder!r}")
        self.window = encoders[encoder](in_channels=len(inputs), n_classes=n_classes, **cnn)
        self.embedding_dim = self.window.embedding_dim
        self.statistics: StatsInput | None = None
        if stats:
            self.statistics = StatsInput(controls=controls)
            self.embedding_dim += self.statistics.width
            # The window answer reads the embedding and the statistics side by side.
            self.window.classifier = nn.Linear(self.embedding_dim, n_classes)
        self.context = ChannelAttention(self.embedding_dim) if attend else None
        self.state_dim = state
        self.window_frozen = False
        if state:
            self.history = GRUCell(self.embedding_dim, state)
            self.part_head = nn.Linear(state, n_classes)

    def _window_parts(self) -> list[nn.Module]:
        """What makes the window embedding and answer: selection, encoder, statistics and
        attention."""
        extra = [m for m in (self.statistics, self.context) if m is not None]
        return [self.select, self.window, *extra]

    def freeze_window(self) -> None:
        """Keep the window encoder and answer as they are (no gradients, batch norm on its
        running statistics), so that training moves the history alone."""
        self.window_frozen = True
        for part in self._window_parts():
            for p in part.parameters():
                p.requires_grad_(False)
        self.train(self.training)

    def train(self, mode: bool = True) -> PartStudent:
        super().train(mode)
        if self.window_frozen:
            for part in self._window_parts():
                part.eval()
        return self

    def embed(self, x: torch.Tensor | SparseWindows) -> torch.Tensor:
        """``Tensor[B x 5 x 128 x 16]``, or its cells (training), -> ``Tensor[B x
        embedding_dim]``: the encoder's embedding, then (with ``stats``) the scaled
        statistics."""
        if isinstance(x, SparseWindows):
            if isinstance(self.window, StepCNN) and self.statistics is None:
                return self.window.embed_cells(*self.select.cells(x), n=len(x))
            if isinstance(self.window, StreamCNN) and not self.window.training:
                emb = self.window.over_steps(self._distinct_step_embeddings(x))
                if self.statistics is None:
                    return emb
                return torch.cat([emb, self.statistics(x.dense())], dim=1)
            x = x.dense()
        emb = self.window.embed(self.select(x))
        if self.statistics is None:
            return emb
        return torch.cat([emb, self.statistics(x)], dim=1)

    def _distinct_step_embeddings(self, x: SparseWindows) -> torch.Tensor:
        """``self.window.steps(self.select(x.dense()))`` ``[B x width x 16]``, each distinct
        step computed once: a :class:`StreamCNN` reads a step alone and, its batch norm on
        running statistics, a step's embedding depends on nothing else (what the daemon's
        step cache relies on too). Scoring and the history phase read windows so, several
        times faster on repetitive music."""
        assert isinstance(self.window, StreamCNN)
        steps, which = x.distinct_steps()  # [U x 5 x 128 x 1]
        t = V2.input_shape[2]
        # side by side, 16 to a row, as in a window: PyTorch's convolutions run 1.7x faster
        # on that shape than on one step per row, and every step is still read alone
        rows = -(-len(steps) // t)
        packed = F.pad(steps[..., 0], (0, 0, 0, 0, 0, rows * t - len(steps)))
        packed = packed.view(rows, t, *steps.shape[1:3]).permute(0, 2, 3, 1)
        z = self.window.steps(self.select(packed)).permute(0, 2, 1).reshape(rows * t, -1)
        return z[which].view(len(x), t, -1).transpose(1, 2)

    def head(self, emb: torch.Tensor) -> torch.Tensor:
        return self.window.head(emb)

    def attended(self, emb: torch.Tensor, group: torch.Tensor | None = None) -> torch.Tensor:
        """The window embeddings as the answers read them: with ``attend``, after each has
        attended to its ``group``'s (:class:`ChannelAttention`); else as they are."""
        return emb if self.context is None else self.context(emb, group)

    @overload
    def forward(
        self, x: torch.Tensor, valid: None = None, group: torch.Tensor | None = None
    ) -> torch.Tensor: ...

    @overload
    def forward(
        self,
        x: torch.Tensor | None,
        valid: torch.Tensor,
        group: torch.Tensor | None = None,
        emb: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...

    # Not keyword-only: the TorchScript exporter passes every argument by position.
    def forward(
        self,
        x: torch.Tensor | None,
        valid: torch.Tensor | None = None,
        group: torch.Tensor | None = None,
        emb: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """Window logits of ``x``; with ``valid`` (bool ``[B x L]``: chunks of L successive
        windows of B parts, ``x`` holding the valid ones in row order), also the running
        answer's logits after each of them, the state starting at zero for every chunk.
        ``emb``: the windows' embeddings as the answers read them (:meth:`attended`), given
        instead of ``x``."""
        if emb is None:
            assert x is not None
            emb = self.attended(self.embed(x), group)
        if valid is None:
            return self.head(emb)
        steps = torch.zeros(*valid.shape, emb.shape[1], device=emb.device, dtype=emb.dtype)
        steps[valid] = emb
        h = torch.zeros(valid.shape[0], self.state_dim, device=emb.device, dtype=emb.dtype)
        part = []
        for k in range(valid.shape[1]):
            h = self.history(steps[:, k], h)
            part.append(self.part_head(h))
        return self.head(emb), torch.stack(part, dim=1)[valid]

    def step(
        self, x: torch.Tensor, h: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = self.attended(self.embed(x))
        logits = self.head(emb)
        if not self.state_dim:
            return logits, logits, h
        h = self.history(emb, h)
        return logits, self.part_head(h), h


# --------------------------------------------------------------------------- factories

_CLASSES: dict[str, type[KdModel]] = {
    cls.__name__: cls for cls in (PaperCNN, TeacherCNN, StudentCNN, PartStudent)
}


def build_teacher(preset: str = "fast", *, frames: int) -> KdModel:
    """The audio teacher of ``preset`` for log-mel inputs ``[B, 1, 128, frames]`` in dB.

    ``paper`` is Table 1 at any ``frames`` (Table 1 itself: ``frames`` = 528); its Dense layer
    has ``frames`` baked in. ``fast`` and ``tiny`` accept any T >= 32 and ignore ``frames``.
    """
    if preset == "paper":
        return PaperCNN(height=MEL.n_mels, width=frames, normalize_db=True)
    if preset == "tiny":
        return TeacherCNN(channels=(4, 8, 8, 8), hidden=16)
    _check_preset(preset)
    return TeacherCNN()


def build_student(preset: str = "fast") -> KdModel:
    """The paper's notes-only student of ``preset`` (contract 1): rolls ``[B, 1, 128, 16]``
    (0/1 float32) -> logits ``[B, 8]``."""
    _check_preset(preset)
    if preset == "paper":
        return PaperCNN(height=WINDOW.n_pitches, width=WINDOW.n_steps)
    return StudentCNN(**_STUDENT_CNN[preset])


def build_part_student(
    preset: str = "fast",
    *,
    inputs: Sequence[int] = (0,),
    state: int = 0,
    encoder: str = "cnn",
    scale: int = 1,
    depth: int = 1,
    stats: bool = False,
    attend: bool = False,
    controls: bool = False,
) -> PartStudent:
    """A contract-2 :class:`PartStudent` of ``preset`` on the channels ``inputs`` of
    ``[B, 5, 128, 16]``, with a state of ``state``, a window ``encoder`` whose widths are
    ``scale`` times the preset's and ``depth`` convolutions over the steps (``steps`` and
    ``stream``: the first one's width repeated), with ``stats``, the hand statistics beside its
    embedding, with ``attend``, attention over the parts of a window and, with ``controls``,
    contract 3's inputs (the paper's preset has none: its student is Table 1's, contract 1)."""
    _check_preset(preset)
    if preset == "paper":
        raise ValueError("contract 2 needs the fast or tiny student: the paper's is Table 1")
    table, cls = _ENCODERS[encoder]
    sizes = dict(table[preset])
    if scale != 1:
        sizes.update(_scaled(cls, sizes, scale))
    if depth != 1:
        sizes.update(_deepened(cls, sizes, depth))
    return PartStudent(
        inputs=inputs,
        state=state,
        encoder=encoder,
        stats=stats,
        attend=attend,
        controls=controls,
        **sizes,
    )


def _scaled(cls: type[KdModel], sizes: dict[str, Any], scale: int) -> dict[str, Any]:
    """The width arguments of ``cls`` (its defaults where ``sizes`` has none) times ``scale``."""
    defaults = {name: p.default for name, p in inspect.signature(cls.__init__).parameters.items()}
    out: dict[str, Any] = {}
    for name in ("width", "channels", "temporal", "hidden"):
        if name in defaults:
            value = sizes.get(name, defaults[name])
            out[name] = (
                tuple(v * scale for v in value)
                if isinstance(value, (tuple, list))
                else value * scale
            )
    return out


def _deepened(cls: type[KdModel], sizes: dict[str, Any], depth: int) -> dict[str, Any]:
    """The convolutions over the steps of ``cls`` (its default where ``sizes`` has none):
    ``depth`` of them, each as wide as the first."""
    name = {StepCNN: "channels", StreamCNN: "temporal"}.get(cls)  # type: ignore[call-overload]
    if name is None:
        raise ValueError(f"depth stacks convolutions over the steps: {cls.__name__} has none")
    defaults = {n: p.default for n, p in inspect.signature(cls.__init__).parameters.items()}
    first = tuple(sizes.get(name, defaults[name]))[0]
    return {name: (first,) * depth}


_STUDENT_CNN: dict[str, dict[str, Any]] = {
    "fast": {},
    "tiny": {"channels": (4, 8, 8), "hidden": 16},
}
_STUDENT_STEPS: dict[str, dict[str, Any]] = {
    "fast": {},
    "tiny": {"width": 8, "channels": (8,), "hidden": 16},
}
_STUDENT_STREAM: dict[str, dict[str, Any]] = {
    "fast": {},
    "tiny": {"channels": (4, 8), "width": 8, "temporal": (8,), "hidden": 16},
}
#: Each contract-2 window encoder: its sizes per preset and its class.
_ENCODERS: dict[str, tuple[dict[str, dict[str, Any]], type[KdModel]]] = {
    "cnn": (_STUDENT_CNN, StudentCNN),
    "steps": (_STUDENT_STEPS, StepCNN),
    "stream": (_STUDENT_STREAM, StreamCNN),
}


def _check_preset(preset: str) -> None:
    if preset not in ARCHITECTURES:
        raise ValueError(
            f"unknown model preset {preset!r}; choose one of {', '.join(ARCHITECTURES)}"
        )


def describe(model: nn.Module) -> dict[str, Any]:
    """JSON-able recipe of ``model``: ``{"class": name, "kwargs": constructor arguments}``."""
    if not isinstance(model, KdModel):
        raise TypeError(f"{type(model).__name__} is not a kdlive model; cannot describe it")
    return {"class": type(model).__name__, "kwargs": dict(model.kwargs)}


#: Constructor arguments that older kdlive wrote and this one no longer takes, with the value
#: that meant "off": a checkpoint that has them off is the same architecture and still loads.
RETIRED = {"band_embedding": False}


def model_from_description(description: dict[str, Any]) -> KdModel:
    """Rebuild the architecture :func:`describe` wrote (fresh weights: load the state dict)."""
    name = description.get("class")
    if name not in _CLASSES:
        raise ValueError(f"unknown model class {name!r}; known: {', '.join(sorted(_CLASSES))}")
    kwargs = dict(description.get("kwargs", {}))
    for key, off in RETIRED.items():
        if kwargs.get(key, off) != off:
            raise ValueError(
                f"the model uses {key}={kwargs[key]!r}, an option this kdlive no longer has "
                "(docs/results.md says where its code is): retrain it"
            )
        kwargs.pop(key, None)
    return _CLASSES[name](**kwargs)


# --------------------------------------------------------------------------- accounting


def count_params(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of the convolutions and Linear layers for one input of ``input_shape``.

    ``input_shape`` is the full input shape including the batch, e.g. ``(1, 1, 128, 16)``;
    the count is for the whole batch. Measured with forward hooks on a zero input (eval mode,
    no grad); BatchNorm, activations and pooling are not counted.
    """
    total = 0

    def hook(module: nn.Module, _inputs: Any, output: torch.Tensor) -> None:
        nonlocal total
        if isinstance(module, (nn.Conv1d, nn.Conv2d)):
            size = int(np.prod(module.kernel_size))
            total += output.numel() * (module.in_channels // module.groups) * size
        elif isinstance(module, nn.Linear):
            total += output.numel() * module.in_features

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Linear))
    ]
    was_training = model.training
    param = next(model.parameters(), None)
    device = param.device if param is not None else torch.device("cpu")
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(tuple(input_shape), device=device))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return int(total)
