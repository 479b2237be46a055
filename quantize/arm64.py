"""The ARM64 check: the runtime on a bundle under qemu-aarch64 (Cortex-A53 / A72 / A76 / A57) vs this x86 host.

``scripts/arm64_check.sh`` prepares (and caches) an arm64 Debian sysroot with aarch64 numpy,
onnxruntime and msgspec wheels, then runs ``python -m musicbox.quantize.arm64 check BUNDLE --sysroot S --out O``:

1. ``run`` natively: for every variant, ``Bundle.open(precision=..., threads=1)`` + ``Generator`` with
   fixed seeds and knob settings (``validate.generate``) -> ``O/x86_64/<precision>.latents.npy`` (the
   sampled latents ``[n, F, D]``) and ``.rolls.npy``;
2. the same ``run`` under ``qemu-aarch64-static -L SYSROOT`` with ``QEMU_CPU`` = ``cortex-a53`` (Pi Zero
   2 W / Pi 3), ``cortex-a72`` (Pi 4, no dot-product), ``cortex-a76`` (Pi 5, ``asimddp``), ``cortex-a57``
   (Jetson Nano). Never ``max``: its SME
   path gives wrong INT8 results. A fake ARM ``/proc/cpuinfo`` of that core goes into the sysroot first
   (qemu resolves absolute paths in ``-L`` first; onnxruntime segfaults on the host's x86 cpuinfo);
3. compare each ARM run with x86:

   - **fp32: the same notes, latents equal to float32 rounding.** Bit-exact is what we want and what a
     graph of MatMul/Gemm alone gives, but not this model: onnxruntime's LayerNormalization and
     Softmax reduce with the vector width of the ISA (16 lanes of AVX-512 vs 4 of NEON), so their
     outputs differ in the last bit or two (measured: 2e-7 relative after one denoiser call). The check
     requires identical rolls and latents within ``FP32_RTOL`` relative L2 per bar, and reports whether
     they were bit-exact;
   - **int8 / int8_dynamic: within tolerance.** Those last-bit differences of the float ops in front of
     a QuantizeLinear occasionally move an activation across a rounding boundary (measured: 1 value in
     5000 in one call); that one step of 8 bits spreads through the next MatMul's row and the sampler
     steps, so ARM and x86 INT8 latents differ by about as much as the quantization error itself
     (dynamic INT8 more: its per-call activation scales move too). The tolerance is therefore relative
     to the quantization error: per bar, ``||arm_int8 - x86_fp32|| <= INT8_TOLERANCE * ||x86_int8 -
     x86_fp32||`` (ARM INT8 at most twice as far from FP32 as x86 INT8 is), and the rolls' note F1
     against x86 INT8 at least ``INT8_MIN_F1`` (the bundle's own INT8 target). A wrong kernel (QEMU
     ``max``'s SME path, a saturating U8S8 path) is an order of magnitude off and fails.

The sources copied into the sysroot are only ``musicbox/__init__.py``, ``errors.py``, ``runtime/`` and
this module with ``validate.py``: the runtime and this check never import torch. With ``--package
musicbox_<v>_arm64.deb`` the emulated runs use the Debian package's contents instead (its
``/opt/musicbox`` unpacked into the sysroot: the aarch64 wheels and the musicbox it installs).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from musicbox.precision import PRECISIONS
from musicbox.quantize.validate import ValidationPlan, default_settings, generate
from musicbox.runtime.bundle import INT8_PREFERENCE
from musicbox.runtime.pianoroll import note_f1
from musicbox.targets import target

CPUS = ("cortex-a53", "cortex-a72", "cortex-a76", "cortex-a57")
FP32_RTOL = 1e-5
"""Per bar: ||arm_fp32 - x86_fp32|| <= FP32_RTOL * ||x86_fp32|| (float32 rounding is ~6e-8)."""
INT8_TOLERANCE = 2.0
"""Per bar: ||arm_int8 - x86_fp32|| <= INT8_TOLERANCE * ||x86_int8 - x86_fp32|| (+ 1e-6 absolute)."""
INT8_MIN_F1 = target("note_f1").bound
"""Note F1 of the ARM INT8 rolls against the x86 INT8 rolls (the same target as INT8 vs FP32)."""
RUN_TIMEOUT_S = 900

# MIDR part numbers and /proc/cpuinfo Features lines of the emulated cores (Linux arm64 spelling).
_CORES = {
    "cortex-a53": ("0xd03", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
    "cortex-a72": ("0xd08", "fp asimd evtstrm crc32 cpuid"),
    "cortex-a76": (
        "0xd0b",
        "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp",
    ),
    "cortex-a57": ("0xd07", "fp asimd evtstrm aes pmull sha1 sha2 crc32 cpuid"),
}


def plan_for(manifest, seeds: int, bars: int) -> ValidationPlan:
    """The fixed generation plan of the check: ``seeds`` seeds x the default knob settings x ``bars``."""
    return ValidationPlan(tuple(range(seeds)), default_settings(manifest), bars)


def run(bundle: Path, out: Path, seeds: int, bars: int) -> None:
    """Generate with every variant of ``bundle`` and save latents and rolls as ``.npy`` in ``out``."""
    from musicbox.runtime.bundle import Bundle
    from musicbox.runtime.cpu import cpu_dot_product

    out.mkdir(parents=True, exist_ok=True)
    seconds: dict[str, float] = {}
    info = {"machine": platform.machine(), "dot_product": cpu_dot_product(), "seconds": seconds}
    for precision in PRECISIONS:
        start = time.perf_counter()
        b = Bundle.open(bundle, precision=precision, threads=1)
        latents, rolls = generate(b, plan_for(b.manifest, seeds, bars))
        np.save(out / f"{precision}.latents.npy", latents)
        np.save(out / f"{precision}.rolls.npy", rolls)
        seconds[precision] = round(time.perf_counter() - start, 2)
        b.close()
    (out / "info.json").write_text(json.dumps(info, indent=1))


def fake_cpuinfo(cpu: str, n: int = 4) -> str:
    """/proc/cpuinfo text of ``n`` cores of ``cpu`` as arm64 Linux writes it."""
    part, features = _CORES[cpu]
    core = (
        "processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n\n"
    )
    return "".join(core.format(i=i, features=features, part=part) for i in range(n))


def install_sources(sysroot: Path) -> Path:
    """Copy the runtime and this check into ``sysroot/opt/musicbox/src``; returns that folder."""
    import musicbox
    import musicbox.quantize
    import musicbox.runtime

    src = sysroot / "opt" / "musicbox" / "src"
    pkg = src / "musicbox"
    shutil.rmtree(src, ignore_errors=True)
    (pkg / "quantize").mkdir(parents=True)
    top = Path(musicbox.__file__).parent
    for name in ("__init__.py", "errors.py", "targets.py", "precision.py"):
        shutil.copy2(top / name, pkg / name)
    shutil.copytree(
        Path(musicbox.runtime.__file__).parent, pkg / "runtime", ignore=shutil.ignore_patterns("__pycache__")
    )
    here = Path(musicbox.quantize.__file__).parent
    for name in ("__init__.py", "validate.py", "arm64.py"):
        shutil.copy2(here / name, pkg / "quantize" / name)
    return src


def run_args(bundle: Path, out: Path, seeds: int, bars: int) -> list[str]:
    return [
        "-m",
        "musicbox.quantize.arm64",
        "run",
        str(bundle.resolve()),
        str(out.resolve()),
        "--seeds",
        str(seeds),
        "--bars",
        str(bars),
    ]


def install_package(sysroot: Path, deb: Path) -> str:
    """Unpack the arm64 Debian package into ``sysroot`` (``dpkg-deb -x``: files only, no scripts run);
    returns the sysroot path of its site-packages, for ``PYTHONPATH``."""
    shutil.rmtree(sysroot / "opt" / "musicbox" / "lib", ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(sysroot)], check=True)
    found = sorted((sysroot / "opt" / "musicbox" / "lib").glob("python3.*/site-packages"))
    if len(found) != 1 or not (found[0] / "musicbox" / "cli.py").is_file():
        raise SystemExit(f"{deb}: no /opt/musicbox/lib/python3.X/site-packages with musicbox in it")
    return "/" + str(found[0].relative_to(sysroot))


def run_emulated(
    cpu: str, sysroot: Path, bundle: Path, out: Path, seeds: int, bars: int, pythonpath: str
) -> float:
    """Run the generation under qemu-aarch64 as ``cpu`` with ``pythonpath`` (sysroot paths); returns the
    wall seconds. It runs in the sysroot's /opt/musicbox: ``python -m`` puts the working directory first
    on ``sys.path``, and a checkout's own ``musicbox/`` folder there would shadow the one under test."""
    if cpu == "max" or cpu not in _CORES:
        raise SystemExit(f"QEMU_CPU={cpu!r}: use one of {', '.join(_CORES)} (never max: wrong INT8 results)")
    (sysroot / "proc").mkdir(exist_ok=True)
    (sysroot / "proc" / "cpuinfo").write_text(fake_cpuinfo(cpu))
    env = {
        "QEMU_CPU": cpu,
        "PATH": "/usr/bin:/bin",
        "HOME": "/root",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONPATH": pythonpath,
    }
    cmd = ["qemu-aarch64-static", "-L", str(sysroot), str(sysroot / "usr/bin/python3")]
    start = time.perf_counter()
    args = cmd + run_args(bundle, out, seeds, bars)
    subprocess.run(args, env=env, cwd=sysroot / "opt" / "musicbox", check=True, timeout=RUN_TIMEOUT_S)
    return time.perf_counter() - start


