"""Open a bundle folder and run its stages: lazy ONNX sessions, a memory budget, precision choice.

``Bundle.open(path, precision="auto", memory_budget_mb=None, threads=1)`` reads and validates
``manifest.json`` (runtime/manifest.py), checks every file of the chosen variant against its manifest
size and sha256, and creates ONNX Runtime sessions only when a stage is first needed, in the order a bar
needs them (denoiser shards, decoder, then encoder for the continuation).

Two modes:

- **resident** (``memory_budget_mb=None``, or a budget larger than the variant's files): every session is
  kept once loaded.
- **streaming** (a budget smaller than the variant): sessions live in an LRU cache whose summed weight
  bytes stay within the budget; a shard is loaded, run and released when the next one needs its room, so a
  model larger than the board's RAM still runs (slowly: every sampler step walks all shards). The outputs
  are bit-identical to resident mode's: both use the same session options.

Session options for small boards (measured on this x86 host with a 25 MB fp32 shard, 1 thread, B=2):

- ``session.disable_prepacking``: MLAS prepacks constant MatMul weights into its own layout. When the
  weights are embedded in the .onnx file, the parsed protobuf copy and the packed copy coexist: +44 MB
  anonymous memory for 25 MB of weights, and glibc keeps it after the session is freed. With external
  data (memory-mapped, see below) the packed copy *replaces* the mapped file pages: +26 MB, returned on
  release. Packed GEMM ran a shard 2.4x faster (2.0 vs 4.8 ms). So prepacking is on exactly for stages with
  external weights and off for embedded ones — the same rule in both modes, so streaming = resident.
- memory-mapped external data: ORT maps ``*.onnx.data`` instead of reading it; loading a 25 MB shard took
  4 ms (embedded: 37 ms) and the pages are clean file cache the kernel can drop.
- ``enable_cpu_mem_arena = False`` (and memory patterns off): activations here are a few KB (``[2, L, d]``),
  so the arena's saving of mallocs is not measurable (2.0 vs 2.5 ms, noise) while it would keep its
  high-water mark per session, for every session.
- ``session.intra_op.allow_spinning = 0``: spinning threads burn a core between the tiny kernels; the
  audio thread needs it more than we need microseconds.
- ``intra_op_num_threads = threads`` (default 1; ``threads=0`` = all cores but one, leaving a core to
  audio), ``inter_op_num_threads = 1`` and ``ORT_SEQUENTIAL`` execution: the graphs are chains.

After releasing a session ``malloc_trim(0)`` hands freed heap pages back to the OS (glibc only).

Precision ``auto`` picks among the variants the manifest ships: by the CPU's int8 dot-product support
(ARM ``asimddp``, x86 ``avx512_vnni``/``avx_vnni`` in /proc/cpuinfo) and a short self-benchmark of the
denoiser (every variant; the fastest int8 vs fp32); ``bundle.precision_reason`` says what was picked and why.
The decision is taken once per machine and bundle and remembered (:data:`PRECISION_FILE` in
:func:`cache_dir`, keyed by the manifest's sha256 -- which holds every file's sha256, so it names the
whole bundle -- the CPU, the threads and the onnxruntime version; a file lock makes concurrent first starts
agree), because the int8 variants time within a few percent of each
other and a fresh race would flip between them from run to run, and with it the notes a seed gives. A
variant whose files fail their check is left out of the choice (and named in the reason); only the chosen
variant must be whole. A choice made while a variant was damaged holds for that start only: it is not
remembered, so the intact bundle (same manifest) decides again with every variant.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import platform
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import numpy as np
import onnxruntime as ort

from musicbox.errors import BundleError, ManifestError
from musicbox.precision import PRECISIONS
from musicbox.runtime.buffering import stage_bytes  # a stage's cost against the memory budget
from musicbox.runtime.bundle_files import verify_variant
from musicbox.runtime.cpu import cpu_dot_product
from musicbox.runtime.digest import sha256_file
from musicbox.runtime.heap import trim_heap
from musicbox.runtime.manifest import Manifest, StageFile, Variant, load_manifest

log = logging.getLogger(__name__)

INT8_PREFERENCE = ("int8", "int8_dynamic")
"""Quantized variants, in the order ``auto`` prefers them when it cannot time them (streaming); otherwise
it times them all and takes the fastest (measured on x86: dynamic 1.1x faster than static)."""
BENCH_SECONDS = 0.15
"""Self-benchmark time per variant (seconds, after one warm-up call)."""
INT8_MARGIN = 1.1
"""Another int8 variant replaces the preferred one only when it is this many times faster."""
PRECISION_FILE = "precision.json"
"""Where ``auto`` remembers its decisions (in :func:`cache_dir`)."""


def cache_dir() -> Path:
    """``$MUSICBOX_CACHE``, else systemd's ``$STATE_DIRECTORY`` (the unit's ``StateDirectory=``), else
    ``~/.cache/musicbox``."""
    env = os.environ.get("MUSICBOX_CACHE") or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    return Path(env) if env else Path.home() / ".cache" / "musicbox"


@dataclass(frozen=True)
class SessionSettings:
    """ONNX Runtime settings of every session of a bundle (see the module docstring for why).

    threads: intra-op threads per session. prepack_external: prepack weights of stages whose weights are
    external (memory-mapped); embedded weights are never prepacked. profile_prefix: when set, every
    session writes ONNX Runtime's profile (per node: op, shapes, time) to ``<prefix><stage file>_*.json``
    (``musicbox bench macs`` counts multiply-accumulates from it).
    """

    threads: int = 1
    prepack_external: bool = True
    profile_prefix: str = ""

    def options(self, stage: StageFile) -> ort.SessionOptions:
        so = ort.SessionOptions()
        so.intra_op_num_threads = self.threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.enable_cpu_mem_arena = False
        so.enable_mem_pattern = False
        so.log_severity_level = 3
        prepack = self.prepack_external and stage.external_data is not None
        so.add_session_config_entry("session.disable_prepacking", "0" if prepack else "1")
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        so.add_session_config_entry("session.inter_op.allow_spinning", "0")
        if self.profile_prefix:
            so.enable_profiling = True
            so.profile_file_prefix = self.profile_prefix + stage.file.replace("/", "_")
        return so


def default_threads() -> int:
    """All cores but one (one is left to the audio callback and the synth), at least 1."""
    return max(1, (os.cpu_count() or 1) - 1)


# ----------------------------------------------------------------------------------------------------
# Sessions


class SessionCache:
    """ONNX sessions by stage file, least recently used first, within ``budget_bytes`` (None = keep all).

    A stage larger than the whole budget is still loaded (alone): the budget bounds what is *kept*.
    """

    def __init__(self, root: Path, settings: SessionSettings, budget_bytes: int | None):
        self.root, self.settings, self.budget_bytes = root, settings, budget_bytes
        self._sessions: OrderedDict[str, tuple[ort.InferenceSession, int]] = OrderedDict()
        self.loads = 0
        """Sessions created so far (a streaming bundle reloads shards; tests and bench read this)."""

    @property
    def held_bytes(self) -> int:
        return sum(cost for _, cost in self._sessions.values())

    @property
    def held(self) -> tuple[str, ...]:
        """Files of the sessions held now, least recently used first."""
        return tuple(self._sessions)

    def get(self, stage: StageFile) -> ort.InferenceSession:
        if stage.file in self._sessions:
            self._sessions.move_to_end(stage.file)
            return self._sessions[stage.file][0]
        cost = stage_bytes(stage)
        self._make_room(cost)
        session = self._create(stage)
        self._sessions[stage.file] = (session, cost)
        return session

    def end_profiling(self) -> dict[str, str]:
        """Stage file -> the profile JSON each held session wrote (sessions opened with a profile prefix)."""
        return {name: session.end_profiling() for name, (session, _cost) in self._sessions.items()}

    def release_all(self) -> None:
        self.retain(set())

    def retain(self, files: set[str]) -> None:
        """Release every session whose file is not in ``files``."""
        dropped = [f for f in self._sessions if f not in files]
        for f in dropped:
            del self._sessions[f]
        if dropped:
            trim_heap()

    def _make_room(self, cost: int) -> None:
        if self.budget_bytes is None:
            return
        evicted = False
        while self._sessions and self.held_bytes + cost > self.budget_bytes:
            self._sessions.popitem(last=False)
            evicted = True
        if evicted:
            trim_heap()

    def _create(self, stage: StageFile) -> ort.InferenceSession:
        path = self.root / stage.file
        try:
            session = ort.InferenceSession(
                str(path), self.settings.options(stage), providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidGraph types
            raise BundleError(
                f"{path}: onnxruntime cannot load it ({exc}); rebuild the bundle with `musicbox quantize`"
            ) from exc
        self.loads += 1
        _check_signature(path, session, stage)
        return session


def _check_signature(path: Path, session: ort.InferenceSession, stage: StageFile) -> None:
    """The model's input/output names must be the manifest's (the chain is wired by name)."""
    got_in = tuple(i.name for i in session.get_inputs())
    got_out = tuple(o.name for o in session.get_outputs())
    if set(got_in) != set(stage.input_names) or set(got_out) != set(stage.output_names):
        raise BundleError(
            f"{path}: inputs {got_in} / outputs {got_out} differ from the manifest's "
            f"{stage.input_names} / {stage.output_names}; rebuild the bundle with `musicbox quantize`"
        )


# ----------------------------------------------------------------------------------------------------
# CPU features and precision choice


def synthetic_feeds(stage: StageFile, batch: int = 2, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 inputs of a stage's declared shapes (symbolic dims -> ``batch``): for benchmarks."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for spec in stage.inputs:
        shape = tuple(batch if isinstance(d, str) else d for d in spec.shape)
        feeds[spec.name] = rng.uniform(0.0, 1.0, shape).astype(spec.dtype)
    return feeds


def _cpu_model() -> str:
    """The CPU's model name (x86 ``model name``, ARM ``Model``/``CPU part``) from /proc/cpuinfo."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or "unknown CPU"
    for name in ("model name", "Model", "CPU part"):
        for line in text.splitlines():
            key, _, value = line.partition(":")
            if key.strip() == name and value.strip():
                return value.strip()
    return "unknown CPU"


