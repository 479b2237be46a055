"""``musicbox distill``: the teacher's guided rows as the runtime runs them, the student's checkpoint and
its resumable run (tiny model, random notes: seconds)."""

from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from musicbox.model.checkpoint import load_checkpoint  # noqa: E402
from musicbox.model.distill import (  # noqa: E402
    Distiller,
    DistillSettings,
    condition_weights,
    distill,
    quick_settings,
    step_levels,
)
from musicbox.runtime.conditioning import conditioning_feeds  # noqa: E402
from musicbox.runtime.controls import Controls  # noqa: E402
from musicbox.runtime.manifest import SamplerInfo, parse_table  # noqa: E402
from musicbox.runtime.meter import METERS  # noqa: E402
from musicbox.runtime.pianoroll import KEY_SHIFTS  # noqa: E402
from musicbox.runtime.sampling import cfg_velocity  # noqa: E402
from quantize.tables import read_tables  # noqa: E402
from tests.helpers.tiny_model import random_dataset, tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("teacher"))


def test_step_lengths_go_down_to_the_next_level_of_the_students_schedule():
    levels = np.array([1.0, 0.75, 0.5, 0.25, 0.0], np.float32)
    t = np.array([1.0, 0.75, 0.6, 0.25, 0.1], np.float32)
    np.testing.assert_allclose(step_levels(levels, t), [0.25, 0.25, 0.1, 0.25, 0.1], atol=1e-6)


@pytest.mark.parametrize(("meter", "style"), [("4/4", 0.0), ("3/4", 3.0), ("6/8", 3.0), ("3/4", 4.0)])
def test_the_teachers_velocity_is_the_guided_one_the_box_would_take(teacher, tmp_path, meter, style):
    """For a bar the box would write (its feeds from ``conditioning_feeds``), the teacher's velocity is
    ``cfg_velocity`` over the very rows the runtime runs (1, 2 or 3 of them)."""
    run = Distiller(random_dataset(), teacher, DistillSettings(bf16=False), tmp_path)
    sampler = parse_table(run.config["sampler"], SamplerInfo, "$.sampler", "test")
    from musicbox.runtime.manifest import ControlsInfo

    table = parse_table(run.config["controls"], ControlsInfo, "$.controls", "test")
    meters = tuple(run.config["representation"]["meters"])
    feeds = conditioning_feeds(Controls(style=style), table, sampler, meters, meter=METERS[meter])
    rows = len(feeds["style_w"])
    assert rows == {"4/4": 1, "6/8": 2}.get(meter, 3)  # 3/4 folk/celtic: the contrast-style row too
    dn = run.model.denoiser
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, dn.cfg.frames, dn.cfg.latent_dim, generator=g)
    t = torch.tensor([0.6])
    ctx = torch.randn(1, len(dn.cfg.context_lags) * dn.cfg.frames, dn.cfg.latent_dim, generator=g)
    mask = torch.ones(1, len(dn.cfg.context_lags))
    place = torch.zeros(1, dn.cfg.positions)
    cond = {k: torch.from_numpy(v) for k, v in feeds.items()}
    with torch.no_grad():
        v = dn(
            x.repeat(rows, 1, 1),
            t.repeat(rows),
            ctx.repeat(rows, 1, 1),
            mask.repeat(rows, 1),
            cond["style_w"],
            cond["attrs"],
            cond["attr_mask"],
            place.repeat(rows, 1),
            cond["meter"],
        ).numpy()
    scales = sampler.row_guidance(meter, table.styles[round(style)].name)
    expected = cfg_velocity(v[:1], [(v[i + 1 : i + 2], s) for i, s in enumerate(scales)])
    got = run.teacher.velocity(
        x,
        t,
        ctx,
        mask,
        cond["style_w"][:1],
        cond["attrs"][:1],
        cond["attr_mask"][:1],
        place,
        cond["meter"][:1],
    )
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4, atol=1e-5)
    if rows > 1:  # the guidance changes the velocity: the test would see a row left out
        assert np.abs(expected - v[:1]).max() > 1e-5  # > the tolerance above


def test_the_student_checkpoint_has_one_row_and_fewer_steps_and_says_what_it_folded_in(teacher, tmp_path):
    settings = quick_settings(DistillSettings(bf16=False))
    out = distill(random_dataset(), teacher, settings, tmp_path / "run", tmp_path / "student")
    model, config = load_checkpoint(out)
    _, teacher_config = load_checkpoint(teacher)
    sampler = read_tables(config).sampler  # the manifest's own reader takes it
    assert sampler.steps == 4 and sampler.max_batch == 1
    assert sampler.meter_guidance == {} and sampler.style_guidance == {}
    folded = sampler.folded
    assert folded is not None and folded.teacher_steps == teacher_config["sampler"]["steps"]
    assert folded.meter_guidance == teacher_config["sampler"]["meter_guidance"]
    assert folded.style_contrast == teacher_config["sampler"]["style_contrast"]
    figures = config["training"]["distill"]["against_teacher"]
    assert 0.0 <= figures["student_f1"] <= 1.0 and figures["bars"] > 0
    teacher_model, _ = load_checkpoint(teacher)
    changed = [
        not torch.equal(a, b)
        for a, b in zip(model.denoiser.parameters(), teacher_model.denoiser.parameters(), strict=True)
    ]
    assert any(changed)  # the student trained
    with pytest.raises(ValueError, match="already distilled"):
        Distiller(random_dataset(), out, settings, tmp_path / "again")


