"""musicbox: an offline AI music box (style, tempo and mood knobs; endless symbolic music; SoundFont audio)."""

__version__ = "0.1.0"
