"""musicbox.runtime: the on-device engine (numpy + onnxruntime + the synth binding; never torch)."""
