"""Audio features of the teacher: log-mel spectrogram with the contract's numbers."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import librosa
import numpy as np
import numpy.typing as npt
import soundfile

from live.contract import MEL, MelSpec


def load_audio(path: Path, *, sample_rate: int = MEL.sample_rate) -> npt.NDArray[np.float32]:
    """Read a stem (FLAC or WAV, any rate) as mono float32 ``[n]`` at ``sample_rate``."""
    y, sr = soundfile.read(path, dtype="float32", always_2d=True)
    y = y.mean(axis=1)
    if sr != sample_rate:
        y = librosa.resample(y, orig_sr=sr, target_sr=sample_rate, res_type="soxr_hq")
    return np.ascontiguousarray(y, dtype=np.float32)


@lru_cache(maxsize=4)
def _mel_basis(spec: MelSpec) -> npt.NDArray[np.float32]:
    return librosa.filters.mel(sr=spec.sample_rate, n_fft=spec.n_fft, n_mels=spec.n_mels).astype(
        np.float32
    )


def log_mel(y: npt.NDArray[np.float32], *, spec: MelSpec = MEL) -> npt.NDArray[np.float32]:
    """Log-mel power spectrogram of a whole stem.

    Returns ``[frames, n_mels]`` in dB re full scale, floored at ``spec.top_db_floor``.
    Frame ``f`` is centred on sample ``f * hop_length`` (librosa's ``center=True``), so the
    frames of a span ``[t0, t1)`` seconds are ``round(t0 * sr / hop) ... round(t1 * sr / hop)``.
    Time-major so a store can append stems row by row.
    """
    stft = librosa.stft(y, n_fft=spec.n_fft, hop_length=spec.hop_length, center=True)
    power = np.abs(stft) ** 2
    mel = _mel_basis(spec) @ power
    db = 10.0 * np.log10(np.maximum(mel, 1e-10))
    return np.maximum(db, spec.top_db_floor).T.astype(np.float32)


def frame_of(seconds: float, *, spec: MelSpec = MEL) -> int:
    """Index of the mel frame centred nearest to ``seconds``."""
    return int(round(seconds * spec.sample_rate / spec.hop_length))


def rms_db(y: npt.NDArray[np.float32]) -> float:
    """RMS level of ``y`` in dB re full scale (-inf for digital silence)."""
    if y.size == 0:
        return float("-inf")
    rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64))))
    return 20 * np.log10(rms) if rms > 0 else float("-inf")
