"""cnnjax.audio: spectrograms against scipy.signal, the mel filters against a NumPy loop, wav loading."""

import re
import types
import wave

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.signal
from helpers import write_wav

from cnnjax import audio


def signal(shape=(2, 1000), seed=0):
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


def scipy_power(x, rate, frame_length, frame_step, fft_length=None):
    _, _, z = scipy.signal.stft(x.astype(np.float64), fs=rate, window="hann", nperseg=frame_length,
                                noverlap=frame_length - frame_step, nfft=fft_length, boundary=None, padded=False)
    return np.swapaxes(np.abs(z) ** 2, -1, -2)


@pytest.mark.parametrize("frame_length, frame_step, fft_length", [(128, 32, None), (256, 128, None), (100, 50, 128)])
@pytest.mark.slow
def test_spectrogram_is_scipys_log_magnitude(frame_length, frame_step, fft_length):
    x = signal()
    got = audio.spectrogram(x, sample_rate=8000, frame_length=frame_length, frame_step=frame_step,
                            fft_length=fft_length)
    want = np.log(np.sqrt(scipy_power(x, 8000, frame_length, frame_step, fft_length) + 1e-10))
    frames, bins = 1 + (1000 - frame_length) // frame_step, (fft_length or frame_length) // 2 + 1
    assert got.shape == (2, frames, bins)
    np.testing.assert_allclose(got, want, atol=2e-4)


