"""runtime/manifest.py: the strict schema round-trips and every kind of mistake names file, path, fix."""

from __future__ import annotations

import copy
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from musicbox.errors import ManifestError
from musicbox.runtime.manifest import FIX, Manifest, load_manifest, parse_manifest
from tests.helpers.synthetic_bundle import build_bundle


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return build_bundle(tmp_path_factory.mktemp("bundle"), variants=("fp32", "int8_dynamic"))


@pytest.fixture(scope="module")
def data(bundle_dir) -> dict:
    return json.loads((bundle_dir / "manifest.json").read_text())


def test_round_trip_is_exact(bundle_dir):
    text = (bundle_dir / "manifest.json").read_text()
    manifest = load_manifest(bundle_dir)
    assert isinstance(manifest, Manifest)
    assert manifest.to_json() == text
    assert load_manifest(bundle_dir / "manifest.json") == manifest


def test_dump_writes_what_loads(bundle_dir, tmp_path):
    manifest = load_manifest(bundle_dir)
    written = manifest.dump(tmp_path)
    assert written == tmp_path / "manifest.json"
    assert load_manifest(written) == manifest


def test_accessors(bundle_dir):
    m = load_manifest(bundle_dir)
    assert m.controls.style_index("folk") == 1
    assert m.representation.pianoroll().n_pitches == 64
    v = m.variants["fp32"]
    assert v.files()[-1] is v.encoder and v.denoiser[0].input_names[0] == "x"
    with pytest.raises(ManifestError, match="chorale, folk, quartet"):
        m.controls.style_index("polka")


def _error(data: dict, tmp_path) -> str:
    path = tmp_path / "manifest.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ManifestError) as info:
        load_manifest(path)
    assert str(path) in str(info.value)
    return str(info.value)


def test_unknown_field_is_an_error(data, tmp_path):
    bad = copy.deepcopy(data)
    bad["sampler"]["eta"] = 0.0
    msg = _error(bad, tmp_path)
    assert "$.sampler.eta" in msg and "allowed here: kind, steps" in msg


def test_missing_field_is_an_error(data, tmp_path):
    bad = copy.deepcopy(data)
    del bad["variants"]["fp32"]["denoiser"][1]["sha256"]
    assert "$.variants.fp32.denoiser[1].sha256 is missing" in _error(bad, tmp_path)


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (lambda d: d["sampler"].__setitem__("steps", "8"), "$.sampler.steps"),
        (lambda d: d["sampler"].__setitem__("steps", True), "$.sampler.steps"),
        (lambda d: d["representation"].__setitem__("tracks", "melody"), "$.representation.tracks"),
        (
            lambda d: d["controls"]["styles"][0].__setitem__("density", {"4/4": [1, 2]}),
            "$.controls.styles[0].density",
        ),
        (lambda d: d["controls"]["attrs"].__setitem__("std", [1, 1, 0, 1]), "$.controls.attrs.std"),
        (lambda d: d["sampler"].__setitem__("kind", "dpm"), "$.sampler.kind"),
        (lambda d: d["variants"].__setitem__("fp16", d["variants"]["fp32"]), "$.variants.fp16"),
        (lambda d: d["variants"]["fp32"]["encoder"].__setitem__("file", "../x.onnx"), "encoder.file"),
        (lambda d: d["variants"]["fp32"]["encoder"].__setitem__("sha256", "abc"), "encoder.sha256"),
        (lambda d: d.__setitem__("model", []), "$.model"),
    ],
)
def test_wrong_values_name_their_path(data, tmp_path, edit, path):
    bad = copy.deepcopy(data)
    edit(bad)
    assert path in _error(bad, tmp_path)


def test_unknown_drum_family_names_the_known_ones(data, tmp_path):
    bad = copy.deepcopy(data)
    bad["controls"]["styles"][0]["arrangement"]["drums"] = "polka"
    msg = _error(bad, tmp_path)
    assert "$.controls.styles[0].arrangement.drums is 'polka'; allowed: none, folk, dance" in msg


