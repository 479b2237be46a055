"""Presets on the box: the PRESET button (a GPIO button, the terminal's key, OSC) steps through the
presets the web remote's page saved, in the remote's state folder, and recalls their knobs and seed."""

from __future__ import annotations

import threading

from musicbox.commands.play import _press
from musicbox.config import load_config
from musicbox.device.terminal import KEYMAP
from musicbox.remote.library import Preset, Presets
from musicbox.runtime.box.supervisor import Recall
from musicbox.runtime.controls import Button


class _Box:
    def __init__(self):
        self.posted = []

    def post(self, event) -> None:
        self.posted.append(event)


def test_the_preset_button_steps_through_the_page_s_presets_and_recalls_knobs_and_seed(tmp_path):
    config_path = tmp_path / "box.toml"
    config_path.write_text(f'[remote]\nstate_dir = "{tmp_path / "state"}"\n')
    box = _Box()
    press = _press(box, threading.Event(), load_config(config_path))
    press(Button.PRESET)
    assert box.posted == []  # nothing saved yet: nothing recalled (the log says how to save one)
    presets = Presets(tmp_path / "state" / "presets.json")
    presets.save(Preset("calm", 0.0, 70.0, -0.5, 11))
    presets.save(Preset("reel", 4.0, 140.0, 0.8, 22, 0.3))
    for _ in range(3):
        press(Button.PRESET)
    assert [(r.controls.tempo_bpm, r.seed) for r in box.posted] == [(70.0, 11), (140.0, 22), (70.0, 11)]
    assert all(isinstance(r, Recall) for r in box.posted) and box.posted[1].controls.variation == 0.3
    press(Button.NEXT)
    assert box.posted[-1] is Button.NEXT  # the other buttons go to the box as they are


def test_the_terminal_s_p_key_and_a_gpio_button_are_the_preset_button():
    from musicbox.device.buttons import PRESS_EVENTS

    assert KEYMAP["p"] is Button.PRESET
    assert PRESS_EVENTS["preset"] is Button.PRESET
    assert load_config(None).buttons.preset == -1  # not wired unless the config says so