def loop_filterbank(mel_bins, fft_length, rate, low, high, hz=lambda f: f):
    """Each triangle written out bin by bin, from the mel scale's definition; ``hz`` moves
    each FFT bin's frequency first."""
    to_mel = lambda f: 2595 * np.log10(1 + f / 700)
    step = (to_mel(high) - to_mel(low)) / (mel_bins + 1)
    out = np.zeros((fft_length // 2 + 1, mel_bins))
    for k in range(fft_length // 2 + 1):
        m = to_mel(hz(k * rate / fft_length))
        for j in range(mel_bins):
            left, centre, right = (to_mel(low) + step * (j + i) for i in range(3))
            if left < m <= centre:
                out[k, j] = (m - left) / (centre - left)
            elif centre < m < right:
                out[k, j] = (right - m) / (right - centre)
    return out


def test_mel_filterbank_and_mel_spectrogram():
    bank = audio.mel_filterbank(20, 256, 8000, min_hz=100, max_hz=3800)
    np.testing.assert_allclose(bank, loop_filterbank(20, 256, 8000, 100, 3800), atol=1e-6)
    assert bank.shape == (129, 20) and bank.max() <= 1 and (bank.max(0) > 0.5).all()
    x = signal()
    got = audio.spectrogram(x, frame_length=256, frame_step=128, mel_bins=20, min_hz=100, max_hz=3800)
    want = np.log(np.sqrt(scipy_power(x, 8000, 256, 128) @ bank + 1e-10))
    np.testing.assert_allclose(got, want, atol=2e-4)


def test_vocal_tract_length_warp():
    """Jaitly & Hinton (2013)'s warp at 8 kHz, cutoff 3200 Hz, by hand: below the knee
    (3200 * min(w, 1) / w) a frequency is multiplied by w; above it, a line to 4000 Hz."""
    got = audio.warp_frequencies([0, 1000, 2880, 3500, 4000], 1.1, 8000)
    np.testing.assert_allclose(got, [0, 1100, 3168, 4000 - 800 / (4000 - 3200 / 1.1) * 500, 4000])
    got = audio.warp_frequencies([1000, 3200, 3600, 4000], 0.9, 8000)
    np.testing.assert_allclose(got, [900, 2880, 4000 - (4000 - 2880) / 800 * 400, 4000])
    by_hand = lambda f: f * 1.1 if f <= 3200 / 1.1 else 4000 - (4000 - 3200) / (4000 - 3200 / 1.1) * (4000 - f)
    bank = audio.mel_filterbank(20, 256, 8000, warp=1.1)
    np.testing.assert_allclose(bank, loop_filterbank(20, 256, 8000, 0, 4000, by_hand), atol=1e-6)
    assert not np.allclose(bank, audio.mel_filterbank(20, 256, 8000))
    x = signal()
    got = audio.spectrogram(x, frame_length=256, frame_step=128, mel_bins=20, warp=1.1)
    np.testing.assert_allclose(got, np.log(np.sqrt(scipy_power(x, 8000, 256, 128) @ bank + 1e-10)), atol=2e-4)


@pytest.mark.slow
def test_spectrogram_under_jit_vmap_and_grad():
    x = signal((3, 600))
    fn = lambda w: audio.spectrogram(w, frame_length=128, frame_step=64, mel_bins=16)
    np.testing.assert_allclose(jax.jit(jax.vmap(fn))(x), fn(x), atol=1e-5)
    silent = np.zeros((1, 600), np.float32)  # a silent bin: the floor keeps the gradient finite
    assert np.isfinite(jax.grad(lambda w: fn(w).sum())(silent)).all()
    loss = lambda w: jnp.sum(fn(w) ** 2)
    direction = signal((3, 600), seed=1)
    grad = jax.grad(loss)(x)
    step = 1e-2
    numeric = (loss(x + step * direction) - loss(x - step * direction)) / (2 * step)
    np.testing.assert_allclose(np.sum(grad * direction), numeric, rtol=2e-2)


@pytest.mark.parametrize("call, error, message", [
    (lambda: audio.spectrogram(np.ones(100, np.float32)), ValueError,
     "`waveforms` must have at least `frame_length`=256 samples on its last axis, got shape (100,)"),
    (lambda: audio.spectrogram(np.ones(1000, np.int16)), TypeError, "`waveforms` must have a floating-point dtype"),
    (lambda: audio.spectrogram(np.ones(1000, np.float32), frame_step=300), ValueError,
     "`frame_step`=300 must be at most `frame_length`=256"),
    (lambda: audio.spectrogram(np.ones(1000, np.float32), fft_length=128), ValueError,
     "`fft_length`=128 must be at least `frame_length`=256"),
    (lambda: audio.spectrogram(np.ones(1000, np.float32), warp=1.1), ValueError,
     "`warp`=1.1 needs `mel_bins`: the warp moves the mel filters."),
    (lambda: audio.warp_frequencies([100], 3.0, 8000), ValueError, "`warp` must be in [0.5, 2], got 3.0."),
    (lambda: audio.warp_frequencies([100], 1.1, 8000, cutoff=4000), ValueError,
     "`cutoff` must be in (0, sample_rate / 2 = 4000.0), got 4000"),
    (lambda: audio.mel_filterbank(10, 256, 8000, max_hz=5000), ValueError,
     "`min_hz` and `max_hz` must satisfy 0 <= min_hz < max_hz <= sample_rate / 2 = 4000.0, got 0.0 and 5000"),
])
def test_errors(call, error, message):
    with pytest.raises(error, match=re.escape(message)):
        call()


def test_load_recordings_centres_pads_and_crops(tmp_path):
    write_wav(tmp_path / "3_ann_7.wav", np.arange(1, 5) * 1000)  # 4 samples: padded 3 before, 3 after
    write_wav(tmp_path / "9_bob_0.wav", np.arange(20) * 100)  # 20 samples: the middle 10 kept
    (tmp_path / "README.md").write_text("not a recording")
    r = audio.load_recordings(tmp_path, length=10)
    assert r.labels.tolist() == [3, 9] and r.speakers.tolist() == ["ann", "bob"] and r.indices.tolist() == [7, 0]
    assert r.lengths.tolist() == [4, 20] and r.sample_rate == 8000 and len(r) == 2
    np.testing.assert_array_equal(r.waveforms[0] * 32768, [0, 0, 0, 1000, 2000, 3000, 4000, 0, 0, 0])
    np.testing.assert_array_equal(r.waveforms[1] * 32768, np.arange(5, 15) * 100)
    assert r.subset(r.speakers == "bob").labels.tolist() == [9]


def test_load_recordings_refuses_what_it_cannot_read(tmp_path):
    with pytest.raises(FileNotFoundError, match="holds no wav file named"):
        audio.load_recordings(tmp_path)
    write_wav(tmp_path / "1_ann_0.wav", np.zeros(10), rate=16000)
    with pytest.raises(ValueError, match=re.escape("sampled at 16000 Hz, expected `sample_rate`=8000")):
        audio.load_recordings(tmp_path)
    write_wav(tmp_path / "1_ann_0.wav", np.zeros(10), channels=2)
    with pytest.raises(ValueError, match="expected mono 16-bit PCM, got 2 channel"):
        audio.load_recordings(tmp_path)


@pytest.mark.slow
def test_the_free_spoken_digit_dataset(fsdd_dir):
    """Real recordings, checked against Python's ``wave`` module: every file, each one's
    format and length; for the whole dataset, the figures its README gives."""
    files = sorted(fsdd_dir.glob("*.wav"))
    r = audio.load_recordings(fsdd_dir)
    per_digit = np.bincount([int(f.name.split("_")[0]) for f in files], minlength=10)
    assert r.waveforms.shape == (len(files), 8000) and np.bincount(r.labels).tolist() == per_digit.tolist()
    assert sorted(set(r.speakers)) == ["george", "jackson", "nicolas", "theo", "yweweler"]
    lengths = {}
    for f in files:
        with wave.open(str(f)) as w:
            assert (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (8000, 1, 2)
            lengths[f.name] = w.getnframes()
    assert sorted(r.lengths.tolist()) == sorted(lengths.values()) and np.abs(r.waveforms).max() <= 1
    if len(files) == 2500:  # the whole dataset
        assert per_digit.tolist() == [250] * 10 and (r.lengths.min(), r.lengths.max()) == (1148, 18262)


def test_tempo_stretch_by_hand():
    """Five frames 0..4 about the centre frame 2: twice as long reads frames 1, 1.5, 2, 2.5, 3;
    half as long reads -2, 0, 2, 4, 6, held at the edge frames."""
    stretched = audio.stretched
    x = np.broadcast_to(np.arange(5.0, dtype=np.float32)[None, :, None, None], (2, 5, 3, 1))
    np.testing.assert_allclose(stretched(x, 2.0)[1, :, 2, 0], [1, 1.5, 2, 2.5, 3])
    np.testing.assert_allclose(stretched(x, 0.5)[0, :, 0, 0], [0, 0, 2, 4, 4])
    assert stretched(x, 2.0).shape == x.shape and stretched(x, 2.0).dtype == np.float32


def test_own_frames_by_hand():
    """256-sample frames every 128 of 4,000 samples: 30 frames, frame i centred at 128 i + 128.
    1,000 samples centred sit at 1,500..2,499: the centres of frames 11..18 lie inside. 50
    samples (1,975..2,024) hold no centre: the nearest frame, 15, is theirs."""
    own = audio.own_frames(np.array([1000, 50, 4000, 9000]), 4000)
    assert own.shape == (4, 30)
    assert np.flatnonzero(own[0]).tolist() == list(range(11, 19))
    assert np.flatnonzero(own[1]).tolist() == [15]
    assert own[2].all() and own[3].all()


def test_log_mel_inputs_normalise_as_named_and_refuse_another_name():
    rng = np.random.default_rng(0)
    recordings = types.SimpleNamespace(waveforms=rng.normal(size=(2, 2000)).astype(np.float32),
                                       lengths=np.array([2000, 1200]))
    x = audio.spectrograms(recordings.waveforms)
    np.testing.assert_allclose(audio.log_mel_inputs(recordings), audio.standardise(x), atol=1e-6)
    band = audio.log_mel_inputs(recordings, "band")
    np.testing.assert_allclose(band, audio.standardise(x - x.mean(axis=1, keepdims=True)), atol=1e-6)
    own = audio.log_mel_inputs(recordings, "own")
    frames = audio.own_frames(recordings.lengths, 2000)
    np.testing.assert_allclose(own[..., 0], audio.own_band_normalised(x[..., 0], frames), atol=1e-6)
    with pytest.raises(ValueError, match=r"`normalise` must be one of \('recording', 'band', 'own'\), got 'mixed'"):
        audio.log_mel_inputs(recordings, "mixed")