def test_wrong_types_say_what_was_found_and_what_is_allowed(data, tmp_path):
    bad = copy.deepcopy(data)
    bad["sampler"]["steps"] = "8"
    assert "$.sampler.steps is '8' (str); must be int" in _error(bad, tmp_path)
    bad = copy.deepcopy(data)
    bad["variants"]["fp32"]["encoder"]["external_data"] = 3
    assert (
        "encoder.external_data is 3 (int); must be an object with fields file, sha256, bytes or null"
        in _error(bad, tmp_path)
    )


def test_a_checkpoint_table_is_read_by_the_same_reader():
    from musicbox.runtime.manifest import SamplerInfo, parse_table

    table = {"kind": "euler", "steps": 8, "schedule": "flow", "shift": 1, "guidance": 1, "threshold": 0.5}
    assert parse_table(table, SamplerInfo).shift == 1.0
    with pytest.raises(
        ManifestError, match=r"config.json: \$.sampler.eta is not a known field; allowed here: kind"
    ):
        parse_table({**table, "eta": 0}, SamplerInfo, "$.sampler", "config.json")


def test_unsupported_format_version(data, tmp_path):
    bad = dict(data, format_version=2)  # a denoiser without the meter input
    msg = _error(bad, tmp_path)
    assert "$.format_version" in msg and "(3,)" in msg and "musicbox quantize" in msg


def test_meters_are_checked(data, tmp_path):
    bad = json.loads(json.dumps(data))
    bad["representation"]["meters"] = ["4/4", "5/4"]
    assert "$.representation.meters" in _error(bad, tmp_path) and "5/4" in _error(bad, tmp_path)
    bad = json.loads(json.dumps(data))
    bad["controls"]["styles"][1]["meters"] = ["6/8", "7/8"]
    msg = _error(bad, tmp_path)
    assert "$.controls.styles[1].meters" in msg and "7/8" in msg
    bad = json.loads(json.dumps(data))
    bad["controls"]["styles"][1]["density"]["6/8"] = [1.0, 2.0, 3.0]  # folk plays 4/4 and 3/4
    msg = _error(bad, tmp_path)
    assert "$.controls.styles[1].density" in msg and "['4/4', '3/4']" in msg
    bad = json.loads(json.dumps(data))
    bad["sampler"]["meter_guidance"] = {"6/8": 2.0, "5/4": 2.0}
    msg = _error(bad, tmp_path)
    assert "$.sampler.meter_guidance names 5/4: not among" in msg
    bad["sampler"]["meter_guidance"] = {"6/8": -1.0}
    assert "$.sampler.meter_guidance.6/8 must be >= 0" in _error(bad, tmp_path)
    bad["sampler"]["meter_guidance"] = {"6/8": 2.0}
    bad["sampler"]["meter_contrast"] = {"6/8": "6/8"}
    assert "$.sampler.meter_contrast.6/8 is '6/8': must be another of" in _error(bad, tmp_path)
    bad["sampler"]["meter_contrast"] = {"5/4": "4/4"}
    assert "$.sampler.meter_contrast.5/4 names a meter not among" in _error(bad, tmp_path)
    bad["sampler"]["meter_contrast"] = {}
    bad["sampler"]["style_guidance"] = {"5/4": 2.0}
    assert "$.sampler.style_guidance.5/4 names a meter not among" in _error(bad, tmp_path)
    bad["sampler"]["style_guidance"] = {"6/8": 2.0}
    bad["sampler"]["style_contrast"] = {"folk": "folk"}
    assert "$.sampler.style_contrast.folk is 'folk': must be another of controls.styles" in _error(
        bad, tmp_path
    )
    bad["sampler"]["style_contrast"] = {"polka": "folk"}
    assert "$.sampler.style_contrast.polka names a style not among" in _error(bad, tmp_path)


def test_not_json_and_missing_file(tmp_path):
    path = tmp_path / "manifest.json"
    path.write_text("{not json")
    with pytest.raises(ManifestError, match="not valid JSON"):
        load_manifest(path)
    with pytest.raises(ManifestError, match="no manifest.json"):
        load_manifest(tmp_path / "elsewhere")


