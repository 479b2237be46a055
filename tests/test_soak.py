"""The 2-minute paced soak (CI, `-m soak`): worker SIGKILLed every 20 s, no underrun, flat memory."""

from __future__ import annotations

import shutil

import pytest

from musicbox.runtime.box.soak import soak
from tests.helpers.synthetic_bundle import build_bundle


@pytest.mark.soak
@pytest.mark.skipif(shutil.which("jackd") is None, reason="jackd (Debian jackd2) is not installed")
def test_two_minute_soak_with_kills(tmp_path):
    figures = soak(build_bundle(tmp_path / "bundle"), minutes=2.0, kill_every_s=20.0)
    print(figures)
    assert figures["underruns"] == 0 and figures["silence_s"] == 0.0
    assert figures["detect_s_p95"] < 1.0 and figures["ready_s_p50"] <= figures["first_bar_s_p50"]
    assert 0 < figures["box_cpu_s_per_music_minute"] < 30
    assert figures["worker_restarts"] >= 4
    assert figures["rss_drift_mb"] <= 5.0
    assert figures["ok"]
