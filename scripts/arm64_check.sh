#!/usr/bin/env bash
# ARM64 check of a bundle under qemu-user: the runtime (Bundle + Generator, fixed seed) on emulated
# Cortex-A53 (Pi Zero 2 W / Pi 3), Cortex-A72 (Pi 4), Cortex-A76 (Pi 5) and Cortex-A57 (Jetson Nano),
# compared with this x86 host.
#
#   scripts/arm64_check.sh BUNDLE_DIR [OUT_DIR]
#   MUSICBOX_ARM64_DEB=dist/musicbox_<v>_arm64.deb scripts/arm64_check.sh ...   runs the package's contents
#
# Installs what it needs and caches it under ${MUSICBOX_ARM64_CACHE:-~/.cache/musicbox/arm64}:
#   - host tools qemu-user-static and debootstrap (apt-get, only if missing);
#   - sysroot/: an arm64 Debian bookworm (python3 3.11) made with `debootstrap --foreign` and the
#     downloaded .debs unpacked with `dpkg -x` (no chroot, no second stage: nothing runs as arm64 to build);
#   - sysroot/opt/musicbox/site: aarch64 wheels of numpy, onnxruntime and msgspec (the host's versions).
# The comparison itself (and the traps: fake /proc/cpuinfo, never QEMU_CPU=max) is musicbox.quantize.arm64.
set -euo pipefail

BUNDLE=${1:?usage: scripts/arm64_check.sh BUNDLE_DIR [OUT_DIR]}
OUT=${2:-$(mktemp -d -t musicbox-arm64.XXXXXX)}
CACHE=${MUSICBOX_ARM64_CACHE:-$HOME/.cache/musicbox/arm64}
SYSROOT=$CACHE/sysroot
MIRROR=${MUSICBOX_DEBIAN_MIRROR:-http://deb.debian.org/debian}
HERE=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-$HERE/.venv/bin/python}
[ -x "$PY" ] || PY=python3

log() { printf '[arm64_check %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }

need_tool() {  # need_tool COMMAND DEBIAN_PACKAGE
    command -v "$1" >/dev/null 2>&1 && return
    log "installing $2 (needs root and apt)"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq && $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$2"
}

build_sysroot() {
    [ -f "$SYSROOT/.musicbox-ok" ] && return
    log "building the arm64 bookworm sysroot in $SYSROOT (first run only)"
    rm -rf "$SYSROOT"
    mkdir -p "$CACHE"
    debootstrap --foreign --arch=arm64 --variant=minbase --include=python3 bookworm "$SYSROOT" "$MIRROR" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -20 "$CACHE/debootstrap.log" >&2; exit 1; }
    for deb in "$SYSROOT"/var/cache/apt/archives/*.deb; do
        dpkg -x "$deb" "$SYSROOT"
    done
    [ -x "$SYSROOT/usr/bin/python3" ] || { log "no python3 in the sysroot"; exit 1; }
    touch "$SYSROOT/.musicbox-ok"
}

install_wheels() {
    local site=$SYSROOT/opt/musicbox/site
    local reqs
    reqs=$("$PY" -c 'import msgspec, numpy, onnxruntime; print(f"numpy=={numpy.__version__} onnxruntime=={onnxruntime.__version__} msgspec=={msgspec.__version__}")')
    [ "$(cat "$site/.musicbox-reqs" 2>/dev/null)" = "$reqs" ] && return
    log "installing aarch64 wheels: $reqs"
    rm -rf "$site"
    # shellcheck disable=SC2086
    "$PY" -m pip install --quiet --disable-pip-version-check --target "$site" --python-version 3.11 \
        --implementation cp --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64 \
        --platform manylinux_2_17_aarch64 --only-binary=:all: $reqs
    echo "$reqs" >"$site/.musicbox-reqs"
}

need_tool qemu-aarch64-static qemu-user-static
need_tool debootstrap debootstrap
start=$(date +%s)
build_sysroot
package=()
if [ -n "${MUSICBOX_ARM64_DEB:-}" ]; then package=(--package "$MUSICBOX_ARM64_DEB"); else install_wheels; fi
log "sysroot ready in $(($(date +%s) - start)) s"
exec "$PY" -m musicbox.quantize.arm64 check "$BUNDLE" --sysroot "$SYSROOT" --out "$OUT" "${package[@]}"
