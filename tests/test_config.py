"""musicbox.config: defaults, overrides, and every wrong file is a ConfigError naming file and key."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from musicbox.boards import load_board
from musicbox.config import SECTIONS, BoxConfig, load_config
from musicbox.errors import ConfigError
from musicbox.firmware import firmware_dir


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "box.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_load_and_are_documented():
    config = load_config(firmware_dir() / "musicbox.toml")
    assert isinstance(config, BoxConfig)
    assert config.audio.latency == pytest.approx(0.1)
    assert (config.knobs.min_bpm, config.knobs.max_bpm) == (60.0, 160.0)
    assert config.bundle.precision == "auto" and config.bundle.path is None
    assert config.recording.folder.is_absolute()


def test_no_user_file_gives_the_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("MUSICBOX_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setattr("musicbox.config.SEARCH_PATHS", ())
    assert load_config().source is None


def test_user_file_overrides_and_resolves_relative_paths(tmp_path):
    path = write(
        tmp_path, '[knobs]\nrate_limit = 0.5\n[knobs.adc]\nstyle = 3\n[synth]\nsoundfont = "sf/x.sf2"\n'
    )
    config = load_config(path)
    assert config.knobs.rate_limit == 0.5 and config.knobs.adc.style == 3 and config.knobs.adc.tempo == 1
    assert config.synth.soundfont == tmp_path / "sf" / "x.sf2"
    assert config.source == path


def test_environment_variable_names_the_file(monkeypatch, tmp_path):
    monkeypatch.setenv("MUSICBOX_CONFIG", str(write(tmp_path, "[audio]\nbuffer_bars = 6\n")))
    assert load_config().audio.buffer_bars == 6


@pytest.mark.parametrize(
    "text, key, allowed",
    [
        ("[knobs]\nsmoothnes = 1\n", "knobs.smoothnes", "smoothing"),
        ("[knob]\n", "knob", "sections"),
        ('[audio]\nlatency = "fast"\n', "audio.latency", "a number from 0 to 2"),
        ("[audio]\nsample_rate = 44100.0\n", "audio.sample_rate", "an integer"),
        ('[knobs]\nbackend = "usb"\n', "knobs.backend", "'terminal'"),
        ("[buttons]\npull_up = 1\n", "buttons.pull_up", "true or false"),
        ("[knobs.encoder]\nstyle = [17]\n", "knobs.encoder.style", "two BCM pins"),
        ("audio = 3\n", "audio", "a table"),
        ("[knobs]\nmin_bpm = 150.0\nmax_bpm = 100.0\n", "knobs.max_bpm", "min_bpm less than max_bpm"),
        ("[knobs.adc]\nstyle = 1\n", "knobs.adc.style", "nothing else uses"),
        ('[recording]\nfolder = ""\n', "recording.folder", "non-empty"),
        ('[bundle]\npath = "~no-such-user-here/b"\n', "bundle.path", "a path string"),  # was a RuntimeError
        ('[knobs]\nbackend = "scripted"\n', "knobs.script", "existing JSON"),
    ],
)
def test_wrong_values_name_file_key_and_what_is_allowed(tmp_path, text, key, allowed):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    message = str(info.value)
    assert str(path) in message and key in message and allowed in message
    assert info.value.exit_code == 78


def test_invalid_toml_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[audio\n"))
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.toml")


def test_pin_used_twice(tmp_path):
    path = write(tmp_path, "[buttons]\nnext = 5\n")
    with pytest.raises(ConfigError, match=r"buttons\.next: pin 5 is also buttons\.play_pause"):
        load_config(path)


def test_encoder_pin_clashing_with_a_button(tmp_path):
    path = write(tmp_path, '[knobs]\ninput = "encoder"\n[knobs.encoder]\nmood = [24, 6]\n')
    with pytest.raises(ConfigError, match=r"knobs\.encoder\.mood\[1\]: pin 6 is also buttons\.next"):
        load_config(path)


def test_pin_the_board_does_not_have(tmp_path):
    path = write(tmp_path, '[board]\nname = "pi4"\n[buttons]\nsave = 18\n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert "buttons.save" in str(info.value) and "reserved for i2s" in str(info.value)
    assert "27" in str(info.value)  # the allowed pins are listed
    with pytest.raises(ConfigError, match="has no free GPIO 40"):
        load_config(write(tmp_path, '[board]\nname = "pi5"\n[buttons]\nsave = 40\n'))


def test_unwired_buttons_and_board_files():
    for name in ("pi4", "pi5", "jetson-nano", "jetson-orin"):
        board = load_board(name)
        assert board.name == name and board.known and (0, 0) in board.spi
        assert not set(board.pins) & {p for pins in board.reserved.values() for p in pins}


def test_adc_on_spi_the_board_lacks(tmp_path):
    path = write(tmp_path, '[board]\nname = "pi4"\n[knobs.adc]\nspi_port = 1\n')
    with pytest.raises(ConfigError, match=r"knobs\.adc\.spi_port: SPI 1\.0 is not on Raspberry Pi 4"):
        load_config(path)


def test_reference_box_is_valid_on_every_board(tmp_path):
    for name in ("pi4", "pi5", "jetson-nano", "jetson-orin"):
        for knob_input in ("adc", "encoder"):
            text = f'[board]\nname = "{name}"\n[knobs]\ninput = "{knob_input}"\n[buttons]\nsave = -1\n'
            assert load_config(write(tmp_path, text)).board.name == name


# --- fuzzing: random documents are either valid or a ConfigError naming file and key -------------------

_scalars = st.one_of(
    st.integers(-(2**40), 2**40),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.booleans(),
    st.text(st.characters(min_codepoint=32, max_codepoint=126, exclude_characters='"\\'), max_size=8),
)
_values = st.one_of(
    _scalars, st.lists(_scalars, max_size=3), st.dictionaries(st.sampled_from(["a", "x"]), _scalars)
)
_section_names = st.sampled_from([*SECTIONS, "extra"])
_key_names = st.sampled_from(
    ["backend", "latency", "pins", "style", "adc", "encoder", "name", "zz", "folder"]
)


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        return repr(value) if "e" not in repr(value) and "." in repr(value) else f"{value:.6f}"
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_toml_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def _toml(doc: dict) -> str:
    lines = []
    for section, table in doc.items():
        lines.append(f"[{section}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(_section_names, st.dictionaries(_key_names, _values, max_size=3), max_size=3))
def test_fuzzed_documents_fail_only_with_config_error(tmp_path, doc):
    path = write(tmp_path, _toml(doc))
    try:
        load_config(path)
    except ConfigError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ")
        key = message[len(str(path)) + 2 :].split(":")[0]
        assert key.split(".")[0] in doc, message  # names a key of the document
        assert "allowed" in message, message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(sorted(SECTIONS)), st.data())
def test_fuzzed_wrong_types_of_known_keys(tmp_path, section, data):
    from dataclasses import fields

    cls = SECTIONS[section]
    key = data.draw(st.sampled_from([f.name for f in fields(cls)]))
    value = data.draw(_values)
    path = write(tmp_path, _toml({section: {key: value}}))
    try:
        load_config(path)
    except ConfigError as exc:
        assert str(path) in str(exc) and f"{section}." in str(exc)
