"""The one schema of a bundle's ``manifest.json`` (see docs/architecture.md, "Bundle").

The quantize tool writes a :class:`Manifest` with :meth:`Manifest.dump`; the device reads it with
:func:`load_manifest`. Reading is strict: a missing or unknown field, a value of the wrong type, an
unsupported ``format_version`` or an inconsistent table raises :class:`~musicbox.errors.ManifestError`
naming the file, the JSON path of the field (``$.variants.int8.denoiser[1].sha256``) and what is allowed.
Nothing here checks the files themselves (hashes, sizes): that is ``runtime/bundle.py``'s job.

The tables are frozen ``msgspec.Struct`` types, decoded by msgspec's strict typed conversion (unknown
fields rejected, no int/str/bool coercion). A field's own rule (a range, a length, one of some names, a
sha256's form) is a constraint of its type, ``Annotated[T, msgspec.Meta(..., description=...)]``, that
msgspec checks while decoding; the description is what an error says about a value that breaks it.
:func:`parse_manifest` rewrites msgspec's errors into the project's form (what, where, what is allowed)
and then checks what types cannot say (cross-field consistency: lengths that must agree, names that must
be another table's). The runtime, the quantize tool (``quantize/tables.py`` reads the checkpoint's
tables with :func:`parse_table`) and the renderer all read these types and nothing else.

All sequences are stored as tuples so that every table is frozen and comparable; ``to_json`` writes
them back as JSON lists, so ``load_manifest(p).to_json()`` reproduces the file's content.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import msgspec

from musicbox.errors import ManifestError
from musicbox.precision import PRECISIONS, Precision
from musicbox.runtime.arrangement import DRUM_PATTERNS
from musicbox.runtime.features import ATTRS
from musicbox.runtime.form import FormSpec
from musicbox.runtime.meter import METERS
from musicbox.runtime.pianoroll import Representation
from musicbox.runtime.sampling import SAMPLERS

FORMAT_VERSION = 3
"""3: the denoiser reads the bar's meter (``meter`` input, ``representation.meters``) and each style names
its meters. 2: its context is the bars at ``representation.context_lags`` and it reads the bar's place
(``place`` input, ``representation.positions``). Bundles of formats 1 and 2 are refused (retrain or
re-quantize: their denoisers have no meter input)."""
SUPPORTED_FORMAT_VERSIONS = (3,)
DTYPES = ("float32", "float16", "int64", "int32", "uint8", "int8", "bool")
SCHEDULES = ("flow",)
FIX = "Rebuild the bundle with `musicbox quantize`, or install a sound one with `musicbox bundle install`"
"""What to do about a manifest that does not read (ends every :func:`parse_manifest` error)."""


def one_of(names: Iterable[str], note: str = "") -> msgspec.Meta:
    """The constraint of a string that must be one of ``names`` (``note`` ends the error's list)."""
    names = tuple(names)
    pattern = r"\A(?:" + "|".join(map(re.escape, names)) + r")\Z"
    return msgspec.Meta(pattern=pattern, description=f"allowed: {', '.join(names)}{note}")


Positive = Annotated[int, msgspec.Meta(gt=0, description="must be > 0")]
Bytes = Annotated[int, msgspec.Meta(gt=0, description="must be > 0 (bytes)")]
Sha256 = Annotated[
    str, msgspec.Meta(pattern=r"\A[0-9a-f]{64}\Z", description="must be 64 lowercase hex digits (sha256)")
]
Guidance = Annotated[float, msgspec.Meta(ge=0, description="must be >= 0 (1 = no guidance)")]
BPM = Annotated[float, msgspec.Meta(gt=0, description="must be > 0 (BPM)")]
Program = Annotated[int, msgspec.Meta(ge=0, le=127, description="must be a General MIDI program 0..127")]


class Table(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Base of every manifest table: frozen, comparable, strict about its fields (subclasses repeat
    ``frozen=True``, which msgspec inherits anyway, so that type checkers see it too)."""


class Provenance(Table, frozen=True):
    """Where the weights come from: ``checkpoint_sha256`` of model.safetensors, the ``dataset`` cache
    id, and when it was ``trained`` (ISO 8601)."""

    checkpoint_sha256: str
    dataset: str
    trained: str


class ModelInfo(Table, frozen=True):
    """The model's ``name``, its number of ``parameters`` (all stages) and its provenance."""

    name: str
    parameters: int
    provenance: Provenance


class RepresentationInfo(Table, frozen=True):
    """Grid, pitch range and latent geometry.

    steps_per_bar: grid cells per bar (16). tracks: part names, melody first. pitch_low: MIDI number of
    pitch row 0. n_pitches: pitch rows. latent_frames x latent_dim: one bar's latent ``[F, D]``.
    context_lags: how many bars back each bar the denoiser sees is, oldest first (its ``context`` input
    is ``[B, len(context_lags) * F, D]``; the generator keeps ``max(context_lags)`` bars).
    positions: the bar positions in a section its ``place`` input one-hot encodes (``[B, positions]``).
    meters: the meters its ``meter`` input one-hot encodes, in column order (``[B, len(meters)]``; keys of
    ``runtime.meter.METERS``); a bar shorter than ``steps_per_bar`` fills its first steps.
    tonic: the pitch class (0 = C) the model writes in when it was trained key-normalized, so the box
    transposes what it plays into the listener's key; null when the model writes in any key.
    """

    steps_per_bar: Positive
    tracks: Annotated[tuple[str, ...], msgspec.Meta(min_length=1, description="must name at least one track")]
    pitch_low: int
    n_pitches: Positive
    latent_frames: Positive
    latent_dim: Positive
    context_lags: tuple[int, ...]
    positions: Positive
    meters: Annotated[
        tuple[Annotated[str, one_of(METERS)], ...],
        msgspec.Meta(min_length=1, description="must list at least one meter"),
    ]
    tonic: Annotated[int, msgspec.Meta(ge=0, le=11, description="must be 0..11 or null")] | None = None

    def pianoroll(self) -> Representation:
        """The :class:`~musicbox.runtime.pianoroll.Representation` of this grid."""
        return Representation(self.steps_per_bar, self.tracks, self.pitch_low, self.n_pitches)


class FoldedGuidance(Table, frozen=True):
    """The guidance a distilled denoiser gives in its one conditional row (``musicbox distill``): the
    teacher's ``meter_guidance``, ``meter_contrast``, ``style_guidance`` and ``style_contrast`` (as in
    :class:`SamplerInfo`) and the teacher's sampler ``teacher_steps``, which the student's fewer steps
    stand for."""

    teacher_steps: Annotated[int, msgspec.Meta(ge=1, description="must be >= 1")]
    meter_guidance: dict[str, Guidance] = msgspec.field(default_factory=dict)
    meter_contrast: dict[str, str] = msgspec.field(default_factory=dict)
    style_guidance: dict[str, Guidance] = msgspec.field(default_factory=dict)
    style_contrast: dict[str, str] = msgspec.field(default_factory=dict)


class SamplerInfo(Table, frozen=True):
    """How the device samples a bar's latent.

    kind: a key of ``sampling.SAMPLERS`` (``euler``, ``heun``). steps: sampler steps (model calls for
    euler). schedule: ``flow`` (``sampling.get_sigmas_flow``). shift: SD3 timestep shift (1 = none).
    guidance: classifier-free guidance scale (1 = conditional only, no unconditional pass).
    threshold: note probability above which a cell sounds (``pianoroll.planes_to_roll``).
    meter_guidance: guidance scale of the meter alone, per meter name: each call for a bar of that meter
    also runs the bar with its contrast meter and steers away from it (a meter not listed: 1, off).
    meter_contrast: per meter name, the meter its guidance steers away from (a 6/8 bar from 3/4: both
    fill 12 sixteenths); a meter not listed steers away from meter unknown (``meter`` all zeros).
    style_guidance: guidance scale of the style alone, per meter name: a call for a bar of that meter whose
    leading style (the larger blend weight) ``style_contrast`` lists also runs the bar with that style's
    contrast style and steers away from it (a meter not listed: 1, off).
    style_contrast: per style name, the style its style guidance steers away from (folk's waltzes from
    celtic's: the eval's classifier hears one as the other).
    folded: for a distilled denoiser, the guidance its one row already gives (then no guidance rows run).
    """

    kind: Annotated[str, one_of(SAMPLERS)]
    steps: Annotated[int, msgspec.Meta(ge=1, description="must be >= 1")]
    schedule: Annotated[str, one_of(SCHEDULES)]
    shift: Annotated[float, msgspec.Meta(gt=0, description="must be > 0")]
    guidance: Guidance
    threshold: Annotated[float, msgspec.Meta(gt=0, lt=1, description="must be in (0, 1)")]
    meter_guidance: dict[str, Guidance] = msgspec.field(default_factory=dict)
    meter_contrast: dict[str, str] = msgspec.field(default_factory=dict)
    style_guidance: dict[str, Guidance] = msgspec.field(default_factory=dict)
    style_contrast: dict[str, str] = msgspec.field(default_factory=dict)
    folded: FoldedGuidance | None = None

    @property
    def guided(self) -> bool:
        """Whether each denoiser call runs the unconditional row besides the conditional one."""
        return self.guidance != 1.0

    def meter_guided(self, meter: str) -> bool:
        """Whether a call for a bar of ``meter`` runs the contrast-meter row besides the conditional one."""
        return self.meter_guidance.get(meter, 1.0) != 1.0

    def contrast_style(self, meter: str, style: str) -> str | None:
        """The style a bar of ``meter`` led by ``style`` is steered away from, or None (no style row)."""
        return self.style_contrast.get(style) if self.style_guidance.get(meter, 1.0) != 1.0 else None

    def row_guidance(self, meter: str, style: str) -> tuple[float, ...]:
        """The guidance scale of each row after the conditional one in a call for a bar of ``meter`` led by
        ``style``: the unconditional row's when :attr:`guided`, the contrast-meter row's when
        :meth:`meter_guided`, then the contrast-style row's when :meth:`contrast_style` names one."""
        style_g = self.style_guidance.get(meter, 1.0) if self.contrast_style(meter, style) else 1.0
        return tuple(g for g in (self.guidance, self.meter_guidance.get(meter, 1.0), style_g) if g != 1.0)

    @property
    def max_batch(self) -> int:
        """Rows of the largest denoiser call: the conditional one and each guidance row."""
        styled = any(g != 1.0 for g in self.style_guidance.values()) and bool(self.style_contrast)
        return 1 + self.guided + any(map(self.meter_guided, self.meter_guidance)) + styled


class AttrsInfo(Table, frozen=True):
    """Normalization of the conditioning attributes: ``names`` (= ``features.ATTRS``), per-attribute
    ``mean`` and ``std`` of the raw values; the model sees ``(raw - mean) / std``."""

    names: tuple[str, ...]
    mean: tuple[float, ...]
    std: tuple[Annotated[float, msgspec.Meta(gt=0, description="must be > 0 (a standard deviation)")], ...]


class TempoInfo(Table, frozen=True):
    """The tempo knob's range in BPM; ``min_bpm`` maps to energy 0, ``max_bpm`` to energy 1."""

    min_bpm: BPM
    max_bpm: BPM
    default_bpm: BPM


class MoodInfo(Table, frozen=True):
    """``density_gain``: raw density is multiplied by ``1 + density_gain * mood`` (mood in -1..1)."""

    density_gain: float


class Arrangement(Table, frozen=True):
    """How a style is played: General MIDI ``programs`` per track (0..127, melody first), the ``drums``
    pattern family (a key of ``arrangement.DRUM_PATTERNS``, ``"none"`` for no drums), ``swing`` (0
    straight .. 1 full triplet swing: each off-beat 16th is delayed by ``swing / 3`` of a step) and the
    base MIDI ``velocity`` (1..127, before mood, tempo, accents and track balance)."""

    programs: tuple[Program, ...]
    drums: Annotated[str, one_of(DRUM_PATTERNS, " (runtime/arrangement.py)")]
    swing: Annotated[float, msgspec.Meta(ge=0, le=1, description="must be in 0..1")]
    velocity: Annotated[int, msgspec.Meta(ge=1, le=127, description="must be in 1..127")]


class StyleInfo(Table, frozen=True):
    """One style detent of the knob.

    name: short id (``chorale``). label: what a person reads. density: per meter of ``meters``, onsets
    per bar at energy 0 / 0.5 / 1 (shipped: p25, p50, p90 of the corpus style's bars in that meter,
    ``model/styles.py``). register: mean melody MIDI pitch at mood -1 / 0 / +1 (p10, p50, p90).
    polyphony: typical sounding notes per busy step. meters: the meters it plays (of
    ``representation.meters``), the first its own (a reel's 4/4 before a jig's 6/8): the meter
    control steps through them. form: how its tunes are built, sections and phrases
    (``runtime/form.py``; default AABB in 8-bar strains).
    """

    name: str
    label: str
    density: dict[str, tuple[float, ...]]
    register: Annotated[
        tuple[float, ...],
        msgspec.Meta(min_length=3, max_length=3, description="must be 3 values: p10, p50, p90"),
    ]
    polyphony: float
    arrangement: Arrangement
    meters: tuple[str, ...] = ("4/4",)
    form: FormSpec = FormSpec()


class ControlsInfo(Table, frozen=True):
    """The knob tables: attribute normalization, tempo range, mood gains and the styles (knob order)."""

    attrs: AttrsInfo
    tempo: TempoInfo
    mood: MoodInfo
    styles: Annotated[
        tuple[StyleInfo, ...], msgspec.Meta(min_length=1, description="must list at least one style")
    ]

    def style_index(self, name: str) -> int:
        """Index of the style called ``name``; ``ManifestError`` listing the names if there is none."""
        names = [s.name for s in self.styles]
        if name not in names:
            raise ManifestError(f"no style named {name!r} in this bundle; styles: {', '.join(names)}")
        return names.index(name)


class TensorSpec(Table, frozen=True):
    """One ONNX input or output: ``name``, ``dtype`` (one of ``DTYPES``) and ``shape``, whose entries
    are sizes or symbolic names (``"B"`` for the batch)."""

    name: str
    dtype: Annotated[str, one_of(DTYPES)]
    shape: tuple[int | str, ...]


class ExternalData(Table, frozen=True):
    """An ONNX external-weights file next to its model: path relative to the bundle, sha256, bytes."""

    file: str
    sha256: Sha256
    bytes: Bytes


class StageFile(Table, frozen=True):
    """One ONNX file of a stage: its path relative to the bundle, sha256 (hex), size in bytes,
    ``precision`` (one of ``PRECISIONS``), input/output specs and optional external weights."""

    file: str
    sha256: Sha256
    bytes: Bytes
    precision: Annotated[str, one_of(PRECISIONS)]
    inputs: Annotated[
        tuple[TensorSpec, ...], msgspec.Meta(min_length=1, description="must list at least one tensor")
    ]
    outputs: Annotated[
        tuple[TensorSpec, ...], msgspec.Meta(min_length=1, description="must list at least one tensor")
    ]
    external_data: ExternalData | None = None

    @property
    def input_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.inputs)

    @property
    def output_names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.outputs)


