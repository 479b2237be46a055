#!/usr/bin/env bash
# Set up musicbox on a fresh Debian-like machine (Raspberry Pi OS, Jetson's Ubuntu, Debian x86).
#   scripts/setup.sh          the box: system audio/synth packages, .venv with musicbox[device]
#   scripts/setup.sh dev      + the workstation and test stack (torch 2.13.0 CPU, onnx, music21, JACK, qemu,
#                               headless chromium + chromium-driver for the web remote's browser tests)
# System packages are installed when run as root or with passwordless sudo; otherwise it says which.
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-device}"
SECONDS=0
say() { echo "setup [${SECONDS}s]: $*"; }

apt_packages=(python3-venv libportaudio2 libfluidsynth3 fluid-soundfont-gm musescore-general-soundfont-small)
if [ "$mode" = dev ]; then
  apt_packages+=(jackd2 qemu-user-static debootstrap systemd python3-seccomp chromium chromium-driver)
fi
# On a board, the GPIO/SPI libraries that wrap its C libraries come from its OS (no wheels on PyPI):
# python3-lgpio (a Pi 5 needs it; Raspberry Pi OS has it) and python3-spidev; the venv then sees them.
board_packages=()
if [ "$(uname -m)" = aarch64 ]; then
  for p in python3-lgpio python3-spidev; do
    apt-cache show "$p" >/dev/null 2>&1 && board_packages+=("$p")
  done
fi
apt_packages+=("${board_packages[@]}")

missing=()
for p in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=(); elif sudo -n true 2>/dev/null; then sudo=(sudo -n); else sudo=(none); fi
  if [ "${sudo[0]:-}" = none ]; then
    echo "setup: please install these system packages first: sudo apt-get install ${missing[*]}" >&2
  else
    say "apt-get update (the package lists; up to a minute)"
    "${sudo[@]}" apt-get update -qq
    say "apt-get install ${missing[*]} (a minute or two)"
    DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null
  fi
else
  say "system packages already installed: ${apt_packages[*]}"
fi

if [ -x .venv/bin/python ]; then
  say "using the virtualenv .venv"
else
  say "creating the virtualenv .venv"
  python3 -m venv .venv
fi
say "upgrading pip"
if [ ${#board_packages[@]} -gt 0 ]; then
  sed -i 's/^include-system-site-packages = false/include-system-site-packages = true/' .venv/pyvenv.cfg
fi
.venv/bin/python -m pip install -q --upgrade pip
if [ "$mode" = dev ]; then
  extras='device,train,quantize,dev'
  say "pip install -e '.[$extras]' (torch, onnx, music21: several minutes on a first run)"
else
  extras='device'
  say "pip install -e '.[$extras]' (onnxruntime, FluidSynth and PortAudio bindings: a minute or two)"
fi
# pip's own chatter (setuptools' note on editable installs, index notices) goes to a log, shown on failure.
log=.venv/pip-install.log
if ! .venv/bin/python -m pip install -q -e ".[$extras]" >"$log" 2>&1; then
  cat "$log" >&2
  say "pip install failed (its whole output: $log)"
  exit 1
fi
say "ready ($mode). Run .venv/bin/musicbox --help"
