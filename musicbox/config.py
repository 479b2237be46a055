"""The box's configuration: ``musicbox.toml`` -> frozen dataclasses, one per subsystem.

The defaults live in one documented file, ``firmware_config/musicbox.toml``; the box's own file (see
:func:`find_config_file`) only holds what it changes. Everything is checked when loading: an unknown key,
a wrong type, a value out of range, a pin used twice or a pin the board does not have is a
:class:`~musicbox.errors.ConfigError` (exit status 78) naming the file, the key and what is allowed.
Pins are BCM GPIO numbers, checked against the board's pin map (:mod:`musicbox.boards`).
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from musicbox.boards import BOARD_NAMES, MEMORY_NAMES, BoardConfig, load_board
from musicbox.firmware import fail, firmware_dir, read_toml, show
from musicbox.precision import PRECISION_CHOICES

BACKENDS = ("auto", "gpio", "jetson", "terminal", "scripted", "none")
KNOB_INPUTS = ("adc", "encoder")
HOLD_ACTIONS = ("quit", "poweroff")
SLEEP_ACTIONS = ("pause", "poweroff")
UNWIRED = -1  # a button pin of -1 means "this button is not fitted"
BUTTONS = ("play_pause", "next", "save", "keep", "new", "volume_up", "volume_down")
"""The push buttons of ``[buttons]`` (device.buttons.PRESS_EVENTS says what each does)."""
SEARCH_PATHS = ("/etc/musicbox/musicbox.toml", "~/.config/musicbox/musicbox.toml")
BUNDLE_STORE = Path("/var/lib/musicbox/bundles")


def _opt(kind: str, what: str = "", lo: float | None = None, hi: float | None = None, choices=()):
    """A config field: ``kind`` (int, float, str, bool, path, pin, pair, choice, table), unit/meaning
    ``what`` for messages, inclusive range ``lo``..``hi``, allowed ``choices``."""
    return field(metadata={"kind": kind, "what": what, "lo": lo, "hi": hi, "choices": tuple(choices)})


def _table(cls: type):
    """A config field that is a sub-table parsed into dataclass ``cls``."""
    return field(metadata={"kind": "table", "cls": cls})


@dataclass(frozen=True)
class AudioConfig:
    """Audio output through PortAudio (sounddevice).

    device: output device, a name substring or an index written as a string; "" = the system default.
    sample_rate: Hz. blocksize: frames per callback (0 = PortAudio chooses). latency: seconds of output
    latency asked from PortAudio (a Raspberry Pi needs about 0.1 s). buffer_bars: bars generated ahead.
    buffer_seconds: seconds generated ahead at least (more bars at fast tempi); a third of it is how long
    a frozen worker may go unnoticed.
    volume_db: the listener's volume at start, dB under the leveled loudness (0 = full). volume_step_db:
    dB per press of a volume key or button.
    """

    device: str = _opt("str", "a PortAudio device name or index")
    sample_rate: int = _opt("int", "Hz", 8000, 192000)
    blocksize: int = _opt("int", "frames", 0, 65536)
    latency: float = _opt("float", "seconds", 0.0, 2.0)
    buffer_bars: int = _opt("int", "bars", 1, 64)
    buffer_seconds: float = _opt("float", "seconds", 3.0, 120.0)
    volume_db: float = _opt("float", "dB", -60.0, 0.0)
    volume_step_db: float = _opt("float", "dB", 0.5, 20.0)


@dataclass(frozen=True)
class BundleConfig:
    """The model bundle.

    path: bundle folder, None = the bundle shipped in assets/. precision: auto | int8 | int8_dynamic |
    fp32. memory_budget_mb: MiB of ONNX sessions kept loaded, 0 = no limit. threads: onnxruntime threads.
    """

    path: Path | None = _opt("path", 'a bundle folder, or "" for the shipped one')
    precision: str = _opt("choice", choices=PRECISION_CHOICES)
    memory_budget_mb: int = _opt("int", "MiB, 0 = no limit", 0, 1 << 20)
    threads: int = _opt("int", "threads", 1, 64)


@dataclass(frozen=True)
class SynthConfig:
    """The SoundFont synthesizer.

    soundfont: .sf2/.sf3 file, None = search the usual places. gain: linear output gain, 0..4.
    reverb: wet level, 0 (dry) .. 1. expression: how much the box performs what it writes, 0 (as
    written) .. 1 (phrase arches, ritardandi, fermatas, breaths: ``runtime/performance.py``); a struct
    built in code without it gets 1.0, the configuration's default (tests/test_performance.py ties them).
    """

    soundfont: Path | None = _opt("path", 'a .sf2/.sf3 file, or "" to search')
    gain: float = _opt("float", "linear gain", 0.0, 4.0)
    reverb: float = _opt("float", "wet level", 0.0, 1.0)
    expression: float = field(
        default=1.0, metadata=_opt("float", "0 (as written) .. 1 (performed)", 0.0, 1.0).metadata
    )


@dataclass(frozen=True)
class AdcConfig:
    """An MCP3008 on SPI ``/dev/spidev<spi_port>.<spi_device>``; style/tempo/mood are its channels 0..7."""

    spi_port: int = _opt("int", "SPI bus", 0, 1)
    spi_device: int = _opt("int", "chip select", 0, 1)
    style: int = _opt("int", "MCP3008 channel", 0, 7)
    tempo: int = _opt("int", "MCP3008 channel", 0, 7)
    mood: int = _opt("int", "MCP3008 channel", 0, 7)


@dataclass(frozen=True)
class EncoderConfig:
    """Rotary encoders: ``(A, B)`` BCM pins per knob; ``steps`` detents span the knob's whole travel."""

    style: tuple[int, int] = _opt("pair", "[A, B] BCM pins")
    tempo: tuple[int, int] = _opt("pair", "[A, B] BCM pins")
    mood: tuple[int, int] = _opt("pair", "[A, B] BCM pins")
    steps: int = _opt("int", "detents per travel", 2, 1000)


