"""musicbox.device: hardware edges (knobs, buttons, audio sinks, board detection; never torch)."""
