"""One loudness for every style and mood: a bar-by-bar leveler measured the EBU R 128 way, and a peak
limiter as the safety net.

Loudness is ITU-R BS.1770's: the K-weighting filter (a +4 dB high shelf above ~1.5 kHz and a 38 Hz high
pass, the two biquads of BS.1770 re-derived for any sample rate, as pyloudnorm does) then the mean square
summed over the two channels, ``LUFS = -0.691 + 10 log10(power)``. A bar's K-weighted power is computed
in the frequency domain (Parseval: the bar's spectrum, zero-padded to a fast FFT length, times the filter's
power response), which numpy does in one FFT without a time-domain IIR loop.

:class:`Leveler` keeps a running loudness estimate (exponential, power domain, time constant
``time_constant_s``; bars quieter than the BS.1770 absolute gate of -70 LUFS are left out) and plays each
bar with the gain that brings the estimate to ``target_lufs``; the gain moves linearly across a bar from
the previous bar's value, so a change is a slow ramp, never a step. Then a limiter keeps sample peaks at
or under ``ceiling_db`` (-2 dBFS: 1 dB under the -1 dBTP true-peak limit leaves room for the peaks between
samples): per block of ``block`` frames the gain needed is found, taken at block edges as the lower of the
two neighbours (so it is reached before the peak), recovered at ``release_s`` per unit of gain, and
interpolated linearly inside blocks. Across bar lines the limiter's gain carries on.

Measured on the shipped bundle (5 styles x 2 moods, 30 s, ``pyloudnorm`` on the WAVs): see
tests/test_loudness.py and the README.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

ABSOLUTE_GATE_LUFS = -70.0
"""BS.1770-4's absolute gate: quieter blocks (here bars) do not count."""


@dataclass(frozen=True)
class LevelSettings:
    """target_lufs: loudness the box plays at (LUFS). time_constant_s: seconds over which the loudness
    estimate follows the music. min_gain_db/max_gain_db: bounds of the leveling gain (dB). ceiling_db:
    sample-peak limit (dBFS). block: limiter block (frames). release_s: seconds for the limiter's gain to
    recover by 1 (full scale)."""

    target_lufs: float = -18.0
    time_constant_s: float = 6.0
    min_gain_db: float = -24.0
    max_gain_db: float = 24.0
    ceiling_db: float = -2.0
    block: int = 256
    release_s: float = 0.3


DEFAULT_LEVEL = LevelSettings()


def k_weighting_power_response(freqs: np.ndarray, sample_rate: int) -> np.ndarray:
    """``|H(f)|^2`` of BS.1770's K-weighting (high shelf then high pass) at ``freqs`` (Hz)."""
    z = np.exp(-1j * 2 * np.pi * np.asarray(freqs, dtype=np.float64) / sample_rate)  # z^-1 on the circle
    response = np.ones_like(z)
    for b, a in _k_biquads(sample_rate):
        response *= (b[0] + b[1] * z + b[2] * z**2) / (a[0] + a[1] * z + a[2] * z**2)
    return np.abs(response) ** 2


def k_weighted_power(pcm: np.ndarray, sample_rate: int) -> float:
    """Mean square of the K-weighted signal summed over channels: float32/64 ``[frames, channels]``.

    One 1-D float64 FFT per channel (numpy's fastest path: a float32 or 2-D one costs 2-3x more here) and
    sums by ``einsum``: ``np.dot`` goes to OpenBLAS, whose threads cost ~3 ms a bar on a busy core."""
    pcm = np.asarray(pcm).reshape(len(pcm), -1)
    n = len(pcm)
    if n == 0:
        return 0.0
    size = fast_length(n)  # zero-padded to a length the FFT does fast (a bar's frames can be near-prime)
    weights = _bin_weights(size, sample_rate)
    total = 0.0
    for channel in pcm.T:
        spectrum = np.fft.rfft(channel.astype(np.float64), n=size)
        parts = spectrum.view(np.float64).reshape(-1, 2)  # real and imaginary parts per bin
        total += float(np.einsum("i,ij,ij->", weights, parts, parts))
    return total / (size * n)


@lru_cache(maxsize=64)
def fast_length(n: int) -> int:
    """The smallest ``2^a 3^b 5^c >= n``: an FFT of such a length is several times faster than of a
    length with a large prime factor (measured: 105,841 frames 65 ms, 105,840 11 ms, 108,000 3 ms)."""
    best = 1 << max(0, (n - 1).bit_length())
    five = 1
    while five < best:
        three = five
        while three < best:
            size = three
            while size < n:
                size *= 2
            best = min(best, size)
            three *= 3
        five *= 5
    return best