def _bar_norms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """L2 norm of ``a - b`` per bar (first axis)."""
    return np.linalg.norm((a - b).reshape(len(a), -1).astype(np.float64), axis=1)


def compare(ref: Path, arm: Path) -> dict:
    """Compare an ARM run folder with the x86 one (tolerances in the module docstring)."""
    load = lambda d, p, kind: np.load(d / f"{p}.{kind}.npy")  # noqa: E731
    fp32 = load(ref, "fp32", "latents")
    arm32 = load(arm, "fp32", "latents")
    rel = float(np.max(_bar_norms(arm32, fp32) / np.linalg.norm(fp32.reshape(len(fp32), -1), axis=1)))
    same_notes = bool(np.array_equal(load(ref, "fp32", "rolls"), load(arm, "fp32", "rolls")))
    result: dict[str, Any] = {
        "fp32": {
            "bit_exact": bool(np.array_equal(fp32, arm32)),
            "same_notes": same_notes,
            "max_rel_err": float(f"{rel:.3g}"),
        }
    }
    ok = same_notes and rel <= FP32_RTOL
    for p in INT8_PREFERENCE:
        x86, got = load(ref, p, "latents"), load(arm, p, "latents")
        ratio = float(np.max(_bar_norms(got, fp32) / (_bar_norms(x86, fp32) + 1e-6)))
        diff = float(np.max(_bar_norms(got, x86) / (_bar_norms(x86, fp32) + 1e-6)))
        f1 = note_f1(load(arm, p, "rolls"), load(ref, p, "rolls"))
        result[p] = {
            "bit_exact": bool(np.array_equal(x86, got)),
            "err_vs_fp32_ratio": round(ratio, 4),
            "diff_vs_x86_ratio": round(diff, 4),
            "note_f1_vs_x86": round(f1, 4),
        }
        ok = ok and ratio <= INT8_TOLERANCE and f1 >= INT8_MIN_F1
    result["ok"] = bool(ok)
    return result


