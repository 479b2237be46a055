"""musicbox.runtime.box: the live box (``musicbox play``) built on the engine in ``musicbox.runtime``.

The supervisor owns a PortAudio player fed by a shared-memory bar ring that a worker process fills with
the engine's bars; the recorder keeps what was played for SAVE; ``assemble`` builds it all from a
``BoxConfig``. Imports run one way: the box imports the engine, never the reverse.
"""
