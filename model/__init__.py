"""musicbox.model: workstation side (corpus -> dataset, PyTorch model, training, evaluation)."""
