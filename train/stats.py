"""The floor's hand statistics as a torch module, a side input for the student (issue 26).

:class:`WindowStats` computes :data:`train.floor.FEATURE_NAMES`, all 66 of them, from the
model input itself (contract-2 integers as float32, ``Tensor[B x 5 x 128 x 16]``) with fixed
shapes and export-friendly operators only (elementwise arithmetic, comparisons, Clip, Pad,
Slice, MatMul with constants, ReduceSum/Max/Min over fixed axes): the exported graph runs in
ONNX Runtime and passes :mod:`export.preflight`.

One difference from :func:`train.floor.input_features`: the graph does not know how many steps
a window really has, so every statistic is over all 16 steps. A 4/4 window (16 valid steps)
gets exactly the floor's numbers (within float32 rounding); a 3/4 window (12 valid steps, the
last 4 columns zero) gets the same counts, shares and pitches, but its "per step" statistics
(``onsets_per_step``, ``density``, ``cells_per_step``, ``onset_step_share``,
``ensemble_density``, ``ensemble_cells_per_step``, ``drum_onsets_per_step``) divide by 16
instead of 12.

:class:`StatsInput` puts them on a scale a network can read: signed ``log1p`` (pitches 0-127,
counts up to 2,048 and shares 0-1 all end up in about [-5, 8]), then batch norm.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from live.contract import WINDOW
from live.controls import N_ROWS
from live.inputs import CHANNELS_V2, DRUMS, ENSEMBLE, ONSET, SOUNDING, VELOCITY
from train.features import INPUT_NAMES as FEATURE_NAMES
from train.features import N_OCTAVES, N_PITCH_CLASSES, OCTAVES

#: Named statistics, each ``Tensor[B x 1]``, or a block of names and ``Tensor[B x k]``.
Stats = dict[str | tuple[str, ...], torch.Tensor]
#: The part's and the ensemble's channels (0 and 3) of the input, as one slice.
PART_AND_ENSEMBLE = slice(SOUNDING, ENSEMBLE + 1, ENSEMBLE - SOUNDING)


def _div(num: torch.Tensor, count: torch.Tensor) -> torch.Tensor:
    """``num / count`` for a count of cells or steps (a whole number >= 0) where ``num`` is 0
    if the count is (a sum over what it counts): 0 then, as the floor's ``_safe_div``."""
    return num / count.clamp(min=1.0)


def _at_most_one(count: torch.Tensor) -> torch.Tensor:
    """1 where a whole-number count is > 0, else 0."""
    return count.clamp(max=1.0)


def _sum(x: torch.Tensor) -> torch.Tensor:
    """``Tensor[B x ...]`` -> ``Tensor[B x 1]``, the sum of each row."""
    return x.flatten(1).sum(dim=1, keepdim=True)


def run_table(n_steps: int) -> torch.Tensor:
    """``[2 ** n_steps, 2]``: of each number's bits, the longest run of consecutive 1s and
    how many 1s follow a 1 (float16: exact for these small whole numbers, half the size in
    an exported graph)."""
    code = torch.arange(2**n_steps)
    length = torch.zeros_like(code)
    longest = torch.zeros_like(code)
    for k in range(n_steps):
        length = (length + 1) * ((code >> k) & 1)
        longest = torch.maximum(longest, length)
    pairs = torch.zeros_like(code)
    for k in range(1, n_steps):
        pairs += ((code >> k) & 1) * ((code >> (k - 1)) & 1)
    return torch.stack([longest, pairs], dim=1).to(torch.float16)


