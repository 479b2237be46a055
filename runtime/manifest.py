"""The one schema of a bundle's ``manifest.json`` (see docs/architecture.md, "Bundle").

The quantize tool writes a :class:`Manifest` with :meth:`Manifest.dump`; the device reads it with
:func:`load_manifest`. Reading is strict: a missing or unknown field, a value of the wrong type, an
unsupported ``format_version`` or an inconsistent table raises :class:`~musicbox.errors.ManifestError`
naming the file, the JSON path of the field (``$.variants.int8.denoiser[1].sha256``) and what is allowed.
Nothing here checks the files themselves (hashes, sizes): that is ``runtime/bundle.py``'s job.

All sequences are stored as tuples so that every dataclass is frozen and comparable; ``to_json`` writes
them back as JSON lists, so ``load_manifest(p).to_json()`` reproduces the file's content.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

from musicbox.errors import ManifestError
from musicbox.runtime.features import ATTRS
from musicbox.runtime.form import FormSpec
from musicbox.runtime.pianoroll import Representation
from musicbox.runtime.sampling import SAMPLERS

FORMAT_VERSION = 1
SUPPORTED_FORMAT_VERSIONS = (1,)
PRECISIONS = ("fp32", "int8", "int8_dynamic")
"""Variant names, in the order ``Bundle`` prefers them when asked for the most exact one."""
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")
SCHEDULES = ("flow",)


@dataclass(frozen=True)
class Provenance:
    """Where the weights come from: ``checkpoint_sha256`` of model.safetensors, the ``dataset`` cache
    id, and when it was ``trained`` (ISO 8601)."""

    checkpoint_sha256: str
    dataset: str
    trained: str


@dataclass(frozen=True)
class ModelInfo:
    """The model's ``name``, its number of ``parameters`` (all stages) and its provenance."""

    name: str
    parameters: int
    provenance: Provenance


@dataclass(frozen=True)
class RepresentationInfo:
    """Grid, pitch range and latent geometry.

    steps_per_bar: grid cells per bar (16). tracks: part names, melody first. pitch_low: MIDI number of
    pitch row 0. n_pitches: pitch rows. latent_frames x latent_dim: one bar's latent ``[F, D]``.
    context_bars: previous bars the denoiser sees (its ``context`` input is ``[B, context_bars * F, D]``).
    tonic: the pitch class (0 = C) the model writes in when it was trained key-normalized, so the box
    transposes what it plays into the listener's key; null when the model writes in any key.
    """

    steps_per_bar: int
    tracks: tuple[str, ...]
    pitch_low: int
    n_pitches: int
    latent_frames: int
    latent_dim: int
    context_bars: int
    tonic: int | None = None

    def pianoroll(self) -> Representation:
        """The :class:`~musicbox.runtime.pianoroll.Representation` of this grid."""
        return Representation(self.steps_per_bar, self.tracks, self.pitch_low, self.n_pitches)


@dataclass(frozen=True)
class SamplerInfo:
    """How the device samples a bar's latent.

    kind: a key of ``sampling.SAMPLERS`` (``euler``, ``heun``). steps: sampler steps (model calls for
    euler). schedule: ``flow`` (``sampling.get_sigmas_flow``). shift: SD3 timestep shift (1 = none).
    guidance: classifier-free guidance scale (1 = conditional only, no unconditional pass).
    threshold: note probability above which a cell sounds (``pianoroll.planes_to_roll``).
    """

    kind: str
    steps: int
    schedule: str
    shift: float
    guidance: float
    threshold: float

    @property
    def guided(self) -> bool:
        """Whether each denoiser call runs the conditional and unconditional rows (batch 2, not 1)."""
        return self.guidance != 1.0


@dataclass(frozen=True)
class AttrsInfo:
    """Normalization of the conditioning attributes: ``names`` (= ``features.ATTRS``), per-attribute
    ``mean`` and ``std`` of the raw values; the model sees ``(raw - mean) / std``."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]


@dataclass(frozen=True)
class TempoInfo:
    """The tempo knob's range in BPM; ``min_bpm`` maps to energy 0, ``max_bpm`` to energy 1."""

    min_bpm: float
    max_bpm: float
    default_bpm: float


@dataclass(frozen=True)
class MoodInfo:
    """``density_gain``: raw density is multiplied by ``1 + density_gain * mood`` (mood in -1..1)."""

    density_gain: float


@dataclass(frozen=True)
class Arrangement:
    """How a style is played: General MIDI ``programs`` per track (0..127), the ``drums`` pattern
    family (a name ``runtime/arrangement.py`` knows, ``"none"`` for no drums; the renderer checks it),
    ``swing`` (0 straight .. 1 full triplet swing of the off-beat
    sixteenths) and the base MIDI ``velocity`` (1..127)."""

    programs: tuple[int, ...]
    drums: str
    swing: float
    velocity: int


