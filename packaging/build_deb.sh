#!/usr/bin/env bash
# Build the Debian package of the box: packaging/build_deb.sh ARCH [PYTHON]
#   -> dist/musicbox_<version>-<revision>_<arch>.deb
#   ARCH    amd64 | arm64 (the target board; wheels are fetched for it, nothing is run for it)
#   PYTHON  the target's python3 minor version: 3.11 (Debian / Raspberry Pi OS bookworm, the default);
#           3.10 (Ubuntu 22.04 / JetPack 6: onnxruntime 1.23.2, its last cp310 release)
# MUSICBOX_DEB_REVISION sets the Debian revision (default 1). Built with dpkg-deb, which every Debian
# system has (see packaging/README.md for why not nfpm or debhelper).
set -euo pipefail
cd "$(dirname "$0")/.."
arch="${1:?usage: packaging/build_deb.sh amd64|arm64 [3.11|3.10]}"
pyver="${2:-3.11}"
case "$arch" in
  amd64) machine=x86_64 ;;
  arm64) machine=aarch64 ;;
  *) echo "build_deb: unknown architecture $arch (amd64 or arm64)" >&2; exit 2 ;;
esac
version="$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' musicbox/__init__.py)"
debver="$version-${MUSICBOX_DEB_REVISION:-1}"
prefix=/opt/musicbox
work="build/deb/$arch-py$pyver"
root="$work/root"
site="$root$prefix/lib/python$pyver/site-packages"
pip=(python3 -m pip)
[ -x .venv/bin/python ] && pip=(.venv/bin/python -m pip)
rm -rf "$root"
mkdir -p "$work/wheels" "$site" "$root$prefix/bin" "$root/usr/bin" dist

# 1. The musicbox wheel and the pure-Python wheels of sdist-only dependencies, built on this host.
extras=device
[ "$arch" = arm64 ] && extras=device,jetson  # Jetson.GPIO (pure Python); lgpio/spidev come from the OS
rm -f "$work/wheels"/musicbox-*.whl
"${pip[@]}" wheel -q -w "$work/wheels" ".[$extras]" >"$work/wheel.log" 2>&1 || { cat "$work/wheel.log" >&2; exit 1; }
wheel="$(ls "$work"/wheels/musicbox-"$version"-*.whl)"

# 2. The device install for the target: binary wheels for its CPU and Python, nothing compiled here.
#    packaging/wheelhouse.py picks them with every environment marker evaluated for the target (pip would
#    evaluate them for the Python it runs on), then pip unpacks exactly those.
rm -rf "$work/target-wheels"
"${pip[0]}" packaging/wheelhouse.py --python "$pyver" --machine "$machine" --out "$work/target-wheels" \
  --find-links "$work/wheels" "musicbox[$extras]" >"$work/install.log" 2>&1 \
  || { grep -v "^WARNING: Location" "$work/install.log" >&2; exit 1; }
