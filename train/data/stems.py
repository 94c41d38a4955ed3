"""One stem (MIDI part + audio) -> its windows: piano rolls and the log-mel of the same spans."""

from __future__ import annotations

import numpy as np

from live.contract import MEL
from live.midifile import Part, Song, load_midi, read_song
from live.windows import cut_windows
from train.data.features import frame_of, load_audio, log_mel, rms_db
from train.data.slakh import StemRef
from train.data.store import StemWindows


def stem_part(song: Song) -> Part:
    """All pitched notes of a stem's MIDI file as one part (a stem is one instrument)."""
    parts = [p for p in song.parts if len(p) and not p.is_drum]
    if not parts:
        raise ValueError("the stem's MIDI file has no pitched notes")
    first = parts[0]
    if len(parts) == 1:
        return first
    cat = {
        k: np.concatenate([getattr(p, k) for p in parts])
        for k in ("pitches", "starts", "ends", "velocities", "muted")
    }
    order = np.argsort(cat["starts"], kind="stable")
    return Part(
        first.track,
        first.channel,
        first.program,
        first.name,
        **{k: v[order] for k, v in cat.items()},
    )


def stem_windows(stem: StemRef, *, hop_bars: int, silence_db: float) -> StemWindows:
    """Cut a stem on its MIDI's bar grid (hop ``hop_bars``), dropping windows with no notes,
    windows past the end of the audio, and windows whose audio RMS is below ``silence_db``.

    The log-mel is computed once over the whole stem and each window keeps the frames centred
    in its span ``[t0, t1)``: the same numbers as cutting the audio first, to within one hop
    (23 ms) at the edges, at half the cost when windows overlap.
    """
    song = read_song(load_midi(stem.midi_path))
    part = stem_part(song)
    y = load_audio(stem.audio_path)
    sr = MEL.sample_rate
    rolls, rows, spans = [], [], []
    silent = past_end = 0
    for w in cut_windows(part, song.bars, song.ticks_per_beat, hop_bars=hop_bars):
        t0, t1 = (float(t) for t in song.tempo.to_seconds([w.start_tick, w.end_tick]))
        s0, s1 = round(t0 * sr), round(t1 * sr)
        if s1 > y.size:
            past_end += 1
            continue
        if rms_db(y[s0:s1]) < silence_db:
            silent += 1
            continue
        f0 = frame_of(t0)
        f1 = max(f0 + 1, frame_of(t1))
        rolls.append(w.roll)
        spans.append((f0, f1))
        rows.append(
            {
                "song": stem.song,
                "stem": stem.stem,
                "split": stem.split,
                "class": stem.label,
                "program": stem.program,
                "soundfont": stem.soundfont,
                "bar": w.bar,
                "start_sec": round(t0, 6),
                "end_sec": round(t1, 6),
                "start_tick": w.start_tick,
                "end_tick": w.end_tick,
                "valid_steps": w.valid_steps,
                "tempo_bpm": round(song.tempo.bpm_at(w.start_tick), 3),
            }
        )
    if not rows:
        empty = np.zeros((0, MEL.n_mels), np.float16)
        return StemWindows(stem.key, np.zeros((0, 128, 16), np.uint8), empty, [], silent, past_end)
    # Keep only the frames the windows span; offsets relative to the first of them.
    base, stop = min(f0 for f0, _ in spans), max(f1 for _, f1 in spans)
    mel = log_mel(y)[base:stop].astype(np.float16)
    for row, (f0, f1) in zip(rows, spans, strict=True):
        row["mel_offset"], row["mel_frames"] = f0 - base, f1 - f0
    return StemWindows(stem.key, np.stack(rolls), mel, rows, silent, past_end)
