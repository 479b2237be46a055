"""The dependency wall: the device side never imports the workstation stack (docs/design.md)."""

import subprocess
import sys

BLOCKED = ("torch", "onnx", "optimum", "transformers", "music21", "onnxscript")

PROBE = """
import sys
for name in {blocked!r}:
    sys.modules[name] = None  # any import of it now raises ImportError
import importlib, pkgutil
import musicbox.runtime, musicbox.device
for pkg in (musicbox.runtime, musicbox.device):
    for mod in pkgutil.iter_modules(pkg.__path__):
        importlib.import_module(pkg.__name__ + "." + mod.name)
from musicbox.cli import main
try:
    main(["--help"])
except SystemExit as exc:
    assert exc.code == 0, exc.code
for sub in ("play", "render", "doctor", "bench"):
    try:
        main([sub, "--help"])
    except SystemExit as exc:
        assert exc.code == 0, (sub, exc.code)
print("WALL-OK")
"""


def test_runtime_and_device_import_without_workstation_stack():
    code = PROBE.format(blocked=BLOCKED)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "WALL-OK" in out.stdout


def test_the_box_main_process_leaves_onnxruntime_to_the_worker():
    """The supervisor, player, recorder and device side run in the main process: onnxruntime (11 MB of
    mapped code, ~30 ms to import) belongs to the worker only. Doctor checks the bundle's hashes without it."""
    code = (
        "import sys\nimport musicbox.commands.play, musicbox.device, musicbox.device.board\n"
        "import musicbox.config, musicbox.boards, musicbox.runtime.digest, musicbox.device.doctor\n"
        "import musicbox.runtime.box.supervisor, musicbox.runtime.box.player, musicbox.runtime.box.recorder\n"
        "print('onnxruntime' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr[-2000:]


def test_blocking_really_blocks():
    """The probe's mechanism works: a module set to None cannot be imported."""
    code = (
        "import sys; sys.modules['torch'] = None\ntry:\n import torch\nexcept ImportError: print('BLOCKED')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "BLOCKED" in out.stdout