@lru_cache(maxsize=8)
def _bin_weights(n: int, sample_rate: int) -> np.ndarray:
    """Parseval weights of an ``n``-frame rfft's bins times the K-weighting's power response (bar lengths
    repeat, so this is computed once per length)."""
    weight = np.full(n // 2 + 1, 2.0)  # every bin but DC (and Nyquist, n even) counted twice
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    return weight * k_weighting_power_response(np.fft.rfftfreq(n, 1.0 / sample_rate), sample_rate)


def lufs(power: float) -> float:
    """BS.1770 loudness of a K-weighted power (``-inf`` for silence)."""
    return -0.691 + 10.0 * np.log10(power) if power > 0 else -np.inf


class Leveler:
    """Brings bars to one loudness and under a peak ceiling; one instance per stream of bars (stateful)."""

    def __init__(self, sample_rate: int, settings: LevelSettings = DEFAULT_LEVEL):
        self.sample_rate = sample_rate
        self.settings = settings
        self.reset()

    def reset(self) -> None:
        """Forget the music so far (a new piece, or a renderer reset)."""
        self.estimate: float | None = None  # running K-weighted power
        self.gain_db: float | None = None  # leveling gain at the end of the last bar
        self._limit = 1.0  # limiter gain at the end of the last bar

    def process(self, pcm: np.ndarray) -> np.ndarray:
        """One bar float32 ``[frames, channels]`` -> the same, leveled and limited (a new array)."""
        s = self.settings
        frames = len(pcm)
        if frames == 0:
            return pcm.copy()
        power = k_weighted_power(pcm, self.sample_rate)
        if lufs(power) > ABSOLUTE_GATE_LUFS:
            if self.estimate is None:
                self.estimate = power
            else:
                alpha = 1.0 - np.exp(-frames / self.sample_rate / s.time_constant_s)
                self.estimate += alpha * (power - self.estimate)
        target = self.gain_db or 0.0
        if self.estimate is not None:
            target = float(np.clip(s.target_lufs - lufs(self.estimate), s.min_gain_db, s.max_gain_db))
        start = target if self.gain_db is None else self.gain_db
        self.gain_db = target
        if abs(target - start) < 1.0:  # most bars: a ramp of the factor, within 0.03 dB of one in dB
            ramp = np.linspace(10.0 ** (start / 20.0), 10.0 ** (target / 20.0), frames, dtype=np.float32)
        else:  # the ramp in dB, in float32 (4x cheaper): 10^(dB/20) within 2e-7 of float64's
            db = np.linspace(start, target, frames, dtype=np.float32)
            ramp = np.exp(db * np.float32(np.log(10.0) / 20.0))
        out = pcm * ramp[:, None]
        limit = self._limiter_gain(out)
        if limit is not None:
            out *= limit[:, None]
        return out

    def _limiter_gain(self, pcm: np.ndarray) -> np.ndarray | None:
        """Per-frame gain ``[frames]`` that keeps ``|pcm|`` under the ceiling (see the module docstring);
        None when the bar is under it and the limiter has recovered (most bars)."""
        s = self.settings
        ceiling = 10.0 ** (s.ceiling_db / 20.0)
        if self._limit >= 1.0 and max(float(pcm.max()), -float(pcm.min())) <= ceiling:
            return None
        n_blocks = -(-len(pcm) // s.block)
        peaks = np.zeros(n_blocks * s.block, np.float32)
        peaks[: len(pcm)] = np.abs(pcm).max(axis=1)
        need = np.minimum(1.0, ceiling / np.maximum(peaks.reshape(n_blocks, s.block).max(axis=1), 1e-12))
        edges = np.minimum(np.concatenate([need[:1], need]), np.concatenate([need, need[-1:]]))
        edges[0] = min(edges[0], self._limit)  # the gain carried over the bar line, if it is lower
        step = s.block / self.sample_rate / s.release_s  # gain recovered per block
        k = np.arange(len(edges))
        edges = np.minimum(edges, k * step + np.minimum.accumulate(edges - k * step))  # release, vectorized
        edges = np.minimum(edges, 1.0)
        self._limit = float(edges[-1])
        positions = np.arange(len(pcm)) / s.block
        return np.interp(positions, k, edges).astype(np.float32)


def _k_biquads(sample_rate: int) -> list[tuple[tuple[float, ...], tuple[float, ...]]]:
    """BS.1770's two K-weighting stages as ``(b, a)`` biquads for ``sample_rate`` (RBJ cookbook forms with
    the standard's parameters: shelf +4 dB, Q 1/sqrt(2), 1500 Hz; high pass Q 0.5, 38 Hz)."""
    stages: list[tuple[tuple[float, ...], tuple[float, ...]]] = []
    gain_db, q, fc = 4.0, 1 / np.sqrt(2.0), 1500.0
    a_ = 10 ** (gain_db / 40.0)
    w0 = 2 * np.pi * fc / sample_rate
    alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
    stages.append(
        (
            (
                a_ * ((a_ + 1) + (a_ - 1) * cos + 2 * np.sqrt(a_) * alpha),
                -2 * a_ * ((a_ - 1) + (a_ + 1) * cos),
                a_ * ((a_ + 1) + (a_ - 1) * cos - 2 * np.sqrt(a_) * alpha),
            ),
            (
                (a_ + 1) - (a_ - 1) * cos + 2 * np.sqrt(a_) * alpha,
                2 * ((a_ - 1) - (a_ + 1) * cos),
                (a_ + 1) - (a_ - 1) * cos - 2 * np.sqrt(a_) * alpha,
            ),
        )
    )
    q, fc = 0.5, 38.0
    w0 = 2 * np.pi * fc / sample_rate
    alpha, cos = np.sin(w0) / (2 * q), np.cos(w0)
    stages.append((((1 + cos) / 2, -(1 + cos), (1 + cos) / 2), (1 + alpha, -2 * cos, 1 - alpha)))
    return stages