class Variant(Table, frozen=True):
    """The files of one precision: ``encoder``, ``decoder`` and the ``denoiser`` shards in order."""

    encoder: StageFile
    decoder: StageFile
    denoiser: Annotated[
        tuple[StageFile, ...], msgspec.Meta(min_length=1, description="must list at least one shard")
    ]

    def files(self) -> tuple[StageFile, ...]:
        """Every stage file, in the order a bar needs them (denoiser shards, decoder, encoder)."""
        return (*self.denoiser, self.decoder, self.encoder)


class Manifest(Table, frozen=True):
    """A bundle's manifest.json. ``variants`` maps a precision name to its files; ``validation`` is the
    quantize tool's report of this bundle (free-form JSON: agreement, sizes, latencies)."""

    format_version: int
    model: ModelInfo
    representation: RepresentationInfo
    sampler: SamplerInfo
    controls: ControlsInfo
    variants: Annotated[
        dict[Precision, Variant],
        msgspec.Meta(min_length=1, description=f"must hold at least one of {', '.join(PRECISIONS)}"),
    ]
    validation: dict[str, Any]

    def variant(self, precision: str) -> Variant:
        """The files of ``precision`` (``KeyError`` if this bundle has no such variant)."""
        return self.variants[typing.cast(Precision, precision)]

    def to_json(self) -> str:
        """The manifest as pretty-printed JSON text (sorted as declared, 2-space indent)."""
        return json.dumps(msgspec.to_builtins(self), indent=2) + "\n"

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
# Strict parsing: JSON value + table type -> instance, with JSON paths in every error.


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
    try:
        manifest = parse_table(data, Manifest, source=source)
        _check_semantics(manifest, source)
    except ManifestError as exc:
        raise ManifestError(f"{exc}. {FIX}") from None
    return manifest