class WindowStats(nn.Module):
    """Contract-2 input ``Tensor[B x 5 x P x T]`` (float32 whole numbers: sounding, onset,
    velocity 0-127, ensemble, drums) -> hand statistics ``Tensor[B x 66]``, columns and units
    as :data:`train.floor.FEATURE_NAMES`, over all ``T`` steps (see the module docstring).

    The input is as :func:`live.inputs.window_inputs` makes it: the sounding, onset, ensemble
    and drum channels are 0/1 (the floor reads "not 0"), the velocity is 0 where no note
    starts, onsets sound, and a pitch starts sounding only with an onset (:meth:`_onsets`).
    Full-size tensors go through few operators (sums per pitch and per step first, then
    small tensors); still, in ONNX Runtime on one CPU thread the statistics of 16 windows cost
    about as much as the fast steps student itself (issue 26's measurement of a bar line of 16
    windows, batch 16: p50 0.55 -> 1.05 ms, p99 0.8 -> 1.7 ms). No weights; constant buffers
    only (not in the state dict).
    """

    names = FEATURE_NAMES
    # Constant buffers (see __init__).
    pitch: torch.Tensor
    ranks: torch.Tensor
    not_last_step: torch.Tensor
    moments: torch.Tensor
    binary: torch.Tensor
    runs: torch.Tensor
    offbeat: torch.Tensor
    upto: torch.Tensor
    later: torch.Tensor

    def __init__(self, n_pitches: int = WINDOW.n_pitches, n_steps: int = WINDOW.n_steps) -> None:
        super().__init__()
        self.n_pitches, self.n_steps = n_pitches, n_steps
        pitch = torch.arange(n_pitches)
        step = torch.arange(n_steps)
        moments = torch.zeros(n_pitches, 1 + N_PITCH_CLASSES + N_OCTAVES)
        moments[:, 0] = pitch
        moments[pitch, 1 + pitch % N_PITCH_CLASSES] = 1.0
        moments[pitch, 1 + N_PITCH_CLASSES + pitch // N_PITCH_CLASSES] = 1.0
        ranks = torch.stack([pitch, n_pitches - pitch]).float()  # [2, P]
        not_last = (step < n_steps - 1).float().repeat(n_pitches)[:-1]  # [P * T - 1]
        buffers = {
            "pitch": pitch.float(),  # [P]
            # [2, P, T]: each cell's pitch and P - pitch, in full (ONNX Runtime multiplies
            # tensors of one shape several times faster than it broadcasts over the steps).
            "ranks": ranks[:, :, None].expand(2, n_pitches, n_steps).contiguous(),
            "not_last_step": not_last,
            "moments": moments,  # [P, 1 + 12 + 11]: pitch, pitch-class and octave one-hots
            "binary": (2.0 ** step.float())[:, None],  # [T, 1]: a pitch's steps as bits
            "runs": run_table(n_steps),  # [2 ** T, 2]: the runs of those bits
            "offbeat": (step % 2 == 1).float()[:, None],  # [T, 1]
            # upto[s, t] = 1 where s <= t: a product with it sums over the steps so far.
            "upto": (step[:, None] <= step[None, :]).float(),
            "later": (step[:, None] < step[None, :]).float(),  # [s, t]: 1 where s < t
        }
        for name, value in buffers.items():
            self.register_buffer(name, value, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 4 or x.shape[1:] != (5, self.n_pitches, self.n_steps):
            raise ValueError(
                f"WindowStats takes [B, 5, {self.n_pitches}, {self.n_steps}], got {list(x.shape)}"
            )
        per_pitch = x.sum(dim=3)  # [B, 5, P]: each channel's cells (velocities) per pitch
        per_step = x.sum(dim=2)  # [B, 5, T]
        total = per_step.sum(dim=2)  # [B, 5]
        both = PART_AND_ENSEMBLE
        register = self._register(per_pitch[:, both], total[:, both])
        lines = self._lines(x[:, both], per_step[:, both])
        stats: Stats = {}
        # [B, P]: the steps each pitch sounds, as the bits of a number (a 2-D matrix product:
        # ONNX Runtime's batched product with a vector is many times slower).
        part = x[:, SOUNDING]
        codes = (part.reshape(-1, self.n_steps) @ self.binary).reshape(part.shape[:2])
        runs = self.runs[codes.long()].to(x.dtype)  # [B, P, 2]: longest run, 1s after a 1
        stats |= self._roll(runs, per_step[:, SOUNDING], total, register, lines)
        stats |= self._onsets(per_step, total, stats["n_runs"])
        stats |= self._velocity(x[:, ONSET : VELOCITY + 1], total)
        stats |= self._ensemble(x, per_pitch[:, ENSEMBLE], total, register, lines)
        stats["drums_present"] = _at_most_one(total[:, DRUMS:])
        stats["drum_onsets_per_step"] = total[:, DRUMS:] / self.n_steps
        names = [n for k in stats for n in (k if isinstance(k, tuple) else (k,))]
        if names != FEATURE_NAMES:  # a slip in this module, caught by any call
            raise AssertionError(f"WindowStats computes {names}, not train.floor's names")
        return torch.cat(list(stats.values()), dim=1)

    # ------------------------------------------------------------------ register, lines

    def _register(self, cells: torch.Tensor, total: torch.Tensor) -> dict[str, torch.Tensor]:
        """Cells per pitch ``[B x K x P]`` and their totals ``[B x K]`` -> ``[B x K]`` each:
        lowest and highest pitch with a cell (0 when none), distinct pitches, mean and
        standard deviation of the cells' pitch; and ``[B x K x 23]`` pitch-class and octave
        shares of the cells."""
        used = _at_most_one(cells)
        lowest = ((self.pitch - self.n_pitches) * used).amin(dim=2) + self.n_pitches
        moments = _div(cells @ self.moments, total[:, :, None])
        mean = moments[:, :, 0]
        spread = (cells * (self.pitch - mean[:, :, None]) ** 2).sum(dim=2)
        return {
            "lowest": lowest * _at_most_one(total),
            "highest": (self.pitch * used).amax(dim=2),
            "distinct": used.sum(dim=2),
            "mean": mean,
            "std": _div(spread, total).sqrt(),
            "shares": moments[:, :, 1:],
        }

    def _lines(self, rolls: torch.Tensor, per_step: torch.Tensor) -> torch.Tensor:
        """Rolls ``[B x K x P x T]`` and their notes per step ``[B x K x T]`` ->
        ``[B x K x 3 x T]``: per step, whether anything sounds (0/1), the lowest and the
        highest pitch sounding (``P`` and 0 where nothing does)."""
        # One product and one maximum for both: the largest of pitch and of P - pitch.
        top = (rolls[:, :, None] * self.ranks).amax(dim=3)  # [B, K, 2, T]
        lowest = self.n_pitches - top[:, :, 1:]
        return torch.cat([_at_most_one(per_step)[:, :, None], lowest, top[:, :, :1]], dim=2)

    # ------------------------------------------------------------------ the part's roll

    def _roll(
        self,
        runs: torch.Tensor,
        poly: torch.Tensor,
        totals: torch.Tensor,
        register: dict[str, torch.Tensor],
        lines: torch.Tensor,
    ) -> Stats:
        """:data:`train.baseline.FEATURE_NAMES` of the part's roll, from the steps each pitch
        sounds, :func:`run_table`'s ``runs [B x P x 2]``, its notes per step ``poly [B x T]``,
        the channels' totals ``[B x 5]``,
        :meth:`_register` and :meth:`_lines` (of the part and the ensemble)."""
        total = totals[:, SOUNDING : SOUNDING + 1]
        mine = {k: v[:, :1] for k, v in register.items() if k != "shares"}
        sounding = lines[:, 0, 0]
        steps = sounding.sum(dim=1, keepdim=True)
        n_runs = total - runs[..., 1].sum(dim=1, keepdim=True)  # cells that start a run
        return {
            "pitch_lowest": mine["lowest"],
            "pitch_highest": mine["highest"],
            "pitch_mean": mine["mean"],
            "pitch_std": mine["std"],
            "pitch_span": mine["highest"] - mine["lowest"],
            "n_pitches": mine["distinct"],
            _HISTOGRAM: register["shares"][:, 0],
            "polyphony_mean": _div(total, steps),
            "polyphony_max": poly.amax(dim=1, keepdim=True),
            "density": steps / self.n_steps,
            "cells_per_step": total / self.n_steps,
            "chord_fraction": _div((poly - 2.0).clamp(0.0, 1.0).sum(dim=1, keepdim=True), steps),
            "run_length_mean": _div(total, n_runs),
            "run_length_max": runs[..., 0].amax(dim=1, keepdim=True),
            "n_runs": n_runs,
            ("bass_motion", "top_motion"): self._motion(lines[:, 0, 1:], sounding),
        }

    def _motion(self, line: torch.Tensor, sounding: torch.Tensor) -> torch.Tensor:
        """Mean ``|line[t] - line[s]|`` over pairs of sounding steps ``s < t`` with no sounding
        step between (rests skipped): ``line [B x K x T]``, ``sounding [B x T]`` -> ``[B x K]``."""
        so_far = sounding @ self.upto  # [B, T]: sounding steps up to and including t
        gap = so_far[:, None, :] - so_far[:, :, None]  # [B, s, t]
        next_one = (2.0 - gap).clamp(0.0, 1.0) * self.later  # s < t, no sounding step between
        pairs = (sounding[:, :, None] * sounding[:, None, :] * next_one)[:, None]
        moves = (line[:, :, None, :] - line[:, :, :, None]).abs()  # [B, K, s, t]
        return _div((pairs * moves).sum(dim=(2, 3)), pairs.sum(dim=(2, 3)))

    # ------------------------------------------------------------------ onsets, velocity

    def _onsets(self, per_step: torch.Tensor, total: torch.Tensor, n_runs: torch.Tensor) -> Stats:
        """Onsets, their rate and timing, durations and the notes carried into the window,
        from every channel's notes per step ``[B x 5 x T]``, their totals ``[B x 5]`` and the
        part's runs of sounding steps ``n_runs [B x 1]``.

        Onsets sound, and a pitch that starts sounding after the first step has an onset
        there (as :func:`live.inputs.window_inputs` makes them): so the pitches carried in
        are those sounding at the first step without an onset, and the onsets on a pitch that
        did not sound the step before are those at the first step and the runs starting later.
        """
        n = total[:, ONSET : ONSET + 1]
        first = per_step[:, :, :1]  # [B, 5, 1]: notes at the first step
        carried = first[:, SOUNDING] - first[:, ONSET]
        restruck = n - first[:, ONSET] - (n_runs - first[:, SOUNDING])
        per_step = per_step[:, ONSET]
        return {
            "onsets": n,
            "onsets_per_step": n / self.n_steps,
            "onset_step_share": _at_most_one(per_step).sum(dim=1, keepdim=True) / self.n_steps,
            "restruck_share": _div(restruck, n),
            "offbeat_share": _div(per_step @ self.offbeat, n),
            "steps_per_onset": _div(total[:, SOUNDING : SOUNDING + 1], n) * _at_most_one(n),
            "carried_in": carried,
        }

    def _velocity(self, x: torch.Tensor, total: torch.Tensor) -> Stats:
        """Mean, max, min and standard deviation of the onsets' velocities, from the onset
        and velocity channels ``x [B x 2 x P x T]`` (in that order) and the channels' totals
        ``[B x 5]``; all 0 without onsets. Deviations from the mean are summed, not squares
        subtracted, so that a constant velocity has a spread of exactly 0 in float32."""
        n = total[:, ONSET : ONSET + 1]
        mean = _div(total[:, VELOCITY : VELOCITY + 1], n)
        onset, velocity = x[:, 0].flatten(1), x[:, 1].flatten(1)  # [B, P * T]
        deviation = velocity - mean * onset  # 0 where no note starts
        # The lowest velocity is at or below the mean: its deviation is the smallest of all.
        lowest = deviation.amin(dim=1, keepdim=True) + mean
        return {
            "velocity_mean": mean,
            "velocity_max": velocity.amax(dim=1, keepdim=True),
            "velocity_min": lowest * _at_most_one(n),
            "velocity_std": _div(_sum(deviation * deviation), n).sqrt(),
        }

    # ------------------------------------------------------------------ the ensemble

    def _ensemble(
        self,
        x: torch.Tensor,
        cells: torch.Tensor,
        total: torch.Tensor,
        register: dict[str, torch.Tensor],
        lines: torch.Tensor,
    ) -> Stats:
        """The ensemble's density and register and the part's place in it, from the input
        ``x``, the ensemble's cells per pitch ``cells [B x P]``, the channels' totals
        ``[B x 5]``, :meth:`_register` of the part and the ensemble and their :meth:`_lines`."""
        n = total[:, ENSEMBLE : ENSEMBLE + 1]
        mine = {k: register[k][:, :1] for k in ("lowest", "highest", "mean")}
        theirs = {k: register[k][:, 1:] for k in ("lowest", "highest", "mean")}
        has_part = _at_most_one(total[:, SOUNDING : SOUNDING + 1])

        def share(where: torch.Tensor) -> torch.Tensor:  # of the ensemble's cells; where [B, P]
            return _div(_sum(cells * where), n) * has_part

        pitch = self.pitch
        return {
            "ensemble_density": lines[:, 1, 0].sum(dim=1, keepdim=True) / self.n_steps,
            "ensemble_cells_per_step": n / self.n_steps,
            "ensemble_pitch_mean": theirs["mean"],
            "ensemble_lowest": theirs["lowest"],
            "ensemble_highest": theirs["highest"],
            "ensemble_below_lowest": share((mine["lowest"] - pitch).clamp(0.0, 1.0)),
            "ensemble_above_highest": share((pitch - mine["highest"]).clamp(0.0, 1.0)),
            "ensemble_below_mean": share((pitch < mine["mean"]).to(cells.dtype)),
            "pitch_mean_above_ensemble": (mine["mean"] - theirs["mean"])
            * has_part
            * _at_most_one(n),
            **self._rank(lines),
            ("unison_share", "octave_share"): self._doubling(x, total[:, SOUNDING : SOUNDING + 1]),
        }

    def _rank(self, lines: torch.Tensor) -> Stats:
        """Of the steps where the part and the ensemble both sound, the shares where the
        part's lowest note is at or below the ensemble's and its highest at or above; and the
        share of the part's sounding steps the ensemble shares."""
        mine, theirs = lines[:, 0], lines[:, 1]  # [B, 3, T]
        both = mine[:, 0] * theirs[:, 0]
        n_both = both.sum(dim=1, keepdim=True)
        low = (mine[:, 1] <= theirs[:, 1]).to(both.dtype)
        high = (mine[:, 2] >= theirs[:, 2]).to(both.dtype)
        return {
            "lowest_of_ensemble": _div(_sum(both * low), n_both),
            "highest_of_ensemble": _div(_sum(both * high), n_both),
            "with_ensemble": _div(n_both, mine[:, 0].sum(dim=1, keepdim=True)),
        }

    def _doubling(self, x: torch.Tensor, cells: torch.Tensor) -> torch.Tensor:
        """``[B x 2]``: shares of the part's ``cells [B x 1]`` the ensemble sounds in unison,
        and one or two octaves away (the ensemble's roll shifted over pitch)."""
        part, ensemble = x[:, SOUNDING], x[:, ENSEMBLE]
        reach, p = max(OCTAVES), self.n_pitches
        padded = F.pad(ensemble, (0, 0, reach, reach))  # pitch q at q + reach
        shifted = [padded[:, reach + d : reach + d + p] for k in OCTAVES for d in (k, -k)]
        octave = shifted[0]
        for other in shifted[1:]:
            octave = torch.maximum(octave, other)
        doubled = torch.cat([_sum(part * ensemble), _sum(part * octave)], dim=1)
        return _div(doubled, cells)


#: The pitch-class and octave shares of the part's cells, one block of :class:`WindowStats`.
_HISTOGRAM = (
    *(f"pitch_class_{k}" for k in range(N_PITCH_CLASSES)),
    *(f"octave_{k}" for k in range(N_OCTAVES)),
)


class StatsInput(nn.Module):
    """Contract-2 input ``Tensor[B x 5 x 128 x 16]`` -> the statistics of
    :class:`WindowStats` on a scale a network reads, ``Tensor[B x width]``: signed
    ``log1p`` (pitches 0-127 -> 0-4.9, counts up to 2,048 -> at most 7.6, shares 0-1 ->
    0-0.7), then a batch norm with a learned scale and offset per statistic.

    With ``controls`` (a contract-3 input: the drums plane's rows 0-7 hold the part's
    controllers, :mod:`live.controls`) those rows are left out of the drum statistics, which
    then count drum hits alone, as the floor's do."""

    keep: torch.Tensor  # [5, P, 1]: 0 where the drums plane holds controllers (contract 3)

    def __init__(self, *, controls: bool = False) -> None:
        super().__init__()
        self.compute = WindowStats()
        self.width = len(WindowStats.names)
        self.norm = nn.BatchNorm1d(self.width)
        keep = torch.ones(len(CHANNELS_V2), WINDOW.n_pitches, 1)
        if controls:
            keep[DRUMS, :N_ROWS] = 0
        self.controls = controls
        self.register_buffer("keep", keep, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.compute(x * self.keep if self.controls else x)
        return self.norm(s.sign() * s.abs().log1p())
