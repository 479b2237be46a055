"""musicbox.remote: the box's web remote — a paired page with the knobs, buttons, presets, recordings
and the music as a stream (``[remote]`` in musicbox.toml; off by default).

``server.RemoteServer`` serves it from the box's main process; ``auth`` pairs devices; ``library``
keeps presets and lists recordings; ``stream`` encodes the music as MP3; ``static/index.html`` is the
page (no build step).
"""