class _Memory(dict):
    """The remembered decisions (a dict), written back to ``path`` when the ``with`` block ends."""

    def __init__(self, path: Path, data: dict):
        super().__init__(data)
        self.path = path


class _remembered:
    """``with _remembered(path) as memory``: the JSON dict at ``path`` under an exclusive file lock
    (``path`` + ``.lock``), written back atomically on exit; ``memory`` is None when the folder cannot be
    written (the decision is then not remembered)."""

    def __init__(self, path: Path):
        self.path = path
        self._lock: TextIO | None = None
        self._memory: _Memory | None = None

    def __enter__(self) -> _Memory | None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(self.path.with_name(self.path.name + ".lock"), "a")  # noqa: SIM115
            self._lock = lock
            fcntl.flock(lock, fcntl.LOCK_EX)
        except OSError as exc:
            log.warning("cannot remember the precision choice in %s: %s", self.path.parent, exc)
            return None
        try:
            data = json.loads(self.path.read_text())
        except (OSError, ValueError):
            data = {}
        self._memory = _Memory(self.path, data if isinstance(data, dict) else {})
        return self._memory

    def __exit__(self, *exc) -> None:
        if self._lock is None:
            return
        try:
            if self._memory is not None and exc[0] is None:
                tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
                tmp.write_text(json.dumps(dict(self._memory), indent=1) + "\n")
                os.replace(tmp, self.path)
        except OSError as err:
            log.warning("cannot remember the precision choice in %s: %s", self.path, err)
        finally:
            self._lock.close()


