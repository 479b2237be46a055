"""The shared PCM ring: publish order, bar selection across generations, room, cross-process use."""

from __future__ import annotations

import multiprocessing as mp

import numpy as np
import pytest

from musicbox.runtime.box.ring import BarRing, RingError


@pytest.fixture
def ring():
    r = BarRing.create(n_slots=4, slot_frames=100)
    yield r
    r.close()


def _bar(value: float, frames: int = 100) -> np.ndarray:
    return np.full((frames, 2), value, np.float32)


def test_bars_play_in_order_and_slots_are_reused_only_after_playing(ring):
    assert ring.pick_next() == -1
    for b in range(4):
        assert ring.has_room()
        ring.write_bar(b, 0, _bar(b))
    assert not ring.has_room()  # nothing played yet: all 4 slots hold unplayed bars
    e = ring.pick_next()
    assert ring.start_entry(e) == 100 and ring.playing() == (0, 0, 0)
    assert not ring.has_room()  # entry 4 would overwrite the playing entry 0's slot
    ring.start_entry(ring.pick_next())
    assert ring.has_room() and ring.bars_ahead() == 2
    ring.write_bar(4, 0, _bar(4))
    assert float(ring.slot_pcm(4)[0, 0]) == 4.0 and ring.bars_played == 2


def test_newer_generation_wins_and_stale_bar_is_the_fallback(ring):
    ring.write_bar(0, 0, _bar(0))
    ring.write_bar(1, 0, _bar(1))
    ring.write_bar(2, 0, _bar(2))
    ring.start_entry(ring.pick_next())  # bar 0 playing
    # a knob turns: bars from 1 are regenerated under generation 1, but only bar 1 is ready so far
    ring.write_bar(1, 1, _bar(11))
    e = ring.pick_next()
    assert ring.entry_info(e) == (1, 1, 100)
    ring.start_entry(e)
    e = ring.pick_next()  # regenerated bar 2 not there yet: the stale one plays rather than silence
    assert ring.entry_info(e) == (2, 0, 100)


def test_skipped_bar_is_not_waited_for(ring):
    ring.write_bar(0, 0, _bar(0))
    ring.write_bar(2, 0, _bar(2))
    ring.start_entry(ring.pick_next())
    assert ring.entry_info(ring.pick_next())[0] == 2


def test_a_bar_longer_than_a_slot_is_refused(ring):
    with pytest.raises(RingError, match="does not fit"):
        ring.write_bar(0, 0, _bar(0, frames=101))


def _produce(spec, n):
    r = BarRing.attach(spec)
    for b in range(n):
        r.write_bar(b, 7, _bar(b))
        r.beat(12345)
    r.close()


def test_another_process_writes_and_beats():
    r = BarRing.create(n_slots=8, slot_frames=100)
    try:
        p = mp.get_context("spawn").Process(target=_produce, args=(r.spec, 5))
        p.start()
        p.join(30)
        assert p.exitcode == 0
        assert r.written == 5 and r.last_bar() == 4
        beats, stamp, pid = r.heartbeat()
        assert beats == 5 and stamp > 0 and pid == 12345
        assert float(r.slot_pcm(3)[50, 1]) == 3.0
    finally:
        r.close()