@dataclass(frozen=True)
class KnobsConfig:
    """The three knobs and how their readings become controls.

    backend: auto | gpio | jetson | terminal | scripted | none. input: adc | encoder.
    smoothing: seconds (time constant of the exponential smoothing). hysteresis: fraction of the travel a
    reading must move to count. rate_limit: seconds between two control changes. poll_interval: seconds
    between readings. min_bpm/max_bpm: tempo knob ends, BPM. detent_width: fraction of each style's
    sector that snaps to the style. variation: 0..1, how far returning sections depart from their first
    playing (0 literal, 1 ever new). meter: the meter at start, "" for each style's own or one the
    bundle's model plays ("4/4", "3/4", "6/8"; checked against the bundle when the box starts).
    script: the scripted backend's JSON file (None = none).
    """

    backend: str = _opt("choice", choices=BACKENDS)
    input: str = _opt("choice", choices=KNOB_INPUTS)
    smoothing: float = _opt("float", "seconds", 0.0, 5.0)
    hysteresis: float = _opt("float", "fraction of the travel", 0.0, 0.2)
    rate_limit: float = _opt("float", "seconds", 0.0, 10.0)
    poll_interval: float = _opt("float", "seconds", 0.001, 1.0)
    min_bpm: float = _opt("float", "BPM", 20.0, 300.0)
    max_bpm: float = _opt("float", "BPM", 20.0, 300.0)
    detent_width: float = _opt("float", "fraction of a style's sector", 0.0, 1.0)
    variation: float = _opt("float", "0 (literal returns) .. 1 (ever new)", 0.0, 1.0)
    meter: str = _opt("str", 'a meter such as "3/4", or "" for the style\'s own')
    script: Path | None = _opt("path", 'a JSON file, or ""')
    adc: AdcConfig = _table(AdcConfig)
    encoder: EncoderConfig = _table(EncoderConfig)