@dataclass(frozen=True)
class StyleInfo:
    """One style detent of the knob.

    name: short id (``chorale``). label: what a person reads. density: onsets per bar at energy
    0 / 0.5 / 1 (p10, p50, p90 of the corpus style). register: mean melody MIDI pitch at mood
    -1 / 0 / +1 (p10, p50, p90). polyphony: typical sounding notes per busy step. form: how its tunes
    are built, sections and phrases (``runtime/form.py``; default AABB in 8-bar strains).
    """

    name: str
    label: str
    density: tuple[float, ...]
    register: tuple[float, ...]
    polyphony: float
    arrangement: Arrangement
    form: FormSpec = FormSpec()


@dataclass(frozen=True)
class ControlsInfo:
    """The knob tables: attribute normalization, tempo range, mood gains and the styles (knob order)."""

    attrs: AttrsInfo
    tempo: TempoInfo
    mood: MoodInfo
    styles: tuple[StyleInfo, ...]

    def style_index(self, name: str) -> int:
        """Index of the style called ``name``; ``ManifestError`` listing the names if there is none."""
        names = [s.name for s in self.styles]
        if name not in names:
            raise ManifestError(f"no style named {name!r} in this bundle; styles: {', '.join(names)}")
        return names.index(name)


@dataclass(frozen=True)
class TensorSpec:
    """One ONNX input or output: ``name``, ``dtype`` (one of ``DTYPES``) and ``shape``, whose entries
    are sizes or symbolic names (``"B"`` for the batch)."""

    name: str
    dtype: str
    shape: tuple[int | str, ...]


@dataclass(frozen=True)
class ExternalData:
    """An ONNX external-weights file next to its model: path relative to the bundle, sha256, bytes."""

    file: str
    sha256: str
    bytes: int


@dataclass(frozen=True)
class StageFile:
    """One ONNX file of a stage: its path relative to the bundle, sha256 (hex), size in bytes,
    ``precision`` (one of ``PRECISIONS``), input/output specs and optional external weights."""

    file: str
    sha256: str
    bytes: int
    precision: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    external_data: ExternalData | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


@dataclass(frozen=True)
class Variant:
    """The files of one precision: ``encoder``, ``decoder`` and the ``denoiser`` shards in order."""

    encoder: StageFile
    decoder: StageFile
    denoiser: tuple[StageFile, ...]

    def files(self) -> tuple[StageFile, ...]:
        """Every stage file, in the order a bar needs them (denoiser shards, decoder, encoder)."""
        return (*self.denoiser, self.decoder, self.encoder)


@dataclass(frozen=True)
class Manifest:
    """A bundle's manifest.json. ``variants`` maps a precision name to its files; ``validation`` is the
    quantize tool's report of this bundle (free-form JSON: agreement, sizes, latencies)."""

    format_version: int
    model: ModelInfo
    representation: RepresentationInfo
    sampler: SamplerInfo
    controls: ControlsInfo
    variants: dict[str, Variant]
    validation: dict[str, Any]

    def to_json(self) -> str:
        """The manifest as pretty-printed JSON text (sorted as declared, 2-space indent)."""
        return json.dumps(dataclasses.asdict(self), indent=2) + "\n"

    def dump(self, path: str | Path) -> Path:
        """Write the manifest to ``path`` (a file, or a bundle folder -> ``manifest.json``) after
        checking it would load back; returns the file written."""
        path = Path(path)
        if path.is_dir():
            path = path / "manifest.json"
        text = self.to_json()
        parse_manifest(json.loads(text), source=str(path))
        path.write_text(text)
        return path


# ----------------------------------------------------------------------------------------------------
# Strict parsing: JSON value + dataclass type -> instance, with JSON paths in every error.


def load_manifest(path: str | Path) -> Manifest:
    """Read and validate ``path`` (manifest.json, or a bundle folder containing one)."""
    path = Path(path)
    if path.is_dir():
        path = path / "manifest.json"
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ManifestError(
            f"{path}: no manifest.json; a bundle folder is written by `musicbox quantize`"
        ) from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ManifestError(f"{path}: not valid JSON ({exc}); rebuild it with `musicbox quantize`") from exc
    return parse_manifest(data, source=str(path))


def parse_manifest(data: Any, source: str = "manifest.json") -> Manifest:
    """Validate a decoded JSON value as a manifest; ``source`` names it in errors."""
    if not isinstance(data, dict):
        _fail(source, "$", "must be a JSON object")
    version = data.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS or isinstance(version, bool):
        _fail(
            source,
            "$.format_version",
            f"is {version!r}; this musicbox reads format_version {SUPPORTED_FORMAT_VERSIONS}. "
            "Rebuild the bundle with this version's `musicbox quantize` or upgrade musicbox",
        )
    manifest = _parse(Manifest, data, "$", source)
    _check_semantics(manifest, source)
    return manifest