# ----------------------------------------------------------------------------------------------------
# The bundle


class Bundle:
    """An opened bundle: its manifest, the chosen variant and the sessions that run it.

    Attributes: ``path`` (folder), ``manifest``, ``precision`` (the variant in use), ``precision_reason``
    (one line: why), ``mode`` (``resident`` | ``streaming``), ``threads``. Use :meth:`open`.
    """

    def __init__(self, path: Path, manifest: Manifest, settings: SessionSettings, budget_bytes: int | None):
        self.path, self.manifest, self.settings = path, manifest, settings
        self.budget_bytes = budget_bytes
        self.sessions = SessionCache(path, settings, budget_bytes)
        self.precision = ""
        self.precision_reason = ""
        self.variant: Variant  # the variant in use, set by _choose when opened
        self._verified: set[str] = set()

    @classmethod
    def open(
        cls,
        path: str | Path,
        precision: str = "auto",
        memory_budget_mb: float | None = None,
        threads: int = 1,
        profile_prefix: str = "",
    ) -> Bundle:
        """Open the bundle folder ``path``.

        precision: ``auto`` | ``int8`` | ``int8_dynamic`` | ``fp32``. memory_budget_mb: keep at most this
        many MB of stage weights loaded (None = all: resident). threads: intra-op threads per session
        (0 = all cores but one). profile_prefix: see :class:`SessionSettings`. Raises ``ManifestError`` /
        ``BundleError`` saying what to fix.
        """
        root = Path(path)
        if not root.is_dir():
            raise BundleError(f"{root}: no bundle folder there; build one with `musicbox quantize`")
        manifest = load_manifest(root / "manifest.json")
        settings = SessionSettings(threads=threads or default_threads(), profile_prefix=profile_prefix)
        budget = None if memory_budget_mb is None else int(memory_budget_mb * 1024 * 1024)
        bundle = cls(root, manifest, settings, budget)
        bundle._choose(precision)
        log.info("bundle %s: %s, %s mode (%s)", root, bundle.precision, bundle.mode, bundle.precision_reason)
        return bundle

    # -- precision --------------------------------------------------------------------------------

    def _choose(self, precision: str) -> None:
        available = [p for p in PRECISIONS if p in self.manifest.variants]
        if precision == "auto":
            precision, reason = self._auto(available)
        elif precision not in PRECISIONS:
            raise ManifestError(f"precision {precision!r}: allowed auto, {', '.join(PRECISIONS)}")
        elif precision not in available:
            raise BundleError(
                f"{self.path}: no {precision} variant in this bundle (it has {', '.join(available)}); "
                "pick one of those or rebuild with `musicbox quantize`"
            )
        else:
            reason = "asked for"
        self._use(precision, reason)

    def _use(self, precision: str, reason: str) -> None:
        """Switch to ``precision`` (its files verified once; BundleError if they fail) and drop other
        variants' sessions."""
        variant = self.manifest.variant(precision)
        if precision not in self._verified:
            verify_variant(self.path, variant)
            self._verified.add(precision)
        self.variant, self.precision, self.precision_reason = variant, precision, reason
        self.sessions.retain({s.file for s in variant.files()})

    def _auto(self, available: Sequence[str]) -> tuple[str, str]:
        int8 = next((p for p in INT8_PREFERENCE if p in available), None)
        if int8 is None or "fp32" not in available:
            only = int8 or "fp32"
            return only, f"the only kind of variant in this bundle ({only})"
        flag = cpu_dot_product()
        cpu = (
            f"{platform.machine()} with {flag}" if flag else f"{platform.machine()} without int8 dot-product"
        )
        if self.streaming_for(int8):
            return int8, f"{cpu}; streaming under a memory budget, where int8's smaller shards win"
        with _remembered(cache_dir() / PRECISION_FILE) as memory:
            key = self._machine_key(flag)
            known = memory.get(key) if memory is not None else None
            if (
                memory is not None
                and known
                and known.get("whole") is True  # decided with every variant whole (older entries: again)
                and known.get("precision") in available
                and self._damage(known["precision"]) is None
            ):
                self._report_damage(available, known["precision"])
                return known["precision"], f"{known['reason']}; remembered in {memory.path}"
            pick, reason, whole = self._decide(available, cpu, flag)
            if not whole:  # a damaged copy's choice is for this start only, never for the intact bundle
                reason += "; decided now, not remembered (a variant is damaged)"
            elif memory is not None:
                memory[key] = {
                    "precision": pick,
                    "reason": reason,
                    "whole": True,
                    "decided": time.strftime("%Y-%m-%d"),
                }
                reason += f"; decided now, remembered in {memory.path}"
            else:
                reason += f"; decided now (cannot remember it: {cache_dir()} is not writable)"
        return pick, reason

    def _decide(self, available: Sequence[str], cpu: str, flag: str | None) -> tuple[str, str, bool]:
        """Time the denoiser of every whole variant: the preferred int8 variant unless another int8 is
        :data:`INT8_MARGIN` times faster, then int8 vs fp32 by the CPU's dot-product flag. Returns the
        pick, why, and whether every variant was whole (only then is the choice the bundle's)."""
        times: dict[str, float] = {}
        damaged: dict[str, str] = {}
        for p in (*INT8_PREFERENCE, "fp32"):
            if p in available:
                why = self._damage(p)
                if why is None:
                    times[p] = self._time_denoiser(p)
                else:
                    damaged[p] = why
        if not times:
            raise BundleError(f"{self.path}: no variant is whole: " + "; ".join(damaged.values()))
        skipped = f"; {', '.join(damaged)} left out (files fail their check)" if damaged else ""
        int8s = [p for p in times if p != "fp32"]
        if not int8s or "fp32" not in times:
            only = (int8s or ["fp32"])[0]
            return only, f"{cpu}; the only whole variant{skipped}", not damaged
        int8 = int8s[0]
        for other in int8s[1:]:
            if times[other] * INT8_MARGIN < times[int8]:
                int8 = other
        margin = 1.1 if flag else 0.9  # with dot-product, int8 unless clearly slower; else only if faster
        pick = int8 if times[int8] <= margin * times["fp32"] else "fp32"
        timing = ", ".join(f"{p} {t * 1e3:.2f} ms" for p, t in times.items())
        return pick, f"{cpu}; denoiser per call: {timing}{skipped}", not damaged

    def _damage(self, precision: str) -> str | None:
        """None when ``precision``'s files pass their check, else what is wrong (logged)."""
        try:
            self._use(precision, "checking")
        except BundleError as exc:
            log.warning(
                "bundle %s: the %s variant is damaged, left out of the choice: %s", self.path, precision, exc
            )
            return str(exc)
        return None

    def _report_damage(self, available: Sequence[str], chosen: str) -> None:
        """Log the variants other than ``chosen`` whose files are missing or of the wrong size (sizes
        only: their hashes are not read, they will not be loaded)."""
        for p in available:
            if p == chosen:
                continue
            try:
                verify_variant(self.path, self.manifest.variant(p), hashes=False)
            except BundleError as exc:
                log.warning("bundle %s: the %s variant (not used) is damaged: %s", self.path, p, exc)

    def _machine_key(self, flag: str | None) -> str:
        """What a remembered decision depends on: the bundle (its manifest's sha256), the CPU, the
        threads and the onnxruntime version."""
        model = _cpu_model()
        manifest_sha = sha256_file(self.path / "manifest.json")
        return f"{manifest_sha[:16]} {platform.machine()} {model} {flag} t{self.settings.threads} ort{ort.__version__}"

    def _time_denoiser(self, precision: str) -> float:
        """Median seconds of one denoiser call in ``precision`` (after a warm-up call), at the generator's
        largest batch (``SamplerInfo.max_batch``: 1, and 1 more per guidance row)."""
        self._use(precision, "self-benchmark")
        feeds = synthetic_feeds(self.variant.denoiser[0], batch=self.manifest.sampler.max_batch)
        self.run_denoiser(feeds)
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < 3 or (time.perf_counter() - start < BENCH_SECONDS and len(times) < 50):
            t = time.perf_counter()
            self.run_denoiser(feeds)
            times.append(time.perf_counter() - t)
        return float(np.median(times))

    # -- modes ----------------------------------------------------------------------------------------

    def streaming_for(self, precision: str) -> bool:
        """Whether ``precision``'s files exceed the memory budget (so shards are streamed)."""
        if self.budget_bytes is None:
            return False
        return sum(stage_bytes(s) for s in self.manifest.variant(precision).files()) > self.budget_bytes

    @property
    def mode(self) -> str:
        """``streaming`` when the variant does not fit the memory budget, else ``resident``."""
        return "streaming" if self.streaming_for(self.precision) else "resident"

    # -- running stages -------------------------------------------------------------------------------

    def run_denoiser(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Run the denoiser shards in order, wiring each shard's inputs by name from ``feeds`` and the
        earlier shards' outputs. feeds: the contract's conditioning inputs (``x [B, F, D]``,
        ``sigma [B]``, ``context``, ``context_mask``, ``style_w``, ``attrs``, ``attr_mask``, ``place``, ``meter``),
        with F x D the manifest's ``latent_frames`` x ``latent_dim`` (4 x 64 shipped). Returns
        ``v [B, F, D]``."""
        values = dict(feeds)
        for stage in self.variant.denoiser:
            session = self.sessions.get(stage)
            outputs = session.run(None, {name: values[name] for name in stage.input_names})
            values.update(zip((o.name for o in session.get_outputs()), outputs, strict=True))
        return values["v"]

    def encode(self, planes: np.ndarray) -> np.ndarray:
        """Planes float32 ``[B, 6, 16, 64]`` -> latent ``[B, F, D]`` (4 x 64 shipped)."""
        return self._run_single(self.variant.encoder, "planes", planes)

    def decode(self, latent: np.ndarray) -> np.ndarray:
        """Latent float32 ``[B, F, D]`` (4 x 64 shipped) -> note probabilities ``[B, 6, 16, 64]``."""
        return self._run_single(self.variant.decoder, "latent", latent)

    def _run_single(self, stage: StageFile, name: str, value: np.ndarray) -> np.ndarray:
        session = self.sessions.get(stage)
        return session.run(None, {name: np.ascontiguousarray(value, dtype=np.float32)})[0]

    def close(self) -> None:
        """Release every session (the bundle can still be used: sessions reload on demand)."""
        self.sessions.release_all()

    def __enter__(self) -> Bundle:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