def _object_paths(value, path="$"):
    """JSON paths of every object in ``value`` except the free-form validation dict and the maps by meter or
    style (the styles' density tables, the sampler's meter and style guidance and contrast: an unknown
    name there is refused by name as well)."""
    if isinstance(value, dict):
        if path != "$.validation" and not path.endswith(
            (".density", ".meter_guidance", ".meter_contrast", ".style_guidance", ".style_contrast")
        ):
            yield path, value
            for k, v in value.items():
                yield from _object_paths(v, f"{path}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _object_paths(v, f"{path}[{i}]")


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_unknown_field_anywhere_is_named(data, hyp):
    bad = copy.deepcopy(data)
    paths = list(_object_paths(bad))
    path, obj = hyp.draw(st.sampled_from(paths))
    obj["zz_unknown"] = 1
    with pytest.raises(ManifestError, match=re.escape(f"{path}.zz_unknown is not a known field")):
        parse_manifest(bad)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["sampler"].__setitem__("steps", 0), "$.sampler.steps must be >= 1, not 0"),
        (
            lambda d: d["sampler"].__setitem__("threshold", 1.0),
            "$.sampler.threshold must be in (0, 1), not 1.0",
        ),
        (
            lambda d: d["sampler"].__setitem__("schedule", "karras"),
            "$.sampler.schedule is 'karras'; allowed: flow",
        ),
        (
            lambda d: d["representation"].__setitem__("tonic", 12),
            "$.representation.tonic must be 0..11 or null, not 12",
        ),
        (
            lambda d: d["representation"].__setitem__("meters", []),
            "$.representation.meters must list at least one",
        ),
        (
            lambda d: d["representation"].__setitem__("meters", ["4/4", "5/4"]),
            "$.representation.meters[1] is '5/4'; allowed: 4/4, 3/4, 6/8",
        ),
        (
            lambda d: d["controls"]["attrs"].__setitem__("std", [1, 1, 0, 1]),
            "$.controls.attrs.std[2] must be > 0 (a standard deviation), not 0",
        ),
        (
            lambda d: d["controls"]["styles"][0]["arrangement"].__setitem__("programs", [0, 200, 32]),
            "$.controls.styles[0].arrangement.programs[1] must be a General MIDI program 0..127, not 200",
        ),
        (
            lambda d: d["controls"]["styles"][0]["arrangement"].__setitem__("programs", [0, 48]),
            "$.controls.styles[0].arrangement.programs must be 3 General MIDI programs 0..127, one per track",
        ),
        (
            lambda d: d["controls"]["styles"][1].__setitem__("register", [60.0, 67.0]),
            "$.controls.styles[1].register must be 3 values: p10, p50, p90, not [60.0, 67.0]",
        ),
        (
            lambda d: d["controls"].__setitem__("styles", []),
            "$.controls.styles must list at least one style, not []",
        ),
        (
            lambda d: d["variants"]["fp32"]["encoder"].__setitem__("sha256", "a" * 64 + "\n"),
            "$.variants.fp32.encoder.sha256 must be 64 lowercase hex digits (sha256), not 'aaa",
        ),
        (
            lambda d: d["variants"]["fp32"]["decoder"].__setitem__("precision", "fp16"),
            "$.variants.fp32.decoder.precision is 'fp16'; allowed: fp32, int8, int8_dynamic",
        ),
        (
            lambda d: d["variants"]["fp32"]["encoder"]["inputs"][0].__setitem__("dtype", "complex64"),
            "$.variants.fp32.encoder.inputs[0].dtype is 'complex64'; allowed: float32, float16",
        ),
        (
            lambda d: d["variants"]["fp32"].__setitem__("denoiser", []),
            "$.variants.fp32.denoiser must list at least one shard",
        ),
        (
            lambda d: d.__setitem__("variants", {}),
            "$.variants must hold at least one of fp32, int8, int8_dynamic",
        ),
    ],
)
def test_a_value_its_type_refuses_names_the_path_the_rule_the_value_and_the_fix(
    data, tmp_path, edit, message
):
    bad = copy.deepcopy(data)
    edit(bad)
    msg = _error(bad, tmp_path)
    assert message in msg
    assert msg.endswith(FIX)  # what to do