def _fail(source: str, path: str, problem: str) -> typing.NoReturn:
    raise ManifestError(f"{source}: {path} {problem}")


def _type_name(tp) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    return _HINTS[cls]


def _parse(tp, value, path: str, source: str):
    """Convert ``value`` to type ``tp`` (a dataclass, scalar, tuple, dict, union or Any) or fail."""
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        return _parse_dataclass(tp, value, path, source)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return _parse_union(tp, value, path, source)
    if origin is tuple:
        return _parse_tuple(tp, value, path, source)
    if origin is dict:
        return _parse_dict(tp, value, path, source)
    return _parse_scalar(tp, value, path, source)


def _parse_dataclass(cls, value, path: str, source: str):
    hints = _hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    if not isinstance(value, dict):
        _fail(source, path, f"must be an object with fields {', '.join(fields)}")
    unknown = sorted(set(value) - set(fields))
    if unknown:
        _fail(source, f"{path}.{unknown[0]}", f"is not a known field; allowed here: {', '.join(fields)}")
    kwargs = {}
    for name, f in fields.items():
        if name not in value:
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if has_default:
                continue
            _fail(source, f"{path}.{name}", f"is missing (required, {_type_name(hints[name])})")
        kwargs[name] = _parse(hints[name], value[name], f"{path}.{name}", source)
    return cls(**kwargs)


def _parse_union(tp, value, path: str, source: str):
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    errors = []
    for arg in args:
        if arg is type(None):
            continue
        try:
            return _parse(arg, value, path, source)
        except ManifestError as exc:
            errors.append(exc)
    if len(errors) == 1:
        raise errors[0]
    allowed = " or ".join(_type_name(a) if a is not type(None) else "null" for a in args)
    _fail(source, path, f"is {value!r}; allowed: {allowed}")


def _parse_tuple(tp, value, path: str, source: str):
    (item, *_rest) = typing.get_args(tp)
    if not isinstance(value, list):
        _fail(source, path, f"must be a list of {_type_name(item)}")
    return tuple(_parse(item, v, f"{path}[{i}]", source) for i, v in enumerate(value))


_DICT_KEYS = {"$.variants": PRECISIONS}
"""Objects keyed by names from a fixed set (other dicts, like ``validation``, are free-form)."""


def _parse_dict(tp, value, path: str, source: str):
    _key, item = typing.get_args(tp)
    if not isinstance(value, dict):
        _fail(source, path, "must be an object")
    allowed = _DICT_KEYS.get(path, ())
    unknown = sorted(set(value) - set(allowed)) if allowed else []
    if unknown:
        _fail(source, f"{path}.{unknown[0]}", f"is not a known field; allowed here: {', '.join(allowed)}")
    return {k: _parse(item, v, f"{path}.{k}", source) for k, v in value.items()}


def _parse_scalar(tp, value, path: str, source: str):
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp in (str, bool) and isinstance(value, tp):
        return value
    _fail(source, path, f"is {value!r} ({type(value).__name__}); must be {_type_name(tp)}")


# ----------------------------------------------------------------------------------------------------
# Cross-field checks: what the type system cannot say.


def _check_semantics(m: Manifest, source: str) -> None:
    _check_representation(m.representation, source)
    _check_sampler(m.sampler, source)
    _check_controls(m.controls, len(m.representation.tracks), source)
    _check_variants(m.variants, source)


def _require(ok: bool, source: str, path: str, problem: str) -> None:
    if not ok:
        _fail(source, path, problem)


def _check_representation(r: RepresentationInfo, source: str) -> None:
    for name in ("steps_per_bar", "n_pitches", "latent_frames", "latent_dim"):
        _require(getattr(r, name) > 0, source, f"$.representation.{name}", "must be > 0")
    _require(len(r.tracks) > 0, source, "$.representation.tracks", "must name at least one track")
    _require(
        0 <= r.pitch_low <= 127 - r.n_pitches + 1,
        source,
        "$.representation.pitch_low",
        "must keep the pitch range within MIDI 0..127",
    )
    _require(r.context_bars >= 0, source, "$.representation.context_bars", "must be >= 0")
    _require(r.tonic is None or 0 <= r.tonic < 12, source, "$.representation.tonic", "must be 0..11 or null")


def _check_sampler(s: SamplerInfo, source: str) -> None:
    _require(s.kind in SAMPLERS, source, "$.sampler.kind", f"is {s.kind!r}; allowed: {', '.join(SAMPLERS)}")
    _require(
        s.schedule in SCHEDULES,
        source,
        "$.sampler.schedule",
        f"is {s.schedule!r}; allowed: {', '.join(SCHEDULES)}",
    )
    _require(s.steps >= 1, source, "$.sampler.steps", "must be >= 1")
    _require(s.shift > 0, source, "$.sampler.shift", "must be > 0")
    _require(s.guidance >= 0, source, "$.sampler.guidance", "must be >= 0 (1 = no guidance)")
    _require(0 < s.threshold < 1, source, "$.sampler.threshold", "must be in (0, 1)")


