"""The box's audio output as the machine offers it, and what to tell a maker when there is none.

:func:`output_devices` lists PortAudio's output devices (``musicbox doctor`` reads it);
:func:`no_audio_device_hint` is the one text saying what is wrong and what to do when the box finds no
sound card: the terminal view shows it for as long as the box waits (``musicbox play`` puts it in the
view's message line), and the player's journal line carries the same advice. The box keeps trying
meanwhile and plays as soon as a device appears (runtime/box/player.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from musicbox.errors import AudioDeviceError

ALSA_CHECK = "`aplay -l` lists the sound cards (an I2S DAC HAT: firmware_config/alsa/asound.conf)"
JACK_CHECK = "`jack_lsp` answers when a JACK server runs"


@dataclass(frozen=True)
class OutputDevices:
    """PortAudio's output devices: ``names`` (in PortAudio's order) and ``all_count`` (every device,
    inputs too: ``[audio] device`` may be an index into that list)."""

    names: tuple[str, ...]
    all_count: int

    def matches(self, wanted: str) -> bool:
        """Whether ``[audio] device`` = ``wanted`` names one of them ("" = the default: any)."""
        if not wanted:
            return bool(self.names)
        if wanted.isdigit():
            return int(wanted) < self.all_count
        return any(wanted in name for name in self.names)


def output_devices() -> OutputDevices:
    """The output devices PortAudio sees now; AudioDeviceError when PortAudio cannot be used."""
    try:
        import sounddevice
    except (ImportError, OSError) as exc:
        raise AudioDeviceError(
            f"sounddevice/PortAudio unusable ({exc}): `sudo apt install libportaudio2` and "
            "`pip install 'musicbox[device]'`"
        ) from None
    try:
        devices = list(sounddevice.query_devices())
    except sounddevice.PortAudioError as exc:
        raise AudioDeviceError(f"PortAudio error: {exc}; check {ALSA_CHECK}") from None
    names = tuple(d["name"] for d in devices if d["max_output_channels"] > 0)
    return OutputDevices(names, len(devices))


def no_audio_device_hint(remote: bool = False) -> str:
    """One line for the terminal view (and the journal): no sound card, the box keeps trying, and what to
    do. ``remote``: the web remote is on, so the music already plays to its page."""
    listen = (
        "meanwhile it plays to the web remote's page"
        if remote
        else "listen in a browser with `musicbox play --remote`, or write a file with "
        "`musicbox render --seconds 60 --out music.wav`"
    )
    return (
        f"no sound card: the box keeps trying and plays as soon as one appears; check {ALSA_CHECK}, "
        f"{JACK_CHECK}; {listen}"
    )