@dataclass(frozen=True)
class ButtonsConfig:
    """Push buttons between a BCM pin and ground (-1 = not fitted).

    play_pause: press = play/pause, hold = shutdown. next: new piece. save: save the recent music.
    volume_up/volume_down: the listener's volume, one ``[audio] volume_step_db`` per press.
    keep: the phrase playing becomes the theme that returns. new: a new tune from the next bar line.
    sleep: the sleep timer (``[sleep]``), or off when one runs. preset: the next preset saved on the web
    remote's page (they are kept on the box, in the remote's state folder). hold_seconds: seconds of holding play_pause that mean shutdown. bounce_seconds: contact bounce
    ignored, seconds. pull_up: use the internal pull-up (button to ground). hold_action: what the hold
    does once the recording is finalized: quit the program, or also power the board off (logind).
    """

    play_pause: int = _opt("pin", "a BCM pin or -1")
    next: int = _opt("pin", "a BCM pin or -1")
    save: int = _opt("pin", "a BCM pin or -1")
    volume_up: int = _opt("pin", "a BCM pin or -1")
    volume_down: int = _opt("pin", "a BCM pin or -1")
    keep: int = _opt("pin", "a BCM pin or -1")
    new: int = _opt("pin", "a BCM pin or -1")
    sleep: int = _opt("pin", "a BCM pin or -1")
    preset: int = _opt("pin", "a BCM pin or -1")
    hold_seconds: float = _opt("float", "seconds", 0.2, 30.0)
    bounce_seconds: float = _opt("float", "seconds", 0.0, 0.5)
    pull_up: bool = _opt("bool")
    hold_action: str = _opt("choice", choices=HOLD_ACTIONS)


@dataclass(frozen=True)
class RecordingConfig:
    """Saving what played: ``folder`` receives the files; ``minutes_kept`` minutes of recent music."""

    folder: Path = _opt("folder", "a folder")
    minutes_kept: int = _opt("int", "minutes", 1, 600)


@dataclass(frozen=True)
class RemoteConfig:
    """The web remote (``musicbox.remote``): a paired page on the LAN with the knobs, buttons, presets,
    recordings and the music as a stream. Off unless ``enabled``.

    bind: address to listen on ("0.0.0.0" = every interface). port: TCP port. state_dir: folder for
    presets, the pairing code and paired sessions, None = $STATE_DIRECTORY (systemd) or
    ~/.local/state/musicbox. stream: let the page listen to the music (16-bit PCM over HTTP).
    pair_attempts: wrong pairing codes allowed per minute from one client before its pairing is
    refused for the rest of that minute. hosts: more names the page may be opened by, separated by
    spaces (besides localhost, the host name, ``<hostname>.local`` and the box's addresses).
    """

    enabled: bool = _opt("bool")
    bind: str = _opt("str", "an IP address to listen on")
    port: int = _opt("int", "TCP port", 1, 65535)
    state_dir: Path | None = _opt("path", 'a folder, or "" for the state folder of the service')
    stream: bool = _opt("bool")
    pair_attempts: int = _opt("int", "wrong codes per minute", 1, 100)
    hosts: str = _opt("str", "host names separated by spaces")


@dataclass(frozen=True)
class MidiConfig:
    """MIDI out, clock out and in (``runtime/box/midiout.py``, docs/rig.md). Off unless ``out`` is set.

    out: "" = no MIDI; "jack" = a JACK MIDI port ``musicbox:midi_out``; "jack:PORT" = that port connected
    to the JACK port PORT (``jack_lsp`` lists them; a2jmidid bridges ALSA/USB MIDI into JACK).
    melody_channel, harmony_channel, bass_channel, drum_channel: MIDI channels 1..16 of the parts (the
    drums on 10, General MIDI percussion). local_sound: false = the box's own audio is silent (it drives
    an external synth alone). clock_out: MIDI clock (24 ppqn), start/stop/continue and song position out.
    clock_in: follow a MIDI clock on ``musicbox:clock_in`` (its tempo sets the box's; start/stop play and
    pause). offset_ms: added to the sound card's output latency when timing MIDI to the audio. link:
    follow an Ableton Link session's tempo and start/stop (``runtime/box/link.py``; the ``link`` extra,
    GPL-3.0).
    """

    out: str = _opt("str", '"", "jack" or "jack:<port>"')
    melody_channel: int = _opt("int", "MIDI channel", 1, 16)
    harmony_channel: int = _opt("int", "MIDI channel", 1, 16)
    bass_channel: int = _opt("int", "MIDI channel", 1, 16)
    drum_channel: int = _opt("int", "MIDI channel", 1, 16)
    local_sound: bool = _opt("bool")
    clock_out: bool = _opt("bool")
    clock_in: bool = _opt("bool")
    offset_ms: float = _opt("float", "milliseconds", -500.0, 500.0)
    link: bool = _opt("bool")


