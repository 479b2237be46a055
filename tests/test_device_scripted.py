"""The scripted backend: timed knob changes (and buttons) from a JSON file."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import replace

import pytest

from musicbox.config import load_config
from musicbox.device import open_backend
from musicbox.device.buttons import Button
from musicbox.device.scripted import ScriptedBackend, load_script, parse_script
from musicbox.errors import ConfigError
from musicbox.runtime.controls import ControlRanges, Controls
from tests.helpers.callbacks import Recorder

STYLES = ("chorale", "folk", "renaissance")
RANGES = ControlRanges(STYLES, 60.0, 160.0, ("4/4", "3/4"))


def test_script_plays_against_the_clock(tmp_path):
    script = tmp_path / "demo.json"
    script.write_text(json.dumps([
        {"at": 0.1, "mood": 0.5, "button": "next"},
        {"at": 0, "style": "folk", "tempo": 90},
        {"at": 0.2, "style": 1.5},
    ]))  # fmt: skip
    config_file = tmp_path / "box.toml"
    config_file.write_text(f'[knobs]\nbackend = "scripted"\nscript = "{script.name}"\n')
    controls, buttons, done = [], [], threading.Event()
    backend = open_backend(load_config(config_file), STYLES)
    assert isinstance(backend, ScriptedBackend)
    t0 = time.monotonic()
    backend.start(lambda c: (controls.append((time.monotonic() - t0, c)), len(controls) == 3 and done.set()),
                  buttons.append)  # fmt: skip
    assert done.wait(3.0)
    backend.close()
    assert [c for _, c in controls][0].style == 1.0 and controls[0][1].tempo_bpm == 90.0
    assert controls[1][1].mood == 0.5 and controls[1][0] >= 0.1
    assert controls[2][1].style == 1.5 and controls[2][0] >= 0.2
    assert buttons == [Button.NEXT]


@pytest.mark.parametrize(
    "data, where",
    [
        ({"at": 0}, "expected a JSON list"),
        ([{"at": 0}], "[0]: needs"),
        ([{"at": None, "mood": 0}], "[0]: needs"),  # null is no time (it used to fail sorting the events)
        ([{"at": 1, "tempo": 900}], "[0].tempo: got 900; allowed: a number from 60 to 160"),
        ([{"at": 1, "tempo": 0}], "[0].tempo: got 0"),
        ([{"at": 1, "tempo": float("nan")}], "[0].tempo: got nan"),
        ([{"at": 1, "mood": -50}], "[0].mood: got -50; allowed: a number from -1 to 1"),
        ([{"at": 1, "style": 2.5}], "[0].style: got 2.5"),
        (
            [{"at": 1, "style": "jazz"}],
            "[0].style: got 'jazz'; allowed: a number from 0 to 2 or one of chorale",
        ),
        ([{"at": 1, "mood": 0}, {"at": 2, "knob": 1}], "[1]: unknown key 'knob'"),
        ([{"at": -1, "mood": 0}], "[0].at"),
        ([{"at": 1, "button": "eject"}], "[0].button: got 'eject'"),
        ([{"at": 1, "meter": "5/4"}], """[0].meter: got '5/4'; allowed: "" (the style's own), 4/4, 3/4"""),
        ([{"at": 1, "meter": 3}], "[0].meter: got 3"),
        (["x"], "[0]: expected an object"),
    ],
)
def test_wrong_scripts_name_the_entry(data, where):
    with pytest.raises(ConfigError) as info:
        parse_script(data, RANGES, source="demo.json")
    assert str(info.value).startswith("demo.json") and where in str(info.value)


def test_unreadable_script(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ConfigError, match="bad.json: cannot read"):
        load_script(bad, RANGES)


def test_scripted_backend_without_a_script_says_what_to_set():
    """load_config refuses it; a BoxConfig built in code gets the same advice, not a TypeError."""
    config = load_config()
    config = replace(config, knobs=replace(config.knobs, backend="scripted", script=None))
    with pytest.raises(ConfigError, match=r"needs \[knobs\] script"):
        open_backend(config, STYLES)


def test_after_a_change_from_the_web_remote_an_event_changes_only_its_own_knobs():
    from musicbox.device.knobs import KnobMap
    from musicbox.device.scripted import ScriptedBackend, parse_script
    from musicbox.runtime.controls import ControlRanges, Controls

    names = ("chorale", "folk")
    script = parse_script([{"at": 0.3, "mood": -0.5}], ControlRanges(names, 60.0, 160.0))
    backend = ScriptedBackend(script, KnobMap(2), names)
    rec = Recorder()
    backend.start(rec.on_controls, rec.on_button)
    backend.follow(Controls(style=1.0, tempo_bpm=150.0, mood=0.2))
    try:
        rec.wait_for(lambda r: r.controls and r.controls[-1].mood == -0.5)  # the event at 0.3 s
    finally:
        backend.close()
    assert rec.controls[-1] == Controls(style=1.0, tempo_bpm=150.0, mood=-0.5)


def test_the_meter_key_sets_the_meter_and_leaves_it_until_changed():
    events = parse_script([{"at": 0, "meter": "3/4"}, {"at": 1, "mood": 0.5}, {"at": 2, "meter": ""}], RANGES)
    controls = [Controls()]
    for event in events:
        controls.append(event.apply(controls[-1]))
    assert [c.meter for c in controls] == ["", "3/4", "3/4", ""]


def test_the_boxs_script_may_ask_for_the_meters_its_styles_play(tmp_path):
    script = tmp_path / "demo.json"
    script.write_text(json.dumps([{"at": 0, "meter": "6/8"}]))
    config_file = tmp_path / "box.toml"
    config_file.write_text(f'[knobs]\nbackend = "scripted"\nscript = "{script.name}"\n')
    with pytest.raises(ConfigError, match="meter: got '6/8'"):
        open_backend(load_config(config_file), STYLES, (("4/4",), ("4/4", "3/4"), ("4/4",)))
    backend = open_backend(load_config(config_file), STYLES, (("4/4",), ("4/4", "6/8"), ("4/4",)))
    seen = []
    backend.start(seen.append, lambda b: None)
    backend.close()
    assert seen[0].meter == "6/8"
