"""Sound for CNNs: recordings from wav files, and spectrograms, "an image representation".

The lecture's "CNNs are not just for images" slide: a spectrogram of a spoken digit is
an image (time along one axis, frequency along the other, loudness as the pixel value),
and in it, as in a photograph, "things closer together are more closely related". The
waveform itself is a 1-D image a 1-D CNN can read.

- :func:`load_recordings`: a folder of ``{digit}_{speaker}_{index}.wav`` files (the Free
  Spoken Digit Dataset's names) as fixed-length waveforms, labels and speakers.
- :func:`spectrogram`: the log-magnitude short-time Fourier transform, optionally on the
  mel scale; pure ``jax.numpy`` / ``jax.scipy.signal``, so it runs under ``jit`` and
  ``vmap`` and is differentiable (a model can take waveforms and compute its own
  spectrogram).
- :func:`mel_filterbank`: the triangular filters that map FFT bins to mel bins.
- :func:`warp_frequencies`: vocal-tract-length perturbation's warp of the frequency axis,
  which ``mel_filterbank(warp=)`` and ``spectrogram(warp=)`` apply.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import re
import wave
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from jax.typing import ArrayLike

from . import _checks

_NAME = re.compile(r"^(\d)_([A-Za-z0-9-]+)_(\d+)\.wav$")


@dataclasses.dataclass(frozen=True)
class Recordings:
    """Recordings of spoken digits, one row each.

    Attributes:
      waveforms: ``(N, length)`` float32 in [-1, 1) (16-bit samples / 32768).
      labels: ``(N,)`` int32, the digit spoken.
      speakers: ``(N,)`` str, who spoke it.
      indices: ``(N,)`` int32, the recording's number (per digit and speaker).
      lengths: ``(N,)`` int32, each recording's length before padding or cropping.
      sample_rate: samples per second.
    """

    waveforms: np.ndarray
    labels: np.ndarray
    speakers: np.ndarray
    indices: np.ndarray
    lengths: np.ndarray
    sample_rate: int

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, mask: ArrayLike) -> Recordings:
        """The recordings where ``mask`` (a boolean array, or indices) selects them."""
        return dataclasses.replace(self, waveforms=self.waveforms[mask], labels=self.labels[mask],
                                   speakers=self.speakers[mask], indices=self.indices[mask],
                                   lengths=self.lengths[mask])


def _fit(samples: np.ndarray, length: int) -> np.ndarray:
    """``samples`` centred in ``length``: zeros added evenly on both sides, or the middle kept."""
    if len(samples) >= length:
        start = (len(samples) - length) // 2
        return samples[start : start + length]
    before = (length - len(samples)) // 2
    return np.pad(samples, (before, length - len(samples) - before))


def read_wav(path: str | os.PathLike) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)`` of a mono 16-bit PCM wav file, samples float32 in [-1, 1)."""
    with wave.open(os.fspath(path), "rb") as f:
        channels, width, rate, frames = f.getnchannels(), f.getsampwidth(), f.getframerate(), f.getnframes()
        if channels != 1 or width != 2:
            raise ValueError(f"{path}: expected mono 16-bit PCM, got {channels} channel(s) of {8 * width} bits.")
        data = f.readframes(frames)
    return np.frombuffer(data, "<i2").astype(np.float32) / 32768.0, rate