@dataclass(frozen=True)
class OscConfig:
    """OSC for installations and show control (``remote/osc.py``, docs/rig.md): every knob and button as
    an address, the bar and beat sent out. Off unless ``enabled``; like the web remote it answers only
    the LAN (private, link-local and loopback senders).

    bind: address to listen on. port: UDP port. send_to: "host:port" that gets ``/musicbox/bar`` and
    ``/musicbox/beat`` ("" = only the clients that sent ``/musicbox/subscribe``).
    """

    enabled: bool = _opt("bool")
    bind: str = _opt("str", "an IP address to listen on")
    port: int = _opt("int", "UDP port", 1, 65535)
    send_to: str = _opt("str", '"host:port" or ""')


@dataclass(frozen=True)
class SensorConfig:
    """One input sensor (gpiozero) moving one knob (``device/sensors.py``): ``knob`` "" = not fitted.
    pin: its BCM pin (a distance sensor: the echo pin); trigger: a distance sensor's trigger pin.
    idle / active: the knob's value with no motion, far or dark (sensor 0) / with motion, near or bright
    (sensor 1), in between in proportion."""

    knob: str = _opt("choice", choices=("", "style", "tempo", "mood", "variation"))
    pin: int = _opt("pin", "a BCM pin or -1")
    trigger: int = _opt("pin", "a BCM pin or -1")
    idle: float = _opt("float", "a knob value")
    active: float = _opt("float", "a knob value")


@dataclass(frozen=True)
class SensorsConfig:
    """Input sensors for exhibitions: a PIR ``motion`` sensor, an HC-SR04 ``distance`` sensor, an LDR
    ``light`` sensor (each a :class:`SensorConfig`)."""

    motion: SensorConfig = _table(SensorConfig)
    distance: SensorConfig = _table(SensorConfig)
    light: SensorConfig = _table(SensorConfig)


@dataclass(frozen=True)
class SleepConfig:
    """The sleep timer (``runtime/sleep.py``): ``minutes`` a timer runs when set by the sleep key, button
    or the web remote (``musicbox play --sleep MINUTES`` sets its own); over its last
    ``wind_down_minutes`` the tempo slides to ``calm_bpm`` and the mood to ``calm_mood`` (never up) and
    the volume sinks by ``softer_db``; it ends on a cadence, fades out, and then pauses or powers off."""

    minutes: float = _opt("float", "minutes", 1.0, 600.0)
    wind_down_minutes: float = _opt("float", "minutes", 0.0, 60.0)
    calm_bpm: float = _opt("float", "BPM", 20.0, 300.0)
    calm_mood: float = _opt("float", "mood, -1 .. 1", -1.0, 1.0)
    softer_db: float = _opt("float", "dB", 0.0, 40.0)
    then: str = _opt("choice", choices=SLEEP_ACTIONS)


@dataclass(frozen=True)
class _BoardChoice:
    """The ``[board]`` section as written: ``name`` is auto or one of the board files."""

    name: str = _opt("choice", choices=BOARD_NAMES)
    led_pin: int = _opt("pin", "a BCM pin or -1 (no status LED)")
    memory: str = _opt("choice", choices=MEMORY_NAMES)


