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

STYLES = ("chorale", "folk", "renaissance")


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
        ([{"at": 1, "tempo": 900}], "[0].tempo: got 900"),
        (
            [{"at": 1, "style": "jazz"}],
            "[0].style: got 'jazz'; allowed: a number from 0 to 2 or one of chorale",
        ),
        ([{"at": 1, "mood": 0}, {"at": 2, "knob": 1}], "[1]: unknown key 'knob'"),
        ([{"at": -1, "mood": 0}], "[0].at"),
        ([{"at": 1, "button": "eject"}], "[0].button: got 'eject'"),
        (["x"], "[0]: expected an object"),
    ],
)
def test_wrong_scripts_name_the_entry(data, where):
    with pytest.raises(ConfigError) as info:
        parse_script(data, STYLES, source="demo.json")
    assert str(info.value).startswith("demo.json") and where in str(info.value)


def test_unreadable_script(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{")
    with pytest.raises(ConfigError, match="bad.json: cannot read"):
        load_script(bad, STYLES)


def test_scripted_backend_without_a_script_says_what_to_set():
    """load_config refuses it; a BoxConfig built in code gets the same advice, not a TypeError."""
    config = load_config()
    config = replace(config, knobs=replace(config.knobs, backend="scripted", script=None))
    with pytest.raises(ConfigError, match=r"needs \[knobs\] script"):
        open_backend(config, STYLES)
