"""The input contracts, one object each: what a student takes and gives, asked by all three
packages.

:mod:`live.contract` holds the numbers every contract shares (the window, the grid, the
quantiser). A *contract version* says which of them a student reads and what its graph looks
like; :data:`V1`, :data:`V2` and :data:`V3` are those there are, and :func:`contract` finds
one by its number (what a bundle's manifest and a run's config store). Nothing outside this
module asks "which version is this?": it asks the object for its input shape, its graph's
names, its manifest entry, its share of the engine's inputs (:meth:`Contract.model_input`), or
whether the engine keeps the channels' controllers (:attr:`Contract.controls`).

- contract 1, the paper's: the part's roll, ``roll [B, 1, 128, 16] -> logits [B, 8]``;
- contract 2, what a DAW sends (:data:`live.inputs.CHANNELS_V2`): ``inputs [B, 5, 128, 16]``
  and, for a student with a history, ``state [B, S]`` -> ``logits [B, 8]`` (the window
  answer), ``part_logits [B, 8]`` (the running answer) and ``state_out [B, S]``;
- contract 3, contract 2 and the part's controllers (:mod:`live.controls`): the same graph,
  rows 0-7 of the drums plane holding the channel's pedal, bend, modulation and expression
  states step by step.

Torch-free: numpy only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from live.contract import WINDOW
from live.errors import ContractError
from live.inputs import CHANNELS_V2

#: The graph's names: the window answer, the running answer and the state.
OUTPUT_NAME, PART_NAME = "logits", "part_logits"
STATE_NAME, STATE_OUT_NAME = "state", "state_out"


@dataclass(frozen=True)
class Contract:
    """One input contract (see the module docstring)."""

    version: int
    #: Names of the input channels, in order (a prefix of :data:`live.inputs.CHANNELS_V2`).
    channels: tuple[str, ...]
    #: The graph's input name.
    input_name: str
    #: What the input's values are, as the manifest says.
    values: str
    #: Whether a student of this contract may carry a state from window to window.
    stateful: bool
    #: Whether its inputs carry the part's controllers (:mod:`live.controls`): the engine
    #: keeps the channels' controller events and the notes store's controller plane is read.
    controls: bool = False

    def __str__(self) -> str:
        return str(self.version)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """Per-example model input shape: ``(channels, 128, 16)``."""
        return (len(self.channels), WINDOW.n_pitches, WINDOW.n_steps)

    def inputs(self, state: int = 0) -> tuple[str, ...]:
        """The graph's input names, for a student with a state of size ``state`` (0: none)."""
        return (self.input_name, STATE_NAME) if self._check_state(state) else (self.input_name,)

    def outputs(self, state: int = 0) -> tuple[str, ...]:
        """The graph's output names: the window's logits, and with a state the running
        answer's and the new state."""
        if self._check_state(state):
            return (OUTPUT_NAME, PART_NAME, STATE_OUT_NAME)
        return (OUTPUT_NAME,)

    def manifest_input(self) -> dict[str, Any]:
        """The manifest's ``"input"`` entry (:func:`live.bundle.make_manifest`)."""
        return {
            "name": self.input_name,
            "shape": ["batch", *self.input_shape],
            "dtype": "float32",
            "values": self.values,
        }

    def model_input(self, inputs: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint8]:
        """This contract's channels of the engine's inputs.

        Parameters
        ----------
        inputs : np.ndarray [shape=(..., 5, 128, 16), dtype=uint8]
            Contract-2 inputs, as :func:`live.inputs.window_inputs` makes them.

        Returns
        -------
        np.ndarray [shape=(..., C, 128, 16)]
            A view of the first C channels (contract 1: the roll, channel 0).
        """
        return inputs[..., : len(self.channels), :, :]

    def _check_state(self, state: int) -> bool:
        if state and not self.stateful:
            raise ContractError(
                f"a contract-{self.version} student carries no state (got size {state}): "
                "use a contract that has one"
            )
        return bool(state)


V1 = Contract(
    version=1,
    channels=CHANNELS_V2[:1],
    input_name="roll",
    values="0/1 piano roll, pitch x eighth-note step",
    stateful=False,
)
V2 = Contract(
    version=2,
    channels=CHANNELS_V2,
    input_name="inputs",
    values=f"contract 2 channels {list(CHANNELS_V2)} (velocity 0-127, the others 0/1)",
    stateful=True,
)
V3 = Contract(
    version=3,
    channels=CHANNELS_V2,
    input_name="inputs",
    values=(
        f"contract 2 channels {list(CHANNELS_V2)} (velocity 0-127, the others 0/1), the drums' "
        "rows 0-7 the part's controller states (live.controls.ROWS)"
    ),
    stateful=True,
    controls=True,
)
#: Every contract this kdlive reads, by version.
CONTRACTS: dict[int, Contract] = {c.version: c for c in (V1, V2, V3)}


def contract(version: object) -> Contract:
    """The contract of ``version`` (a manifest's or a config's number); :class:`ContractError`
    for one this kdlive does not know."""
    found = None
    if isinstance(version, int) and not isinstance(version, bool):
        found = CONTRACTS.get(version)
    if found is None:
        raise ContractError(
            f"input contract {version!r} is not one this kdlive knows "
            f"({' and '.join(map(str, CONTRACTS))}): upgrade kdlive, or retrain and re-export "
            "the model with this one"
        )
    return found