def load_recordings(directory: str | os.PathLike, *, length: int = 8000,
                    sample_rate: int = 8000) -> Recordings:
    """Every ``{digit}_{speaker}_{index}.wav`` file of ``directory``, sorted by name.

    Args:
      directory: a folder of mono 16-bit wav files named as the Free Spoken Digit
        Dataset names them (``7_jackson_32.wav``); other files are ignored.
      length: samples per waveform. A shorter recording is centred between zeros, a
        longer one keeps its middle ``length`` samples (the recordings are trimmed of
        silence, so the word fills them). The default, 8000, is one second at 8 kHz:
        FSDD's recordings are 0.14 s to 2.3 s long, 99% of them under one second.
      sample_rate: the rate every file must have (no resampling is done).

    Raises:
      FileNotFoundError: if ``directory`` is not a folder or holds no such file.
      ValueError: naming the first file that is not mono 16-bit PCM at ``sample_rate``.
    """
    length = _checks.positive_int(length, "length")
    sample_rate = _checks.positive_int(sample_rate, "sample_rate")
    folder = Path(directory)
    if not folder.is_dir():
        raise FileNotFoundError(f"`directory` {str(directory)!r} is not a folder.")
    named = [(m, p) for p in sorted(folder.iterdir()) if (m := _NAME.match(p.name))]
    if not named:
        raise FileNotFoundError(f"{folder} holds no wav file named {{digit}}_{{speaker}}_{{index}}.wav "
                                f"(e.g. 7_jackson_32.wav).")
    waveforms = np.empty((len(named), length), np.float32)
    lengths = np.empty(len(named), np.int32)
    for i, (_, path) in enumerate(named):
        samples, rate = read_wav(path)
        if rate != sample_rate:
            raise ValueError(f"{path}: sampled at {rate} Hz, expected `sample_rate`={sample_rate}.")
        waveforms[i], lengths[i] = _fit(samples, length), len(samples)
    return Recordings(
        waveforms=waveforms,
        labels=np.array([int(m.group(1)) for m, _ in named], np.int32),
        speakers=np.array([m.group(2) for m, _ in named]),
        indices=np.array([int(m.group(3)) for m, _ in named], np.int32),
        lengths=lengths,
        sample_rate=sample_rate,
    )


def _mel(hz, xp):
    """HTK's mel scale, in the array module ``xp`` (``jnp``, or ``np`` for float64 filter edges)."""
    return 2595.0 * xp.log10(1.0 + hz / 700.0)


def hz_to_mel(hz: ArrayLike) -> jax.Array:
    """The mel scale (HTK's formula): ``2595 * log10(1 + hz / 700)``."""
    return _mel(jnp.asarray(hz, jnp.float32), jnp)


def warp_frequencies(hz: ArrayLike, warp: float, sample_rate: int, *, cutoff: float | None = None) -> np.ndarray:
    """Vocal-tract-length perturbation's frequency warp (Jaitly & Hinton, 2013): ``hz * warp``
    up to ``cutoff * min(warp, 1) / warp``, then a straight line to ``sample_rate / 2``, which
    stays put. ``warp > 1`` moves the formants up, as a shorter vocal tract does.

    Args:
      hz: frequencies in ``[0, sample_rate / 2]``.
      warp: the factor, in ``[0.5, 2]``.
      sample_rate: samples per second.
      cutoff: where the straight line starts for ``warp <= 1`` (default: 0.8 of half the
        sample rate), below half the sample rate.
    """
    nyquist = sample_rate / 2
    cutoff = 0.8 * nyquist if cutoff is None else cutoff
    if not 0.5 <= warp <= 2:
        raise ValueError(f"`warp` must be in [0.5, 2], got {warp}.")
    if not 0 < cutoff < nyquist:
        raise ValueError(f"`cutoff` must be in (0, sample_rate / 2 = {nyquist}), got {cutoff}.")
    hz = np.asarray(hz, np.float64)
    knee = cutoff * min(warp, 1.0) / warp
    above = nyquist - (nyquist - cutoff * min(warp, 1.0)) / (nyquist - knee) * (nyquist - hz)
    return np.where(hz <= knee, hz * warp, above)