T = TypeVar("T")


def parse_table(data: Any, tp: type[T], path: str = "$", source: str = "manifest.json") -> T:
    """Decode one table (``tp``: ``Manifest`` or any of its parts) from a decoded JSON value, strictly;
    ``ManifestError`` naming ``source``, the JSON path (``path`` is where ``data`` sits) and what is
    allowed. Types and their constraints only: :func:`parse_manifest` adds the cross-field checks."""
    try:
        return msgspec.convert(data, tp)
    except msgspec.ValidationError as exc:
        message = str(exc)
    if "[...]" in message:  # inside a dict's value, whose key msgspec does not name: find that value
        rel = message.split("`$", 1)[1].split("[...]", 1)[0]
        item = typing.get_args(_bare(_type_at(tp, rel)))[-1]
        for key, value in _value_at(data, rel).items():
            parse_table(value, item, f"{path}{rel}.{key}", source)
    _fail(source, *_explain(message, tp, data, path))


def _fail(source: str, path: str, problem: str) -> typing.NoReturn:
    raise ManifestError(f"{source}: {path} {problem}")


_ERROR = re.compile(r"^(?P<what>.*?)(?: - at `(?P<key>key` in `)?(?P<path>\$[^`]*)`)?$", re.S)


def _explain(message: str, tp: Any, data: Any, base: str) -> tuple[str, str]:
    """msgspec's ``message`` about ``data`` (decoded as ``tp``) -> (JSON path below ``base``, problem)."""
    m = _ERROR.match(message)
    assert m is not None  # every part of the pattern is optional
    what, rel = m["what"], (m["path"] or "$")[1:]
    path, declared = base + rel, _type_at(tp, rel)
    at = _bare(declared)
    if found := re.match(r"Object contains unknown field `(.*)`", what):
        return f"{path}.{found[1]}", f"is not a known field; allowed here: {', '.join(at.__struct_fields__)}"
    if found := re.match(r"Object missing required field `(.*)`", what):
        hint = typing.get_type_hints(at)[found[1]]
        return f"{path}.{found[1]}", f"is missing (required, {_type_name(hint)})"
    if m["key"] and (found := re.match(r"Invalid enum value '(.*)'", what)):
        allowed = typing.get_args(typing.get_args(at)[0])
        return f"{path}.{found[1]}", f"is not a known field; allowed here: {', '.join(allowed)}"
    if found := re.match(r"Expected `(.*)`, got `(.*)`", what):
        return path, f"is {_value_at(data, rel)!r} ({found[2]}); must be {_expected(declared)}"
    rule = _constraint(declared)
    if rule is not None and rule.description:  # a value its type's constraint refuses
        value = _value_at(data, rel)
        if rule.description.startswith("allowed"):
            return path, f"is {value!r}; {rule.description}"
        return path, f"{rule.description}, not {value!r}"
    return path, what


