"""The Debian package on a clean Debian bookworm: build, `apt install ./musicbox_*.deb`, the unit verified,
`doctor` and a 20 s `play` as the service user with the /etc config under a JACK dummy server, an upgrade
that keeps a changed conffile, then remove and purge leaving nothing behind.

The clean system is a debootstrap'd bookworm chroot (minbase + systemd for `systemd-analyze`, jackd2 for the
dummy audio server), built once and cached as a tarball in ~/.cache/musicbox; the package's own
dependencies come from Debian's mirror through apt, with the downloaded .debs cached beside it.
Marker ``package`` (run by .ci/run); needs root (chroot, mounts), debootstrap and the network to Debian.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from musicbox import __version__
from tests.helpers.debian import build_deb

CACHE = Path.home() / ".cache" / "musicbox"
BASE = CACHE / "bookworm-minbase.tar"
ARCHIVES = CACHE / "apt-archives"
MIRROR = "http://deb.debian.org/debian"
BASE_PACKAGES = "systemd,jackd2,ca-certificates"
# Paths that change on any apt run and say nothing about what the package left behind.
VOLATILE = ("proc/", "dev/", "run/", "tmp/", "var/lib/dpkg/", "var/lib/apt/", "var/cache/", "var/log/")

pytestmark = [
    pytest.mark.package,
    pytest.mark.skipif(os.geteuid() != 0, reason="the package check chroots and mounts: run it as root"),
    pytest.mark.skipif(shutil.which("debootstrap") is None, reason="debootstrap is not installed"),
]

PLAY = """
export JACK_DEFAULT_SERVER=mbpkg JACK_NO_AUDIO_RESERVATION=1
jackd --no-realtime -n mbpkg -d dummy -r 44100 -p 512 >/tmp/jack.log 2>&1 &
jack_wait -s mbpkg -w -t 10 >/dev/null
musicbox doctor >/tmp/doctor.txt 2>&1; echo "doctor exit $?"
musicbox play --config /etc/musicbox/musicbox.toml --seconds 20 --stats /tmp/stats.json --backend none \
  >/tmp/play.log 2>&1; echo "play exit $?"