def _check_controls(c: ControlsInfo, n_tracks: int, source: str) -> None:
    a = c.attrs
    _require(a.names == ATTRS, source, "$.controls.attrs.names", f"must be {list(ATTRS)} (features.ATTRS)")
    for name in ("mean", "std"):
        _require(
            len(getattr(a, name)) == len(a.names),
            source,
            f"$.controls.attrs.{name}",
            f"must have {len(a.names)} values, one per attribute",
        )
    _require(all(s > 0 for s in a.std), source, "$.controls.attrs.std", "must be > 0 everywhere")
    t = c.tempo
    _require(0 < t.min_bpm < t.max_bpm, source, "$.controls.tempo", "needs 0 < min_bpm < max_bpm")
    _require(
        t.min_bpm <= t.default_bpm <= t.max_bpm,
        source,
        "$.controls.tempo.default_bpm",
        "must lie within min_bpm..max_bpm",
    )
    _require(len(c.styles) > 0, source, "$.controls.styles", "must list at least one style")
    names = [s.name for s in c.styles]
    _require(len(set(names)) == len(names), source, "$.controls.styles", f"has duplicate names: {names}")
    for i, s in enumerate(c.styles):
        _check_style(s, n_tracks, f"$.controls.styles[{i}]", source)


def _check_style(s: StyleInfo, n_tracks: int, path: str, source: str) -> None:
    _require(len(s.density) == 3, source, f"{path}.density", "must be 3 values: p10, p50, p90")
    _require(len(s.register) == 3, source, f"{path}.register", "must be 3 values: p10, p50, p90")
    arr = s.arrangement
    _require(
        len(arr.programs) == n_tracks and all(0 <= p <= 127 for p in arr.programs),
        source,
        f"{path}.arrangement.programs",
        f"must be {n_tracks} General MIDI programs 0..127",
    )
    _require(bool(arr.drums), source, f"{path}.arrangement.drums", 'must name a pattern family or "none"')
    _require(0.0 <= arr.swing <= 1.0, source, f"{path}.arrangement.swing", "must be in 0..1")
    _require(1 <= arr.velocity <= 127, source, f"{path}.arrangement.velocity", "must be in 1..127")


def _check_variants(variants: dict[str, Variant], source: str) -> None:
    _require(len(variants) > 0, source, "$.variants", f"must hold at least one of {', '.join(PRECISIONS)}")
    for name, v in variants.items():
        path = f"$.variants.{name}"
        _require(len(v.denoiser) > 0, source, f"{path}.denoiser", "must list at least one shard")
        stages = [("encoder", v.encoder), ("decoder", v.decoder)]
        stages += [(f"denoiser[{i}]", f) for i, f in enumerate(v.denoiser)]
        for stage, f in stages:
            _check_file(f, f"{path}.{stage}", source)


def _check_file(f: StageFile, path: str, source: str) -> None:
    _require(
        f.precision in PRECISIONS,
        source,
        f"{path}.precision",
        f"is {f.precision!r}; allowed: {', '.join(PRECISIONS)}",
    )
    _check_relpath(f.file, f"{path}.file", source)
    _check_sha(f.sha256, f"{path}.sha256", source)
    _require(f.bytes > 0, source, f"{path}.bytes", "must be > 0")
    for kind, specs in (("inputs", f.inputs), ("outputs", f.outputs)):
        _require(len(specs) > 0, source, f"{path}.{kind}", "must list at least one tensor")
        for i, t in enumerate(specs):
            _require(
                t.dtype in DTYPES,
                source,
                f"{path}.{kind}[{i}].dtype",
                f"is {t.dtype!r}; allowed: {', '.join(DTYPES)}",
            )
    if f.external_data is not None:
        e = f.external_data
        _check_relpath(e.file, f"{path}.external_data.file", source)
        _check_sha(e.sha256, f"{path}.external_data.sha256", source)
        _require(e.bytes > 0, source, f"{path}.external_data.bytes", "must be > 0")


def _check_relpath(rel: str, path: str, source: str) -> None:
    p = Path(rel)
    _require(
        bool(rel) and not p.is_absolute() and ".." not in p.parts,
        source,
        path,
        f"is {rel!r}; must be a path inside the bundle folder (relative, no '..')",
    )


def _check_sha(sha: str, path: str, source: str) -> None:
    ok = len(sha) == 64 and all(c in "0123456789abcdef" for c in sha)
    _require(ok, source, path, "must be 64 lowercase hex digits (sha256)")