platforms=()
for p in manylinux2014 manylinux_2_17 manylinux_2_27 manylinux_2_28 linux; do platforms+=(--platform "${p}_$machine"); done
"${pip[@]}" install -q --no-compile --no-deps --target "$site" --only-binary=:all: "${platforms[@]}" \
  --python-version "$pyver" --implementation cp "$work"/target-wheels/*.whl \
  >>"$work/install.log" 2>&1 || { grep -v "^WARNING: Location" "$work/install.log" >&2; exit 1; }
[ -f "$site/musicbox/cli.py" ] || { echo "build_deb: the wheels did not install" >&2; exit 1; }
rm -rf "$site/bin"

# 3. A virtual environment around them, for the target's /usr/bin/pythonX.Y. System site packages are
#    visible (after the venv's own) for the board libraries that need the board's C libraries:
#    python3-lgpio (Pi 5) and python3-spidev (Jetson ADC) from the board's OS.
ln -s "/usr/bin/python$pyver" "$root$prefix/bin/python3"
ln -s python3 "$root$prefix/bin/python"
printf 'home = /usr/bin\ninclude-system-site-packages = true\nversion = %s\n' "$pyver" >"$root$prefix/pyvenv.cfg"
# The __main__ guard matters: the box's worker processes (multiprocessing forkserver) import this file.
printf '#!%s/bin/python3\nimport sys\n\nfrom musicbox.cli import main\n\nif __name__ == "__main__":\n    sys.exit(main())\n' \
  "$prefix" >"$root$prefix/bin/musicbox"
chmod 755 "$root$prefix/bin/musicbox"
ln -s "$prefix/bin/musicbox" "$root/usr/bin/musicbox"
# No bytecode in the package (Debian policy: postinst compiles it for the Python there, prerm removes it);
# shared objects are loaded, not run: 0644 (some wheels ship them 0755).
find "$root$prefix" -name __pycache__ -prune -exec rm -rf {} +
find "$root$prefix/lib" -type f -name '*.so*' -exec chmod 0644 {} +

# 4. Defaults, board maps, the shipped bundle, the unit (rendered by install-service's own code), /etc.
share="$root$prefix/share/musicbox"
mkdir -p "$share/assets" "$root/lib/systemd/system" "$root/etc/musicbox" "$root/usr/share/doc/musicbox"
cp -r firmware_config "$share/firmware_config"
cp -r assets/bundle "$share/assets/bundle"
find "$share" -name __pycache__ -prune -exec rm -rf {} +
PYTHONPATH=. python3 -c '
import sys
from pathlib import Path
from musicbox.commands.install_service import render_unit
sys.stdout.write(render_unit(sys.argv[1], "musicbox", [], Path("/var/lib/musicbox/recordings"), Path(sys.argv[2])))
' "$prefix/bin/musicbox" /etc/musicbox/musicbox.toml >"$root/lib/systemd/system/musicbox.service"
cp packaging/musicbox.toml "$root/etc/musicbox/musicbox.toml"
# The service user may power off (hold on play), nothing else: polkit JS rules (polkit >= 0.106) and
# the .pkla form for polkit 0.105 (Ubuntu 22.04).
install -D -m 644 packaging/polkit/50-musicbox.rules "$root/usr/share/polkit-1/rules.d/50-musicbox.rules"
install -D -m 644 packaging/polkit/musicbox.pkla "$root/var/lib/polkit-1/localauthority/10-vendor.d/musicbox.pkla"
cp README.md firmware_config/WIRING.md packaging/debian/copyright "$root/usr/share/doc/musicbox/"
install -D -m 644 packaging/debian/lintian-overrides "$root/usr/share/lintian/overrides/musicbox"
sed -e "s/@VERSION@/$debver/" -e "s/@DATE@/$(date -R -d "@$(git log -1 --format=%ct 2>/dev/null || date +%s)")/" \
  packaging/debian/changelog | gzip -9n >"$root/usr/share/doc/musicbox/changelog.Debian.gz"

# 5. Control files, then the archive (owned by root whoever builds it).
mkdir -p "$root/DEBIAN"
cp packaging/debian/conffiles packaging/debian/postinst packaging/debian/prerm packaging/debian/postrm "$root/DEBIAN/"
recommends=", avahi-daemon"
[ "$arch" = arm64 ] && recommends="$recommends, python3-lgpio, python3-spidev"
size="$(du -sk --exclude=DEBIAN "$root" | cut -f1)"
sed -e "s/@VERSION@/$debver/" -e "s/@ARCH@/$arch/" -e "s/@SIZE@/$size/" -e "s/@PYVER@/$pyver/" \
  -e "s/@RECOMMENDS@/$recommends/" packaging/debian/control >"$root/DEBIAN/control"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) \
  >"$root/DEBIAN/md5sums"
chmod -R u+rwX,go+rX,go-w "$root"
deb="dist/musicbox_${debver}_$arch.deb"
dpkg-deb --root-owner-group -Zxz -b "$root" "$deb" >/dev/null
echo "$deb ($(du -h "$deb" | cut -f1), installed $((size / 1024)) MiB)"
