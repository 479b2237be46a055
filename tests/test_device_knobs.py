"""device.knobs and device.buttons: mapping with detents, smoothing, hysteresis, rate limit, holds."""

from __future__ import annotations

import random

import pytest

from musicbox.device.buttons import Button, ButtonTracker
from musicbox.device.knobs import KnobFilter, KnobMap, KnobProcessor
from musicbox.runtime.controls import Controls

STYLES = 4


def test_style_detents_and_blend_zones():
    m = KnobMap(STYLES, detent_width=0.5)
    # each style owns a quarter of the travel; its middle half snaps to it
    assert [m.style(r) for r in (0.0, 0.125, 0.35, 0.625, 1.0)] == [0.0, 0.0, 1.0, 2.0, 3.0]
    assert m.style(0.25) == pytest.approx(0.5)  # the border between two sectors is a 50/50 blend
    blends = [m.style(r / 100) for r in range(101)]
    assert blends == sorted(blends)  # monotonic
    assert KnobMap(1).style(0.7) == 0.0


def test_tempo_and_mood_ranges():
    m = KnobMap(STYLES, min_bpm=60, max_bpm=160)
    assert (m.tempo(0), m.tempo(0.5), m.tempo(1)) == (60.0, 110.0, 160.0)
    assert (m.mood(0), m.mood(0.5), m.mood(1)) == (-1.0, 0.0, 1.0)


@pytest.mark.parametrize("controls", [Controls(0, 100, 0), Controls(2.5, 72, -0.4), Controls(3, 160, 1)])
def test_raw_of_inverts_controls(controls):
    m = KnobMap(STYLES)
    assert m.controls(m.raw_of(controls)) == controls


def test_jitter_within_hysteresis_is_ignored():
    f = KnobFilter(smoothing=0.05, hysteresis=0.01)
    rng = random.Random(0)
    first = f.update(0.5, 0.0)
    positions = {f.update(0.5 + rng.uniform(-0.004, 0.004), t * 0.02) for t in range(1, 500)}
    assert positions == {first}


def test_ends_are_reachable_and_a_real_turn_moves():
    f = KnobFilter(smoothing=0.0, hysteresis=0.02)
    f.update(0.5, 0)
    assert f.update(0.51, 1) == 0.5
    assert f.update(0.6, 2) == pytest.approx(0.6)
    assert f.update(0.995, 3) == 1.0 and f.update(0.003, 4) == 0.0


def test_smoothing_time_constant():
    f = KnobFilter(smoothing=0.1, hysteresis=0.0)
    f.update(0.0, 0.0)
    assert f.update(1.0, 0.1) == pytest.approx(1 - 2.718281828**-1, rel=1e-6)


def test_rate_limit_and_the_last_position_arrives():
    p = KnobProcessor(KnobMap(STYLES), smoothing=0.0, hysteresis=0.0, rate_limit=0.25)
    emitted = [(0.0, p.feed({"style": 0, "tempo": 0, "mood": 0.5}, 0.0))]
    for i in range(1, 101):  # a tempo knob turned steadily for 1 s, polled every 10 ms
        emitted.append((i / 100, p.feed({"style": 0, "tempo": i / 100, "mood": 0.5}, i / 100)))
    for i in range(101, 150):  # then left alone
        emitted.append((i / 100, p.feed({"style": 0, "tempo": 1.0, "mood": 0.5}, i / 100)))
    changes = [(t, c) for t, c in emitted if c is not None]
    times = [t for t, _ in changes]
    assert all(b - a >= 0.25 - 1e-9 for a, b in zip(times, times[1:], strict=False))
    assert len(changes) <= 1 + 1.5 / 0.25
    assert changes[-1][1].tempo_bpm == 160.0


def test_button_tracker_press_hold_and_bounce():
    t = ButtonTracker(hold_seconds=1.0, bounce_seconds=0.05)
    assert t.feed("next", True, 0.0) is None  # not yet stable
    assert t.feed("next", False, 0.01) is None and t.feed("next", True, 0.02) is None  # bounce
    assert t.feed("next", True, 0.08) is Button.NEXT
    assert t.feed("save", True, 0.0) is None and t.feed("save", True, 0.06) is Button.SAVE
    # short press of play: play/pause on release
    assert t.feed("play_pause", True, 1.0) is None and t.feed("play_pause", True, 1.06) is None
    assert t.feed("play_pause", False, 1.3) is None and t.feed("play_pause", False, 1.4) is Button.PLAY_PAUSE
    # long press: shutdown while held, nothing on release
    events = [t.feed("play_pause", True, 2.0 + i * 0.1) for i in range(15)]
    assert events.count(Button.SHUTDOWN) == 1 and Button.PLAY_PAUSE not in events
    assert [t.feed("play_pause", False, 4.0 + i * 0.1) for i in range(3)] == [None, None, None]


def test_next_meter_steps_through_the_nearest_styles_meters():
    m = KnobMap(3, meter="", style_meters=(("4/4",), ("4/4", "3/4"), ("6/8", "4/4", "3/4")))
    assert m.controls({"style": 0.5, "tempo": 0.5, "mood": 0.5}).meter == ""
    assert m.meters == ("4/4", "3/4", "6/8") and m.meters_of(1.6) == ("6/8", "4/4", "3/4")
    assert [m.next_meter(Controls(style=2.0, meter=x)) for x in ("", "4/4", "3/4", "6/8")] == [
        "4/4",
        "3/4",
        "",
        "4/4",  # its own, asked for by name: the first after it
    ]
    assert m.next_meter(Controls(style=0.0, meter="")) == ""  # one meter: nothing to step to
    assert m.next_meter(Controls(style=1.0, meter="6/8")) == ""  # another style's meter: back to its own


def test_a_meter_set_elsewhere_is_kept_by_the_knobs():
    p = KnobProcessor(KnobMap(STYLES), rate_limit=0.0)
    p.feed({"style": 0.5, "tempo": 0.5, "mood": 0.5}, 0.0)
    p.follow(Controls(style=1.0, meter="3/4"))
    assert p.feed({"style": 0.9, "tempo": 0.5, "mood": 0.5}, 1.0).meter == "3/4"


def test_a_key_set_on_the_page_stays_while_a_potentiometer_turns():
    p = KnobProcessor(KnobMap(STYLES), smoothing=0.0, hysteresis=0.0, rate_limit=0.0)
    assert p.feed({"style": 0.0, "tempo": 0.5, "mood": 0.5}, 0.0).key == ""
    p.follow(Controls(key="D"))  # the web remote or OSC chose D
    turned = p.feed({"style": 0.0, "tempo": 0.9, "mood": 0.5}, 1.0)
    assert turned is not None and turned.key == "D" and turned.tempo_bpm > 140
