"""musicbox.quantize: workstation side (checkpoint -> validated INT8 ONNX bundle in shards)."""