@dataclass(frozen=True)
class BoxConfig:
    """Everything the box reads from ``musicbox.toml``; ``source`` is the file read on top of the
    defaults (None when only the defaults apply)."""

    audio: AudioConfig
    bundle: BundleConfig
    synth: SynthConfig
    knobs: KnobsConfig
    buttons: ButtonsConfig
    recording: RecordingConfig
    remote: RemoteConfig
    midi: MidiConfig
    osc: OscConfig
    sensors: SensorsConfig
    sleep: SleepConfig
    board: BoardConfig
    source: Path | None = None
    led_pin: int = UNWIRED
    """``[board] led_pin``: the status LED's BCM pin (device/led.py), -1 = none."""
    memory: str = "auto"
    """``[board] memory``: the board's memory class (``musicbox.boards.MEMORY_CLASSES``), auto or none."""


SECTIONS: dict[str, type] = {
    "audio": AudioConfig,
    "bundle": BundleConfig,
    "synth": SynthConfig,
    "knobs": KnobsConfig,
    "buttons": ButtonsConfig,
    "recording": RecordingConfig,
    "remote": RemoteConfig,
    "midi": MidiConfig,
    "osc": OscConfig,
    "sensors": SensorsConfig,
    "sleep": SleepConfig,
    "board": _BoardChoice,
}


def shipped_bundle() -> Path:
    """The bundle shipped with musicbox (``assets/bundle`` next to ``firmware_config``), used when
    ``[bundle] path`` is empty."""
    return firmware_dir().parent / "assets" / "bundle"


def bundle_store() -> Path:
    """Where ``musicbox bundle install`` keeps bundles: $MUSICBOX_BUNDLE_STORE, else
    /var/lib/musicbox/bundles. ``current`` in it links to the bundle that plays, ``previous`` to the one
    before (for ``musicbox bundle rollback``)."""
    return Path(os.environ.get("MUSICBOX_BUNDLE_STORE") or BUNDLE_STORE)


def installed_bundle() -> Path | None:
    """The folder ``current`` points to in :func:`bundle_store` (resolved, so a box that opened it keeps
    it when an install switches the link), or None when nothing was installed."""
    current = bundle_store() / "current"
    return current.resolve() if (current / "manifest.json").is_file() else None


def resolve_bundle(path: Path | None) -> Path:
    """``path``, else the installed bundle (:func:`installed_bundle`), else the shipped one; a BundleError
    (exit 78) when there is none."""
    if path is not None:
        return Path(path)
    installed = installed_bundle()
    if installed is not None:
        return installed
    shipped = shipped_bundle()
    if not (shipped / "manifest.json").is_file():
        from musicbox.errors import BundleError

        raise BundleError(
            f"no bundle shipped yet ({shipped} is missing); pass --bundle DIR or set [bundle] path to a "
            "folder written by `musicbox quantize`"
        )
    return shipped


def find_config_file() -> Path | None:
    """The box's own file: $MUSICBOX_CONFIG, else the first existing of :data:`SEARCH_PATHS`."""
    env = os.environ.get("MUSICBOX_CONFIG")
    if env:
        return Path(env)
    for candidate in SEARCH_PATHS:
        path = Path(candidate).expanduser()
        if path.is_file():
            return path
    return None


def default_config() -> BoxConfig:
    """The documented defaults alone (``firmware_config/musicbox.toml``), without the box's own file."""
    return load_config(firmware_dir() / "musicbox.toml")


def load_config(path: str | os.PathLike | None = None) -> BoxConfig:
    """Load the defaults and ``path`` (or :func:`find_config_file`) on top; raise ConfigError if wrong."""
    defaults_file = firmware_dir() / "musicbox.toml"
    user_file = Path(path) if path is not None else find_config_file()
    merged = _parse_document(read_toml(defaults_file), defaults_file, partial=False)
    origin: dict[str, Path] = {}
    if user_file is not None:
        user = _parse_document(read_toml(user_file), user_file, partial=True)
        _merge(merged, user, origin, user_file, "")
    config = _assemble(merged, user_file)
    _check(config, _Origin(origin, defaults_file))
    return config


def _parse_document(doc: dict, source: Path, *, partial: bool) -> dict:
    """Check a whole TOML document against :data:`SECTIONS`; return its values converted."""
    for key in doc:
        if key not in SECTIONS:
            fail(source, key, f"unknown section [{key}]", "the sections " + ", ".join(SECTIONS))
    out = {}
    for name, cls in SECTIONS.items():
        if name in doc:
            out[name] = _parse_table(cls, doc[name], source, name, partial)
        elif not partial:
            fail(source, name, "missing section", f"a [{name}] table")
    return out