def test_a_finished_student_goes_on_from_where_it_ended(teacher, tmp_path):
    settings = quick_settings(DistillSettings(bf16=False))
    first = distill(random_dataset(), teacher, settings, tmp_path / "run", tmp_path / "student")
    earlier, _ = load_checkpoint(first)
    run = Distiller(random_dataset(), teacher, settings, tmp_path / "more", init=first)
    for a, b in zip(run.student.parameters(), earlier.denoiser.parameters(), strict=True):
        assert torch.equal(a, b)
    assert run.student_config()["training"]["distill"]["continued"]["from"] == str(first)
    with pytest.raises(ValueError, match="not a distilled checkpoint"):
        Distiller(random_dataset(), teacher, settings, tmp_path / "x", init=teacher)
    with pytest.raises(ValueError, match="5 teacher|into 5"):
        Distiller(random_dataset(), teacher, replace(settings, steps=5), tmp_path / "y", init=first)


def test_a_resumed_distillation_ends_where_an_uninterrupted_one_does(teacher, tmp_path):
    from rich.progress import Progress

    ds, settings = random_dataset(), quick_settings(DistillSettings(bf16=False))
    with Progress(disable=True) as progress:
        whole = Distiller(ds, teacher, settings, tmp_path)
        whole.train(progress)  # leaves the state of the last save in the run folder
        resumed = Distiller(ds, teacher, settings, tmp_path)
        resumed.train(progress)
    assert len(resumed.history) == settings.train_steps
    assert resumed.earlier_seconds > 0
    for a, b in zip(whole.student.parameters(), resumed.student.parameters(), strict=True):
        assert torch.equal(a, b)


def test_the_bars_a_batch_reads_are_encoded_as_training_encodes_them(teacher, tmp_path):
    from rich.progress import Progress

    from musicbox.runtime.pianoroll import KEY_SHIFTS, shift_to_c

    run = Distiller(random_dataset(), teacher, DistillSettings(bf16=False), tmp_path)
    with Progress(disable=True) as progress:
        latents, prev = run.encode(progress)
    bars = run.data.train_idx
    k = shift_to_c(run.data.ds.tonic[bars]) - KEY_SHIFTS[0]
    scale = float(run.model.autoencoder.latent_scale)
    for shift in np.unique(k):
        with torch.no_grad():
            full = run.data.encode_all(KEY_SHIFTS[shift]) * scale
        at = bars[k == shift]
        np.testing.assert_allclose(latents[shift, at], full[at], rtol=1e-4, atol=1e-5)
        ctx = prev[at][prev[at] >= 0]
        np.testing.assert_allclose(latents[shift, ctx], full[ctx], rtol=1e-4, atol=1e-5)
    assert np.abs(latents[k[0], bars[0]]).sum() > 0


def test_balanced_draws_weigh_each_mode_and_density_span_of_a_style_and_meter_alike():
    from types import SimpleNamespace

    # group 0: 6 major bars, 2 minor, all 4 onsets; group 1: 9 bars of 1 onset, 3 of 5, 3 of 9 (its ends)
    density = [4] * 8 + [1] * 9 + [5] * 3 + [9] * 3 + [3]
    mode = [1] * 6 + [-1] * 2 + [1] * 16
    attrs = np.zeros((len(density), 4), np.float32)
    attrs[:, 0], attrs[:, 1] = density, mode
    ds = SimpleNamespace(attrs=attrs)
    groups = [[np.arange(8), np.arange(8, 23)]]  # the last bar is in no group
    w = condition_weights(ds, groups, 1.0)
    assert w[:6].sum() == pytest.approx(w[6:8].sum())  # minor as often as major
    assert w[8:17].sum() == pytest.approx(w[17:20].sum()) == pytest.approx(w[20:23].sum())  # each span alike
    assert w[23] == 0.0
    np.testing.assert_allclose(condition_weights(ds, groups, 0.0)[:23], 1.0)  # power 0: as in the data


def test_a_balanced_run_draws_by_its_weights_and_asks_moods_between_the_ends(teacher, tmp_path):
    assert Distiller(random_dataset(), teacher, DistillSettings(bf16=False), tmp_path / "off").weights is None
    settings = DistillSettings(bf16=False, batch=64, balance=1.0, p_mid_mood=0.5)
    run = Distiller(random_dataset(), teacher, settings, tmp_path / "on")
    assert run.weights is not None and run.weights[run.data.train_idx].min() > 0
    dn = run.model.denoiser.cfg
    latents = np.zeros((len(KEY_SHIFTS), len(run.data.ds.rolls), dn.frames, dn.latent_dim), np.float32)
    prev = run.data.context_index()
    mode = run.batch(latents, prev)[3][3][:, 1].abs()
    assert ((mode > 0) & (mode < 1)).any()  # the mood knob's middle
    assert torch.all(run.batch(latents, prev, plain=True)[3][3][:, 1].abs() == 1)  # the data's modes
