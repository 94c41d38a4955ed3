"""The names of the hand statistics of a window, in column order: the baseline's, of the part's
roll (:func:`train.baseline.note_features`), and the floor's, of the whole contract-2 input
(:func:`train.floor.input_features`, :class:`train.stats.WindowStats`).

Kept apart from the numpy code that computes them (and the scikit-learn it fits) so that the
torch module computing them, and so :mod:`train.models`, imports them without scikit-learn.
"""

from __future__ import annotations

N_PITCH_CLASSES = 12
N_OCTAVES = 11  # MIDI pitches 0-127 span octaves 0-10 (pitch // 12)

#: The baseline's statistics of the part's roll. Pitches are MIDI numbers, lengths steps.
ROLL_NAMES: list[str] = [
    "pitch_lowest",  # lowest sounding MIDI pitch
    "pitch_highest",  # highest sounding MIDI pitch
    "pitch_mean",  # mean pitch of active cells (each cell = one pitch for one step)
    "pitch_std",  # standard deviation of the pitch of active cells, semitones
    "pitch_span",  # highest - lowest, semitones
    "n_pitches",  # distinct pitches in the window
    *[f"pitch_class_{k}" for k in range(N_PITCH_CLASSES)],  # share of active cells, C=0
    *[f"octave_{k}" for k in range(N_OCTAVES)],  # share of active cells, pitch // 12
    "polyphony_mean",  # notes per step, over steps with any note
    "polyphony_max",  # most notes in one step
    "density",  # share of valid steps with any note
    "cells_per_step",  # active cells per valid step
    "chord_fraction",  # share of steps with any note that have >= 3 notes
    "run_length_mean",  # steps per run of one pitch (a duration proxy)
    "run_length_max",  # longest run of one pitch, steps
    "n_runs",  # runs of consecutive active steps over all pitches (an onset proxy)
    "bass_motion",  # mean |interval| between lowest notes of consecutive sounding steps
    "top_motion",  # mean |interval| between highest notes of consecutive sounding steps
]

#: Octave doubling: the ensemble sounds the part's pitch this many semitones up or down.
OCTAVES = (12, 24)

#: The window's own statistics, in column order. Pitches are MIDI numbers, velocities MIDI
#: velocities (1-127), counts per window, "per step" per valid eighth-note step, shares in [0, 1].
#: A statistic with nothing to measure (no onset, no ensemble) is 0, never NaN.
INPUT_NAMES: list[str] = [
    *ROLL_NAMES,  # the part's sounding roll: register, pitch classes, octaves, texture, motion
    "onsets",  # notes of the part starting in the window
    "onsets_per_step",  # onsets / valid steps
    "onset_step_share",  # share of valid steps with an onset
    "restruck_share",  # share of onsets on a pitch that sounded in the step before
    "offbeat_share",  # share of onsets on an off-beat eighth (odd step)
    "steps_per_onset",  # sounding cells / onsets: a duration, in steps
    "carried_in",  # pitches sounding at the first step that did not start there
    "velocity_mean",  # over onsets
    "velocity_max",
    "velocity_min",
    "velocity_std",
    "ensemble_density",  # share of valid steps where another pitched part sounds
    "ensemble_cells_per_step",  # the ensemble's sounding cells / valid steps
    "ensemble_pitch_mean",  # mean pitch of the ensemble's cells
    "ensemble_lowest",
    "ensemble_highest",
    "ensemble_below_lowest",  # share of ensemble cells below the part's lowest pitch
    "ensemble_above_highest",  # share of ensemble cells above the part's highest pitch
    "ensemble_below_mean",  # share of ensemble cells below the part's mean pitch
    "pitch_mean_above_ensemble",  # the part's mean pitch - the ensemble's, semitones
    "lowest_of_ensemble",  # share of steps both sound where the part's lowest note is lowest
    "highest_of_ensemble",  # ... where the part's highest note is highest
    "with_ensemble",  # share of the part's sounding steps where the ensemble sounds too
    "unison_share",  # share of the part's cells the ensemble sounds at the same pitch
    "octave_share",  # share of the part's cells the ensemble doubles 1 or 2 octaves away
    "drums_present",  # 1 if a drum hit starts in the window
    "drum_onsets_per_step",  # drum hits / valid steps
]
