"""One source of defaults: the configuration's schema (``firmware_config/musicbox.toml`` read by
``musicbox/config.py``). The structs the box builds from a configuration keep defaults of their own (for
tests and code that builds them by hand); each such default must be the configuration's. Every test maps
the default configuration the way the box does and compares with the struct's defaults, so a default
changed on one side only fails here, naming the field."""

from __future__ import annotations

import dataclasses
import inspect

from musicbox.config import KnobsConfig, default_config, shipped_bundle
from musicbox.device import knob_map
from musicbox.device.knobs import KnobMap
from musicbox.runtime.box.assemble import player_settings, worker_settings
from musicbox.runtime.box.player import PlayerSettings
from musicbox.runtime.box.supervisor import Supervisor
from musicbox.runtime.box.worker import WorkerSettings
from musicbox.runtime.controls import VARIATION, VARIATION_RANGE, Controls
from musicbox.runtime.manifest import load_manifest


def test_player_settings_default_to_the_configuration_s_audio():
    assert player_settings(default_config()) == PlayerSettings()


def test_worker_settings_default_to_the_configuration_s_bundle_and_audio(tmp_path):
    config = default_config()
    assert worker_settings(config, tmp_path) == WorkerSettings(tmp_path, config.synth)


def test_the_knob_map_defaults_to_the_configuration_s_knobs():
    meters = (("4/4",), ("4/4", "3/4"))
    assert knob_map(default_config(), ("a", "b"), meters) == KnobMap(2, style_meters=meters)


def test_the_supervisor_s_tempo_range_defaults_to_the_configuration_s_knobs():
    knobs = default_config().knobs
    parameters = inspect.signature(Supervisor).parameters
    assert (parameters["min_bpm"].default, parameters["max_bpm"].default) == (knobs.min_bpm, knobs.max_bpm)


def test_the_variation_default_and_range_are_the_configuration_s():
    assert VARIATION == default_config().knobs.variation == Controls().variation
    meta = {f.name: f.metadata for f in dataclasses.fields(KnobsConfig)}["variation"]
    assert (meta["lo"], meta["hi"]) == VARIATION_RANGE


def test_the_controls_start_at_the_shipped_bundle_s_default_tempo():
    assert Controls().tempo_bpm == load_manifest(shipped_bundle()).controls.tempo.default_bpm