def mel_filterbank(mel_bins: int, fft_length: int, sample_rate: int, *, min_hz: float = 0.0,
                   max_hz: float | None = None, warp: float = 1.0) -> np.ndarray:
    """``(fft_length // 2 + 1, mel_bins)`` weights: column ``m`` a triangle over the FFT bins'
    frequencies, rising from mel edge ``m`` to ``m + 1`` and falling to ``m + 2``, the
    ``mel_bins + 2`` edges evenly spaced in mel from ``min_hz`` to ``max_hz`` (default:
    half the sample rate). Peaks are 1 (no area normalisation). With ``warp`` other than 1,
    each FFT bin counts at its frequency warped by :func:`warp_frequencies` (vocal-tract-
    length perturbation: the same words as a voice with a shorter or longer vocal tract)."""
    mel_bins = _checks.positive_int(mel_bins, "mel_bins")
    fft_length = _checks.positive_int(fft_length, "fft_length")
    max_hz = sample_rate / 2 if max_hz is None else max_hz
    if not 0 <= min_hz < max_hz <= sample_rate / 2:
        raise ValueError(f"`min_hz` and `max_hz` must satisfy 0 <= min_hz < max_hz <= sample_rate / 2 = "
                         f"{sample_rate / 2}, got {min_hz} and {max_hz}.")
    mel = lambda f: _mel(np.asarray(f, np.float64), np)
    edges = np.linspace(mel(min_hz), mel(max_hz), mel_bins + 2)
    hz = np.linspace(0, sample_rate / 2, fft_length // 2 + 1)
    bins = mel(hz if warp == 1.0 else warp_frequencies(hz, warp, sample_rate))[:, None]
    lower, centre, upper = edges[:-2], edges[1:-1], edges[2:]
    rising, falling = (bins - lower) / (centre - lower), (upper - bins) / (upper - centre)
    return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def spectrogram(waveforms: ArrayLike, *, sample_rate: int = 8000, frame_length: int = 256, frame_step: int = 128,
                fft_length: int | None = None, mel_bins: int | None = None, min_hz: float = 0.0,
                max_hz: float | None = None, warp: float = 1.0, floor: float = 1e-5) -> jax.Array:
    """The log-magnitude spectrogram of ``waveforms (..., samples)``: ``(..., frames, bins)``.

    Frames of ``frame_length`` samples, ``frame_step`` apart, with no padding at either
    end (``frames = 1 + (samples - frame_length) // frame_step``), each multiplied by a
    periodic Hann window and Fourier transformed (``jax.scipy.signal.stft``, which
    scales as ``scipy.signal.stft`` does); ``bins = fft_length // 2 + 1`` frequencies
    from 0 to ``sample_rate / 2``, or ``mel_bins`` mel bands (:func:`mel_filterbank`
    applied to the power). The value is ``log(sqrt(power + floor**2))``: the log
    magnitude, kept finite and differentiable where a bin is silent.

    Args:
      waveforms: float samples, the last axis time.
      sample_rate: samples per second (sets the frequencies of the mel bands).
      frame_length, frame_step: window and hop in samples.
      fft_length: FFT size, at least ``frame_length`` (default ``frame_length``).
      mel_bins: mel bands instead of linear frequencies (default: linear).
      min_hz, max_hz: the mel bands' range (default 0 to ``sample_rate / 2``).
      warp: with ``mel_bins``, vocal-tract-length perturbation (:func:`mel_filterbank`).
      floor: the magnitude below which every value reads the same.

    Example: one second at 8 kHz, 256-sample frames every 128 -> ``(61, 129)``; with
    ``mel_bins=40`` -> ``(61, 40)``.
    """
    waveforms = _checks.as_array(waveforms, "waveforms")
    _checks.check_floating(waveforms, "waveforms")
    frame_length = _checks.positive_int(frame_length, "frame_length")
    frame_step = _checks.positive_int(frame_step, "frame_step")
    fft_length = frame_length if fft_length is None else _checks.positive_int(fft_length, "fft_length")
    if fft_length < frame_length:
        raise ValueError(f"`fft_length`={fft_length} must be at least `frame_length`={frame_length}.")
    if frame_step > frame_length:
        raise ValueError(f"`frame_step`={frame_step} must be at most `frame_length`={frame_length}: frames "
                         f"would skip samples.")
    if waveforms.ndim == 0 or waveforms.shape[-1] < frame_length:
        raise ValueError(f"`waveforms` must have at least `frame_length`={frame_length} samples on its last axis, "
                         f"got shape {waveforms.shape}.")
    _, _, z = jax.scipy.signal.stft(waveforms, fs=sample_rate, window="hann", nperseg=frame_length,
                                    noverlap=frame_length - frame_step, nfft=fft_length, boundary=None,
                                    padded=False)
    power = jnp.swapaxes(jnp.real(z) ** 2 + jnp.imag(z) ** 2, -1, -2)  # (..., frames, bins)
    if mel_bins is not None:
        power = power @ mel_filterbank(mel_bins, fft_length, sample_rate, min_hz=min_hz, max_hz=max_hz, warp=warp)
    elif warp != 1.0:
        raise ValueError(f"`warp`={warp} needs `mel_bins`: the warp moves the mel filters.")
    return 0.5 * jnp.log(power + floor**2)


# ------------------------------------------------------------------------------- a dataset's inputs


@functools.cache
def _spectrogram_program(sample_rate: int, frame_length: int, frame_step: int, mel_bins: int, warp: float):
    """The compiled log-mel spectrogram for these settings, made once for every call that needs it."""
    return jax.jit(lambda w: spectrogram(w, sample_rate=sample_rate, frame_length=frame_length,
                                         frame_step=frame_step, mel_bins=mel_bins, warp=warp))


def spectrograms(waveforms: np.ndarray, *, sample_rate: int = 8000, frame_length: int = 256, frame_step: int = 128,
                 mel_bins: int = 40, warp: float = 1.0) -> np.ndarray:
    """``(N, samples)`` -> ``(N, frames, mel_bins, 1)`` log-mel spectrograms (:func:`spectrogram`),
    computed 256 recordings at a time by one compiled program, as NumPy images of one channel."""
    fn = _spectrogram_program(sample_rate, frame_length, frame_step, mel_bins, float(warp))
    return np.concatenate([np.asarray(fn(waveforms[i : i + 256])) for i in range(0, len(waveforms), 256)])[..., None]


def standardise(x: np.ndarray) -> np.ndarray:
    """Each row (recording) to zero mean and unit variance: a loud and a quiet voice read alike."""
    axes = tuple(range(1, x.ndim))
    return ((x - x.mean(axes, keepdims=True)) / (x.std(axes, keepdims=True) + 1e-5)).astype(np.float32)


def own_frames(lengths: np.ndarray, samples: int, *, frame_length: int = 256, frame_step: int = 128) -> np.ndarray:
    """``(N, frames)``: True for the spectrogram frames whose centre lies inside the recording,
    False for those in the zeros it was centred between (:func:`load_recordings`)."""
    frames = 1 + (samples - frame_length) // frame_step
    n = np.minimum(lengths, samples)
    start = (samples - n) // 2
    centres = np.arange(frames) * frame_step + frame_length // 2
    own = (centres[None] >= start[:, None]) & (centres[None] < (start + n)[:, None])
    middle = np.clip(np.rint((start + n / 2 - frame_length // 2) / frame_step).astype(int), 0, frames - 1)
    own[np.arange(len(n)), middle] = True  # a recording shorter than a hop still has its nearest frame
    return own


def own_band_normalised(x: np.ndarray, own: np.ndarray) -> np.ndarray:
    """``(N, frames, bands)`` log-mel values with each band's mean over the recording's own
    frames removed, the padding then set to each band's quietest own frame (it reads as the
    recording's own silence), and the whole standardised over its own frames: a recording
    reads the same however much padding surrounds it."""
    own = own[..., None]
    count = own.sum(1, keepdims=True)
    x = x - (x * own).sum(1, keepdims=True) / count
    x = np.where(own, x, np.where(own, x, np.inf).min(1, keepdims=True))
    values = count * x.shape[2]
    mean = (x * own).sum((1, 2), keepdims=True) / values
    std = np.sqrt((((x - mean) ** 2) * own).sum((1, 2), keepdims=True) / values)
    return ((x - mean) / (std + 1e-5)).astype(np.float32)


NORMALISATIONS = ("recording", "band", "own")
"""How :func:`log_mel_inputs` normalises a recording's spectrogram."""


def log_mel_inputs(recordings: Recordings, normalise: str = "recording", *, warp: float = 1.0,
                   sample_rate: int = 8000, frame_length: int = 256, frame_step: int = 128,
                   mel_bins: int = 40) -> np.ndarray:
    """What a 2-D CNN reads of ``recordings`` (anything with ``waveforms (N, samples)`` and
    ``lengths (N,)``): ``(N, frames, mel_bins, 1)`` log-mel spectrograms (:func:`spectrograms`)
    normalised as ``normalise`` says:

    - ``"recording"``: each recording standardised as a whole (:func:`standardise`);
    - ``"band"``: each frequency band's mean over time removed first (the voice's and the
      microphone's colouring), then standardised;
    - ``"own"``: the same over the recording's own frames only, the zeros it was centred
      between read as its quietest frame (:func:`own_band_normalised`): a recording reads
      the same however much padding surrounds it.
    """
    if normalise not in NORMALISATIONS:
        raise ValueError(f"`normalise` must be one of {NORMALISATIONS}, got {normalise!r}.")
    x = spectrograms(recordings.waveforms, sample_rate=sample_rate, frame_length=frame_length,
                     frame_step=frame_step, mel_bins=mel_bins, warp=warp)
    if normalise == "own":
        own = own_frames(recordings.lengths, recordings.waveforms.shape[1], frame_length=frame_length,
                         frame_step=frame_step)
        return own_band_normalised(x[..., 0], own)[..., None]
    if normalise == "band":
        x = x - x.mean(axis=1, keepdims=True)
    return standardise(x)


def stretched(x: np.ndarray, factor: float) -> np.ndarray:
    """``(N, frames, bands, C)`` images stretched along time about their centre by ``factor``
    (> 1: longer, the word said more slowly), linearly interpolated; the edge frames (the
    silence around a centred recording) extend where the stretch reaches past them."""
    n = x.shape[1]
    centre = (n - 1) / 2
    where = np.clip(centre + (np.arange(n) - centre) / factor, 0, n - 1)
    below = np.floor(where).astype(int)
    above = np.minimum(below + 1, n - 1)
    weight = (where - below)[None, :, None, None]
    return ((1 - weight) * x[:, below] + weight * x[:, above]).astype(x.dtype)


def speed_perturbed(recordings: Recordings, factors=(0.9, 1.1)) -> Recordings:
    """The recordings followed by each played ``factor`` times as fast (linear interpolation
    about the centre, as a tape played faster: pitch and tempo change together); a copy's
    length is its recording's divided by ``factor`` (what :func:`own_frames` reads)."""
    n = recordings.waveforms.shape[1]
    centre = (n - 1) / 2
    copies = [recordings.waveforms]
    for factor in factors:
        where = centre + (np.arange(n) - centre) * factor
        copies.append(np.stack([np.interp(where, np.arange(n), w, left=0, right=0) for w in recordings.waveforms]))
    k = len(factors) + 1
    return dataclasses.replace(recordings, waveforms=np.concatenate(copies).astype(np.float32),
                               labels=np.tile(recordings.labels, k), speakers=np.tile(recordings.speakers, k),
                               indices=np.tile(recordings.indices, k),
                               lengths=np.concatenate([recordings.lengths] + [np.rint(recordings.lengths / factor)
                                                                              .astype(np.int32) for factor in factors]))


__all__ = ["NORMALISATIONS", "Recordings", "hz_to_mel", "load_recordings", "log_mel_inputs", "mel_filterbank",
           "own_band_normalised", "own_frames",
           "read_wav", "speed_perturbed", "spectrogram", "spectrograms", "standardise", "stretched",
           "warp_frequencies"]