kill %1
"""


def _base_tarball() -> Path:
    """The cached clean bookworm (debootstrap takes ~2 minutes, once)."""
    if not BASE.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        work = CACHE / "bookworm-build"
        shutil.rmtree(work, ignore_errors=True)
        cmd = [
            "debootstrap",
            "--variant=minbase",
            f"--include={BASE_PACKAGES}",
            "bookworm",
            str(work),
            MIRROR,
        ]
        subprocess.run(cmd, check=True, capture_output=True)
        subprocess.run(["tar", "-C", str(work), "-cf", f"{BASE}.part", "."], check=True)
        os.replace(f"{BASE}.part", BASE)
        shutil.rmtree(work)
    return BASE


class Chroot:
    """A throwaway copy of the cached bookworm with /proc, /dev, /dev/shm and apt's archive cache mounted."""

    def __init__(self, root: Path):
        self.root = root
        self.mounts: list[Path] = []

    def __enter__(self) -> Chroot:
        self.root.mkdir(parents=True)
        subprocess.run(["tar", "-C", str(self.root), "-xf", str(_base_tarball())], check=True)
        shutil.copy("/etc/resolv.conf", self.root / "etc" / "resolv.conf")
        ARCHIVES.mkdir(parents=True, exist_ok=True)
        self._mount(["-t", "proc", "proc"], "proc")
        self._mount(["--bind", "/dev"], "dev")
        self._mount(["-t", "tmpfs", "tmpfs"], "dev/shm")
        self._mount(["--bind", str(ARCHIVES)], "var/cache/apt/archives")
        return self

    def _mount(self, how: list[str], where: str) -> None:
        target = self.root / where
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *how, str(target)], check=True)
        self.mounts.append(target)

    def __exit__(self, *exc) -> None:
        for target in reversed(self.mounts):
            subprocess.run(["umount", "-l", str(target)], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def sh(self, script: str, user: str = "root", check: bool = True) -> subprocess.CompletedProcess:
        """Run ``script`` with /bin/sh in the chroot (as ``user``); output captured as text."""
        env = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "DEBIAN_FRONTEND": "noninteractive",
            "LANG": "C.UTF-8",
        }
        cmd = ["chroot", str(self.root), "/bin/sh", "-c", script]
        if user != "root":
            cmd = ["chroot", str(self.root), "su", "-s", "/bin/sh", user, "-c", script]
        result = subprocess.run(cmd, capture_output=True, text=True, env=env, stdin=subprocess.DEVNULL)
        if check and result.returncode != 0:
            raise AssertionError(f"`{script}` exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
        return result

    def files(self) -> set[str]:
        """Every path in the chroot outside :data:`VOLATILE`, relative to its root."""
        out = set()
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel = os.path.relpath(dirpath, self.root)
            rel = "" if rel == "." else rel + "/"
            dirnames[:] = [d for d in dirnames if f"{rel}{d}/" not in VOLATILE]
            out.update(rel + name for name in dirnames + filenames)
        return out


def _upgrade_of(deb: Path, revision: int, into: Path) -> Path:
    """The same package with its Debian revision raised: what the next release's upgrade looks like."""
    tree = into / "tree"
    subprocess.run(["dpkg-deb", "-R", str(deb), str(tree)], check=True)
    control = tree / "DEBIAN" / "control"
    control.write_text(
        control.read_text().replace(f"Version: {__version__}-1", f"Version: {__version__}-{revision}")
    )
    out = into / f"musicbox_{__version__}-{revision}_amd64.deb"
    subprocess.run(
        ["dpkg-deb", "--root-owner-group", "-Zgzip", "-z1", "-b", str(tree), str(out)],
        check=True,
        capture_output=True,
    )
    return out


SIZES_DOC = Path(__file__).resolve().parents[1] / "packaging" / "README.md"


def _check_hygiene(deb: Path) -> None:
    """What lintian says (no error: issue 32), no bytecode shipped, and the sizes packaging/README.md
    gives within 5 %."""
    contents = subprocess.run(["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True).stdout
    assert "__pycache__" not in contents and "/usr/share/doc/musicbox/copyright" in contents
    assert "/usr/share/doc/musicbox/changelog.Debian.gz" in contents
    if shutil.which("lintian"):
        lint = subprocess.run(["lintian", "--no-tag-display-limit", str(deb)], capture_output=True, text=True)
        errors = [line for line in lint.stdout.splitlines() if line.startswith("E:")]
        assert not errors, "\n".join(errors[:40])
    installed = (
        int(
            subprocess.run(
                ["dpkg-deb", "-f", str(deb), "Installed-Size"], capture_output=True, text=True, check=True
            ).stdout
        )
        / 1024
    )
    size = deb.stat().st_size / 2**20
    said = re.search(
        r"\*\*Size\*\* \(amd64[^)]*\): ([\d.]+) MiB \.deb, ([\d.]+) MiB installed", SIZES_DOC.read_text()
    )
    assert said, f"{SIZES_DOC}: no '**Size** (amd64 ...): N MiB .deb, M MiB installed' line"
    deb_mib, installed_mib = float(said.group(1)), float(said.group(2))
    assert abs(deb_mib - size) <= 0.05 * size and abs(installed_mib - installed) <= 0.05 * installed, (
        f"{SIZES_DOC} says {said.group(0)!r}; built: {size:.1f} MiB .deb, {installed:.0f} MiB installed"
    )


def test_deb_installs_plays_upgrades_and_purges_on_a_clean_bookworm(tmp_path):
    started = time.monotonic()
    deb = build_deb("amd64")
    _check_hygiene(deb)
    upgrade = _upgrade_of(deb, 2, tmp_path)
    built = time.monotonic()
    with Chroot(tmp_path / "root") as box:
        shutil.copy(deb, box.root / "tmp" / deb.name)
        shutil.copy(upgrade, box.root / "tmp" / upgrade.name)
        box.sh("apt-get update -qq")
        before = box.files()

        # Install: apt resolves Depends (PortAudio, FluidSynth, a GM SoundFont) from Debian's mirror.
        box.sh(f"apt-get install -y -q --no-install-recommends /tmp/{deb.name}")
        assert (
            box.sh("dpkg-query -W -f='${Status} ${Version}' musicbox").stdout
            == f"install ok installed {__version__}-1"
        )
        assert "/etc/musicbox/musicbox.toml" in box.sh("dpkg-query -W -f='${Conffiles}' musicbox").stdout
        user = box.sh("id musicbox").stdout
        assert "audio" in user and "/usr/sbin/nologin" in box.sh("getent passwd musicbox").stdout
        assert box.sh("stat -c %U /var/lib/musicbox/recordings").stdout.strip() == "musicbox"
        assert box.sh("systemctl is-enabled musicbox.service").stdout.strip() == "enabled"
        verify = box.sh("systemd-analyze verify /lib/systemd/system/musicbox.service 2>&1", check=False)
        assert verify.returncode == 0 and "musicbox.service" not in verify.stdout, verify.stdout
        unit = (box.root / "lib/systemd/system/musicbox.service").read_text()
        assert "ExecStart=/opt/musicbox/bin/musicbox play --config /etc/musicbox/musicbox.toml" in unit
        version = box.sh("musicbox --version").stdout
        assert (
            version.startswith(f"musicbox {__version__}")
            and "/opt/musicbox/share/musicbox/assets/bundle" in version
        )
        assert "model: musicbox-latent-flow" in version and "trained" in version
        assert (box.root / "usr/share/polkit-1/rules.d/50-musicbox.rules").is_file()
        assert list((box.root / "opt/musicbox/lib").rglob("__pycache__/cli.*.pyc"))  # postinst compiled it

        # The service user, the /etc config, the JACK dummy server: doctor passes, 20 s play without underruns.
        result = box.sh(PLAY, user="musicbox")
        doctor = (box.root / "tmp/doctor.txt").read_text()
        assert "doctor exit 0" in result.stdout, doctor
        assert "/etc/musicbox/musicbox.toml" in doctor.replace("\n", "").replace("│", "").replace(" ", "")
        assert "play exit 0" in result.stdout, (box.root / "tmp/play.log").read_text()
        stats = json.loads((box.root / "tmp/stats.json").read_text())
        assert stats["bars_played"] >= 5 and stats["underruns"] == 0 and stats["worker_restarts"] == 0, stats

        # Upgrade over itself: the maker's edit of the conffile survives, with no prompt.
        conf = box.root / "etc/musicbox/musicbox.toml"
        edited = conf.read_text() + "\n[synth]\ngain = 0.7\n"
        conf.write_text(edited)
        box.sh(f"dpkg -i /tmp/{upgrade.name}")
        assert box.sh("dpkg-query -W -f='${Version}' musicbox").stdout == f"{__version__}-2"
        assert conf.read_text() == edited
        assert box.sh("systemctl is-enabled musicbox.service").stdout.strip() == "enabled"
        # The upgraded box reads the kept file: the edit and the package's own setting, as the service user.
        read = "from musicbox.config import load_config; c = load_config(); print(c.synth.gain, c.buttons.hold_action)"
        assert box.sh(f"/opt/musicbox/bin/python3 -c '{read}'", user="musicbox").stdout.split() == [
            "0.7",
            "poweroff",
        ]

        # Remove keeps the config, recordings and user; purge takes them all, then nothing is left.
        box.sh("apt-get remove -y -q musicbox")
        assert not (box.root / "opt/musicbox").exists() and not (box.root / "usr/bin/musicbox").exists()
        assert conf.is_file() and (box.root / "var/lib/musicbox/recordings").is_dir()
        box.sh("apt-get purge -y -q musicbox && apt-get autoremove --purge -y -q")
        assert box.sh("getent passwd musicbox", check=False).returncode == 2
        assert box.sh("getent group musicbox", check=False).returncode == 2
        left = sorted(box.files() - before)
        assert not left, f"left behind after purge: {left[:40]}"
    print(f"\npackage check: build {built - started:.0f} s, total {time.monotonic() - started:.0f} s")
