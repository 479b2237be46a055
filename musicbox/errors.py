"""The one exception root of musicbox and its specific subclasses.

Every subclass also inherits the builtin it refines, so callers may catch either. Messages say what was
wrong, where, and what to do. ``exit_code`` is what ``musicbox`` exits with when the error reaches the CLI
(78 = EX_CONFIG, which the systemd unit lists in ``RestartPreventExitStatus=`` so a bad configuration or a
broken bundle does not crash-loop the service; 69 = EX_UNAVAILABLE for the audio device; 75 = EX_TEMPFAIL
when another box already plays).
"""


class MusicBoxError(Exception):
    """Root of every error musicbox raises on purpose."""

    exit_code = 1


class ConfigError(MusicBoxError, ValueError):
    """A configuration file or value is wrong (unknown key, wrong type, pin used twice, ...)."""

    exit_code = 78


class ManifestError(MusicBoxError, ValueError):
    """A bundle's manifest.json is malformed, has unknown fields, or disagrees with its files."""

    exit_code = 78


class BundleError(MusicBoxError, FileNotFoundError):
    """A bundle file is missing, truncated or fails its sha256 check."""

    exit_code = 78


class CheckpointError(MusicBoxError, ValueError):
    """A training checkpoint is missing, incomplete or inconsistent with its config."""


class DatasetError(MusicBoxError, ValueError):
    """The phrase dataset is missing or stale; rebuild it with ``musicbox data build``."""


class SoundFontError(MusicBoxError, FileNotFoundError):
    """No usable SoundFont was found, or the configured one cannot be loaded."""

    exit_code = 78


class AudioDeviceError(MusicBoxError, OSError):
    """The audio output device cannot be opened or vanished."""

    exit_code = 69


class HardwareError(MusicBoxError, RuntimeError):
    """A knob/button backend cannot be used on this board (missing library, unknown pin, no SPI)."""

    exit_code = 78


class AlreadyRunningError(MusicBoxError, RuntimeError):
    """Another `musicbox play` holds the box (its audio device and recordings folder)."""

    exit_code = 75