def _steps(rel: str) -> list[str | int]:
    """``.a.b[2].c`` -> ``['a', 'b', 2, 'c']``."""
    return [int(i) if i else k for k, i in re.findall(r"\.([^.\[]+)|\[(\d+)\]", rel)]


def _type_at(tp: Any, rel: str) -> Any:
    """The declared type at JSON path ``rel`` below a value of type ``tp`` (with its constraint)."""
    for step in _steps(rel):
        tp = _bare(tp)
        if isinstance(step, int):
            tp = typing.get_args(tp)[0]
        elif isinstance(tp, type) and issubclass(tp, msgspec.Struct):
            tp = typing.get_type_hints(tp, include_extras=True)[step]
        else:
            tp = typing.get_args(tp)[-1]  # a dict's value type
    return tp


def _unwrap(tp: Any) -> Any:
    """``X | None`` -> ``X``."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if len(args) == 1 and type(None) in typing.get_args(tp) else tp


def _bare(tp: Any) -> Any:
    """The type itself: ``X | None`` and ``Annotated[X, constraint]`` -> ``X``."""
    tp = _unwrap(tp)
    return typing.get_args(tp)[0] if typing.get_origin(tp) is Annotated else tp


def _constraint(tp: Any) -> msgspec.Meta | None:
    """The ``msgspec.Meta`` of an ``Annotated`` type (``X | None`` looked through); None without one."""
    tp = _unwrap(tp)
    if typing.get_origin(tp) is not Annotated:
        return None
    return next((m for m in tp.__metadata__ if isinstance(m, msgspec.Meta)), None)


def _value_at(data: Any, rel: str) -> Any:
    for step in _steps(rel):
        data = data[step]
    return data


def _expected(tp: Any) -> str:
    """What a value of type ``tp`` looks like in JSON, for messages."""
    at = _bare(tp)
    if isinstance(at, type) and issubclass(at, msgspec.Struct):
        what = f"an object with fields {', '.join(at.__struct_fields__)}"
    elif typing.get_origin(at) is tuple:
        what = f"a list of {_type_name(typing.get_args(at)[0])}"
    else:
        what = _type_name(at)
    return what + (" or null" if _unwrap(tp) is not tp else "")


def _type_name(tp) -> str:
    if typing.get_origin(tp) is Annotated:
        tp = typing.get_args(tp)[0]
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("musicbox.runtime.manifest.", "")


# ----------------------------------------------------------------------------------------------------
# Cross-field checks: what the type system cannot say.


def _check_semantics(m: Manifest, source: str) -> None:
    _check_representation(m.representation, source)
    _check_sampler(m.sampler, m.representation.meters, tuple(st.name for st in m.controls.styles), source)
    _check_controls(m.controls, len(m.representation.tracks), m.representation.meters, source)
    _check_variants(m.variants, source)


def _require(ok: bool, source: str, path: str, problem: str) -> None:
    if not ok:
        _fail(source, path, problem)


def _check_representation(r: RepresentationInfo, source: str) -> None:
    _require(
        0 <= r.pitch_low <= 127 - r.n_pitches + 1,
        source,
        "$.representation.pitch_low",
        "must keep the pitch range within MIDI 0..127",
    )
    lags = r.context_lags
    _require(
        all(k > 0 for k in lags) and list(lags) == sorted(set(lags), reverse=True),
        source,
        "$.representation.context_lags",
        "must be distinct bar counts > 0, farthest first (e.g. [8, 4, 2, 1])",
    )


def _check_sampler(s: SamplerInfo, meters: tuple[str, ...], styles: tuple[str, ...], source: str) -> None:
    unknown = sorted(set(s.meter_guidance) - set(meters))
    _require(
        not unknown,
        source,
        "$.sampler.meter_guidance",
        f"names {', '.join(unknown)}: not among representation.meters {list(meters)}",
    )
    for name, other in s.meter_contrast.items():
        where = f"$.sampler.meter_contrast.{name}"
        _require(
            name in meters, source, where, f"names a meter not among representation.meters {list(meters)}"
        )
        _require(
            other in meters and other != name,
            source,
            where,
            f"is {other!r}: must be another of representation.meters {list(meters)}",
        )
    for name in s.style_guidance:
        where = f"$.sampler.style_guidance.{name}"
        _require(
            name in meters, source, where, f"names a meter not among representation.meters {list(meters)}"
        )
    for name, other in s.style_contrast.items():
        where = f"$.sampler.style_contrast.{name}"
        _require(name in styles, source, where, f"names a style not among controls.styles {list(styles)}")
        _require(
            other in styles and other != name,
            source,
            where,
            f"is {other!r}: must be another of controls.styles {list(styles)}",
        )


def _check_controls(c: ControlsInfo, n_tracks: int, meters: tuple[str, ...], source: str) -> None:
    a = c.attrs
    _require(a.names == ATTRS, source, "$.controls.attrs.names", f"must be {list(ATTRS)} (features.ATTRS)")
    for name in ("mean", "std"):
        _require(
            len(getattr(a, name)) == len(a.names),
            source,
            f"$.controls.attrs.{name}",
            f"must have {len(a.names)} values, one per attribute",
        )
    t = c.tempo
    _require(t.min_bpm < t.max_bpm, source, "$.controls.tempo", "needs min_bpm < max_bpm")
    _require(
        t.min_bpm <= t.default_bpm <= t.max_bpm,
        source,
        "$.controls.tempo.default_bpm",
        "must lie within min_bpm..max_bpm",
    )
    names = [s.name for s in c.styles]
    _require(len(set(names)) == len(names), source, "$.controls.styles", f"has duplicate names: {names}")
    for i, s in enumerate(c.styles):
        _check_style(s, n_tracks, meters, f"$.controls.styles[{i}]", source)


def _check_style(s: StyleInfo, n_tracks: int, meters: tuple[str, ...], path: str, source: str) -> None:
    _require(
        bool(s.meters) and set(s.meters) <= set(meters),
        source,
        f"{path}.meters",
        f"is {list(s.meters)}; must list some of the model's meters {list(meters)} ($.representation.meters)",
    )
    _require(
        set(s.density) == set(s.meters) and all(len(q) == 3 for q in s.density.values()),
        source,
        f"{path}.density",
        f"must give 3 values (energy 0, 0.5, 1) for each of the style's meters {list(s.meters)}",
    )
    _require(
        len(s.arrangement.programs) == n_tracks,
        source,
        f"{path}.arrangement.programs",
        f"must be {n_tracks} General MIDI programs 0..127, one per track",
    )


def _check_variants(variants: dict[Precision, Variant], source: str) -> None:
    for name, v in variants.items():
        path = f"$.variants.{name}"
        stages = [("encoder", v.encoder), ("decoder", v.decoder)]
        stages += [(f"denoiser[{i}]", f) for i, f in enumerate(v.denoiser)]
        for stage, f in stages:
            _check_relpath(f.file, f"{path}.{stage}.file", source)
            if f.external_data is not None:
                _check_relpath(f.external_data.file, f"{path}.{stage}.external_data.file", source)


def _check_relpath(rel: str, path: str, source: str) -> None:
    p = Path(rel)
    _require(
        bool(rel) and not p.is_absolute() and ".." not in p.parts,
        source,
        path,
        f"is {rel!r}; must be a path inside the bundle folder (relative, no '..')",
    )