def _parse_table(cls: type, data: Any, source: Path, prefix: str, partial: bool) -> dict:
    if not isinstance(data, dict):
        fail(source, prefix, f"got {show(data)}", "a table of " + ", ".join(f.name for f in fields(cls)))
    known = {f.name: f for f in fields(cls)}
    for key in data:
        if key not in known:
            fail(source, f"{prefix}.{key}", "unknown key", "the keys " + ", ".join(known))
    out = {}
    for name, f in known.items():
        key = f"{prefix}.{name}"
        if name in data:
            out[name] = _convert(data[name], f.metadata, source, key, partial)
        elif not partial:
            fail(source, key, "missing key", _allowed(f.metadata))
    return out


def _convert(value: Any, meta: Mapping, source: Path, key: str, partial: bool) -> Any:
    kind = meta["kind"]
    if kind == "table":
        return _parse_table(meta["cls"], value, source, key, partial)
    ok, converted = _CONVERTERS[kind](value, source)
    if ok and kind in ("int", "float"):
        ok = (meta["lo"] is None or converted >= meta["lo"]) and (
            meta["hi"] is None or converted <= meta["hi"]
        )
    if ok and kind == "choice":
        ok = converted in meta["choices"]
    if not ok:
        fail(source, key, f"got {show(value)}", _allowed(meta))
    return converted


def _as_int(value, _source):
    return isinstance(value, int) and not isinstance(value, bool), value


def _as_float(value, _source):
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return ok, float(value) if ok else value


def _as_str(value, _source):
    return isinstance(value, str), value


def _as_bool(value, _source):
    return isinstance(value, bool), value


def _as_path(value, source: Path):
    if not isinstance(value, str) or "\0" in value:
        return False, value
    if value == "":
        return True, None
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # "~name/..." where this machine has no user "name"
        return False, value
    return True, path if path.is_absolute() else source.resolve().parent / path


def _as_folder(value, source: Path):
    ok, path = _as_path(value, source)
    return ok and path is not None, path


def _as_pin(value, _source):
    ok = isinstance(value, int) and not isinstance(value, bool) and value >= UNWIRED
    return ok, value


def _as_pair(value, _source):
    ok = isinstance(value, list) and len(value) == 2 and all(_as_pin(v, _source)[0] and v >= 0 for v in value)
    return ok, tuple(value) if ok else value


_CONVERTERS = {
    "int": _as_int,
    "float": _as_float,
    "str": _as_str,
    "bool": _as_bool,
    "path": _as_path,
    "folder": _as_folder,
    "pin": _as_pin,
    "pair": _as_pair,
    "choice": _as_str,
}


def _allowed(meta: Mapping) -> str:
    kind, what = meta["kind"], meta["what"]
    if kind == "choice":
        return "one of " + ", ".join(repr(c) for c in meta["choices"])
    noun = {
        "int": "an integer",
        "float": "a number",
        "str": "a string",
        "bool": "true or false",
        "path": "a path string",
        "folder": "a non-empty path string",
        "pin": "a BCM pin number or -1",
        "pair": "a list of two BCM pins",
        "table": "a table",
    }[kind]
    if meta.get("lo") is not None:
        noun += f" from {meta['lo']:g} to {meta['hi']:g}"
    return f"{noun} ({what})" if what else noun


def _merge(base: dict, over: dict, origin: dict, source: Path, prefix: str) -> None:
    """Deep-merge ``over`` into ``base``, recording in ``origin`` the source of each key set."""
    for key, value in over.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict):
            _merge(base[key], value, origin, source, dotted + ".")
        else:
            base[key] = value
            origin[dotted] = source


def _assemble(merged: dict, source: Path | None) -> BoxConfig:
    sections = {name: _build(SECTIONS[name], merged[name]) for name in SECTIONS if name != "board"}
    board = load_board(merged["board"]["name"])
    b = merged["board"]
    return BoxConfig(**sections, board=board, source=source, led_pin=b["led_pin"], memory=b["memory"])