def check(
    bundle: Path, sysroot: Path, out: Path, cpus, seeds: int, bars: int, package: Path | None = None
) -> int:
    """Run x86 and every ARM core, compare, write ``out/arm64_check.json``; 0 when all pass. The ARM
    runs use ``package``'s contents when given, else the sources copied next to the sysroot's wheels."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *run_args(bundle, out / "x86_64", seeds, bars)], check=True)
    report: dict[str, Any] = {
        "x86_seconds": round(time.perf_counter() - start, 1),
        "cpus": {},
        "package": str(package or ""),
    }
    if package is not None:
        pythonpath = install_package(sysroot, package)
    else:
        install_sources(sysroot)
        pythonpath = "/opt/musicbox/site:/opt/musicbox/src"
    for cpu in cpus:
        seconds = run_emulated(cpu, sysroot, bundle, out / cpu, seeds, bars, pythonpath)
        report["cpus"][cpu] = {"seconds": round(seconds, 1), **compare(out / "x86_64", out / cpu)}
        print(f"{cpu}: {json.dumps(report['cpus'][cpu])}", flush=True)
    report["ok"] = all(r["ok"] for r in report["cpus"].values())
    report["tolerance"] = {
        "fp32_rtol": FP32_RTOL,
        "int8_err_ratio": INT8_TOLERANCE,
        "int8_min_f1": INT8_MIN_F1,
    }
    (out / "arm64_check.json").write_text(json.dumps(report, indent=1))
    print(f"arm64 check {'passed' if report['ok'] else 'FAILED'}: {out / 'arm64_check.json'}")
    return 0 if report["ok"] else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m musicbox.quantize.arm64", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="generate with every variant here and save latents (any arch)")
    r.add_argument("bundle", type=Path)
    r.add_argument("out", type=Path)
    c = sub.add_parser("check", help="run on x86 and on emulated ARM64 cores and compare")
    c.add_argument("bundle", type=Path)
    c.add_argument("--sysroot", type=Path, required=True)
    c.add_argument("--out", type=Path, required=True)
    c.add_argument("--cpus", default=",".join(CPUS), help="comma-separated QEMU_CPU models")
    c.add_argument("--package", type=Path, help="run the arm64 Debian package's contents (a .deb)")
    for p in (r, c):
        p.add_argument("--seeds", type=int, default=1)
        p.add_argument("--bars", type=int, default=2)
    args = parser.parse_args(argv)
    if args.cmd == "run":
        run(args.bundle, args.out, args.seeds, args.bars)
        return 0
    return check(
        args.bundle, args.sysroot, args.out, args.cpus.split(","), args.seeds, args.bars, args.package
    )


if __name__ == "__main__":
    sys.exit(main())