def _build(cls: type, values: dict):
    kwargs = {}
    for f in fields(cls):
        value = values[f.name]
        kwargs[f.name] = _build(f.metadata["cls"], value) if f.metadata["kind"] == "table" else value
    return cls(**kwargs)


@dataclass(frozen=True)
class _Origin:
    """Which file set each dotted key: ``user`` maps the keys the box's own file set."""

    user: Mapping[str, Path]
    defaults: Path

    def __call__(self, key: str) -> Path:
        return self.user.get(key.split("[")[0], self.defaults)

    def blame(self, key: str, other: str) -> tuple[str, str]:
        """Of two clashing keys, the one to report first: the one the user's file set, if any."""
        return (other, key) if self(key) == self.defaults and self(other) != self.defaults else (key, other)


def _check(config: BoxConfig, where: _Origin) -> None:
    """Cross-field checks; ``where(dotted_key)`` is the file that set that key."""
    knobs = config.knobs
    if knobs.min_bpm >= knobs.max_bpm:
        key = where.blame("knobs.max_bpm", "knobs.min_bpm")[0]
        fail(
            where(key),
            key,
            f"min_bpm {knobs.min_bpm:g} >= max_bpm {knobs.max_bpm:g}",
            "min_bpm less than max_bpm",
        )
    if knobs.backend == "scripted" and (knobs.script is None or not knobs.script.is_file()):
        problem = f"no such file {knobs.script}" if knobs.script else "no script given"
        fail(
            where(where.blame("knobs.script", "knobs.backend")[0]),
            "knobs.script",
            problem,
            'an existing JSON script when backend = "scripted"',
        )
    if knobs.input == "adc":
        adc = config.knobs.adc
        _no_clash({f"knobs.adc.{k}": getattr(adc, k) for k in ("style", "tempo", "mood")}, where, "channel")
        _check_spi(config, where)
    pins = used_pins(config)
    _no_clash(pins, where, "pin")
    for key, pin in pins.items():
        _check_pin(config.board, key, pin, where)


def _no_clash(values: Mapping[str, int], where: _Origin, noun: str) -> None:
    seen: dict[int, str] = {}
    for key, value in values.items():
        if value in seen:
            key, other = where.blame(key, seen[value])
            fail(where(key), key, f"{noun} {value} is also {other}", f"a {noun} nothing else uses")
        seen[value] = key


def _check_spi(config: BoxConfig, where: _Origin) -> None:
    adc, board = config.knobs.adc, config.board
    if board.known and (adc.spi_port, adc.spi_device) not in board.spi:
        key = where.blame("knobs.adc.spi_device", "knobs.adc.spi_port")[0]
        fail(
            where(key),
            key,
            f"SPI {adc.spi_port}.{adc.spi_device} is not on {board.label}",
            "[port, chip select] one of " + ", ".join(f"{p}.{d}" for p, d in board.spi),
        )


def _check_pin(board: BoardConfig, key: str, pin: int, where: _Origin) -> None:
    if board.known and pin not in board.pins:
        use = next((name for name, ps in board.reserved.items() if pin in ps), None)
        problem = f"pin {pin} is reserved for {use}" if use else f"{board.label} has no free GPIO {pin}"
        fail(
            where(key), key, f"{problem} on {board.label}", "the BCM pins " + ", ".join(map(str, board.pins))
        )


def used_pins(config: BoxConfig) -> dict[str, int]:
    """Every BCM pin the configuration wires up, keyed by its dotted config key."""
    pins = {f"buttons.{b}": getattr(config.buttons, b) for b in BUTTONS}
    pins["board.led_pin"] = config.led_pin
    pins = {key: pin for key, pin in pins.items() if pin != UNWIRED}
    if config.knobs.input == "encoder":
        for knob in ("style", "tempo", "mood"):
            a, b = getattr(config.knobs.encoder, knob)
            pins[f"knobs.encoder.{knob}[0]"] = a
            pins[f"knobs.encoder.{knob}[1]"] = b
    return pins
