"""The PyTorch model, its checkpoint and training loop (tiny sizes, random notes: seconds)."""

import json
from dataclasses import replace

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from safetensors.torch import load_file, save_file  # noqa: E402

from musicbox.errors import CheckpointError  # noqa: E402
from musicbox.model.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402
from musicbox.model.nets import AutoencoderConfig, DenoiserConfig, Embed, MusicModel  # noqa: E402
from musicbox.model.train import Trainer, TrainSettings, meter_weights, quick_settings  # noqa: E402
from musicbox.runtime.pianoroll import ONSET, note_f1, shift_to_c, transpose  # noqa: E402
from musicbox.runtime.sampling import get_sigmas_flow, sample_euler, sample_heun  # noqa: E402
from tests.helpers.tiny_model import random_dataset, tiny_checkpoint  # noqa: E402


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("ckpt"))


def test_shapes_and_parameter_budget():
    model = MusicModel(AutoencoderConfig(), DenoiserConfig())
    assert sum(p.numel() for p in model.parameters()) < 10_000_000
    planes = torch.rand(2, 6, 16, 64)
    latent = model.autoencoder.encode(planes)
    assert latent.shape == (2, 4, 64)
    assert model.autoencoder.decode(latent).shape == (2, 6, 16, 64)
    v = model.denoiser(
        latent,
        torch.rand(2),
        torch.randn(2, 16, 64),  # 4 context bars (lags 8, 4, 2, 1) x 4 frames
        torch.ones(2, 4),
        torch.eye(6)[:2],
        torch.randn(2, 4),
        torch.ones(2, 4),
        torch.eye(8)[:2],
        torch.eye(3)[1:3],  # 3/4 and 6/8
    )
    assert v.shape == (2, 4, 64)


def test_denoiser_pieces_compose_to_forward():
    """embed -> blocks -> head is the forward pass (the quantize tool cuts shards along it)."""
    dn = MusicModel(AutoencoderConfig(), DenoiserConfig()).denoiser.eval()
    args = (
        torch.randn(1, 4, 64),
        torch.rand(1),
        torch.randn(1, 16, 64),
        torch.ones(1, 4),
        torch.eye(6)[:1],
        torch.randn(1, 4),
        torch.ones(1, 4),
        torch.eye(8)[3:4],
        torch.eye(3)[:1],
    )
    h = dn.embed(*args)
    for block in dn.blocks:
        h = block(h)
    assert torch.allclose(dn.head(h), dn(*args))


def test_checkpoint_round_trip_and_config(checkpoint):
    model, config = load_checkpoint(checkpoint)
    assert config["controls"]["attrs"]["names"] == ["density", "mode", "register", "polyphony"]
    assert len(config["controls"]["styles"]) == 5
    assert config["sampler"]["steps"] <= 8
    assert 0.0 < config["sampler"]["threshold"] < 1.0
    assert float(model.autoencoder.latent_scale) != 1.0  # calibrated to unit variance


def test_broken_checkpoint_is_a_clear_error(checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"format": "other"}))
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="format"):
        load_checkpoint(tmp_path)


def test_samplers_run_identically_on_numpy_and_torch():
    """One sampler implementation serves the device (numpy) and the training side (torch)."""
    w = np.linspace(-1, 1, 8, dtype=np.float32)
    sigmas = get_sigmas_flow(6, shift=2.0)
    x0 = np.random.default_rng(0).standard_normal(8).astype(np.float32)
    for sampler in (sample_euler, sample_heun):
        a = sampler(lambda x, s: x * (1 - s) + w * s, x0, sigmas)
        b = sampler(lambda x, s: x * (1 - s) + torch.from_numpy(w) * s, torch.from_numpy(x0), sigmas)
        np.testing.assert_allclose(a, b.numpy(), rtol=1e-6)
    assert sigmas[0] == 1.0 and sigmas[-1] == 0.0 and np.all(np.diff(sigmas) < 0)


def test_training_resumes_from_saved_state(tmp_path):
    ds = random_dataset(n_pieces=10, bars=8)
    trainer = Trainer(ds, quick_settings(TrainSettings()), tmp_path)
    from rich.progress import Progress

    with Progress(disable=True) as progress:
        figures = trainer.train_autoencoder(progress)
        again = Trainer(ds, quick_settings(TrainSettings()), tmp_path)
        assert again.train_autoencoder(progress) == figures  # loaded, not retrained
    assert 0 < again.earlier_seconds < again.seconds()  # the autoencoder stage's wall time is kept
    for a, b in zip(
        trainer.model.autoencoder.parameters(), again.model.autoencoder.parameters(), strict=True
    ):
        assert torch.equal(a, b)


def test_a_resumed_denoiser_run_ends_where_an_uninterrupted_one_does(tmp_path):
    from rich.progress import Progress

    ds = random_dataset(n_pieces=10, bars=8)
    settings = quick_settings(TrainSettings())
    with Progress(disable=True) as progress:
        whole = Trainer(ds, settings, tmp_path)
        whole.train_autoencoder(progress)
        done = whole.train_denoiser(progress)  # leaves the state of step save_every in the run folder
        resumed = Trainer(ds, settings, tmp_path)
        resumed.train_autoencoder(progress)
        again = resumed.train_denoiser(progress)
    assert len(resumed.history["dn"]) == settings.dn_steps
    assert 0 < resumed.earlier_seconds < resumed.seconds()  # the wall time counts every session of the run
    for a, b in zip(done.denoiser.parameters(), again.denoiser.parameters(), strict=True):
        assert torch.equal(a, b)


def test_meters_a_style_plays_are_drawn_by_a_power_of_their_counts():
    folk = meter_weights(np.array([37305.0, 16313.0, 10662.0]), 0.5)  # every meter over 2,000 bars
    np.testing.assert_allclose(folk, np.sqrt([37305, 16313, 10662]) / np.sqrt([37305, 16313, 10662]).sum())
    assert TrainSettings().meter_power == 0.0  # the shipped model: every meter a style plays equally
    np.testing.assert_allclose(meter_weights(np.array([37305.0, 16313.0, 10662.0]), 0.0), [1 / 3] * 3)
    np.testing.assert_allclose(
        meter_weights(np.array([4718.0, 868.0, 0.0]), 0.0), [4718 / 5586, 868 / 5586, 0]
    )
    chorale = meter_weights(np.array([4718.0, 868.0, 0.0]), 0.5)  # 3/4 under 2,000: its corpus share
    np.testing.assert_allclose(chorale, [4718 / 5586, 868 / 5586, 0.0])
    np.testing.assert_allclose(meter_weights(np.array([9000.0, 3000.0, 0.0]), 1.0), [0.75, 0.25, 0.0])
    tiny = meter_weights(np.array([10.0, 5.0, 0.0]), 0.0)  # no meter over 2,000: as in the corpus
    np.testing.assert_allclose(tiny, [2 / 3, 1 / 3, 0.0])


def test_a_denoiser_saved_before_the_meter_weights_goes_on_where_it_was(tmp_path):
    """``--denoiser-from`` an older checkpoint: the meter weights it lacks start at zero, so the denoiser
    writes what it wrote (a 6/8 bar included); any other missing weight is a clear error."""
    old = MusicModel(AutoencoderConfig(), DenoiserConfig()).eval()  # its meter weights start at zero
    folder = save_checkpoint(old, {}, tmp_path / "old")
    weights = load_file(str(folder / "model.safetensors"))
    older = {k: v for k, v in weights.items() if k.removeprefix("denoiser.") not in Embed.METER_WEIGHTS}
    assert len(older) == len(weights) - len(Embed.METER_WEIGHTS)
    save_file(older, str(folder / "model.safetensors"))
    new = MusicModel(AutoencoderConfig(), DenoiserConfig()).denoiser.eval()
    Trainer._start_denoiser_from(new, folder)
    args = (torch.randn(1, 4, 64), torch.rand(1), torch.randn(1, 16, 64), torch.ones(1, 4))
    args += (torch.eye(6)[:1], torch.randn(1, 4), torch.ones(1, 4), torch.eye(8)[3:4], torch.eye(3)[2:3])
    with torch.no_grad():
        assert torch.equal(new(*args), old.denoiser(*args))
    save_file({k: v for k, v in older.items() if "head" not in k}, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="head"):
        Trainer._start_denoiser_from(new, folder)


def test_transpose_and_f1():
    ds = random_dataset(n_pieces=2, bars=4)
    up = transpose(ds.rolls, 3)
    assert (up[..., 3:] == ds.rolls[..., :-3]).all() and not up[..., :3].any()
    assert note_f1(ds.rolls, ds.rolls) == 1.0
    assert note_f1(np.zeros_like(ds.rolls), ds.rolls) == 0.0
    assert (ds.rolls == ONSET).any()


def test_every_tonic_moves_to_c_by_at_most_a_tritone():
    tonics = np.arange(12)
    shifts = shift_to_c(tonics)
    assert ((tonics + shifts) % 12 == 0).all()
    assert shifts.min() == -5 and shifts.max() == 6 and shift_to_c(np.array([0]))[0] == 0


def test_context_index_stays_within_pieces():
    ds = random_dataset(n_pieces=3, bars=10)
    prev = Trainer(ds, quick_settings(TrainSettings()), "/tmp/unused-run").context_index()  # lags 8 4 2 1
    first_bars = np.nonzero(ds.bar == 0)[0]
    assert (prev[first_bars] == -1).all()
    i = np.nonzero(ds.bar == 3)[0][0]
    assert prev[i].tolist() == [-1, -1, i - 2, i - 1]
    j = np.nonzero(ds.bar == 9)[0][1]  # the second piece's last bar
    assert prev[j].tolist() == [j - 8, j - 4, j - 2, j - 1]


def test_the_denoiser_trains_under_bf16_autocast_or_in_float32(tmp_path):
    from rich.progress import Progress

    ds = random_dataset(n_pieces=10, bars=8)
    runs = {}
    for bf16 in (True, False):
        settings = replace(quick_settings(TrainSettings()), dn_bf16=bf16)
        trainer = Trainer(ds, settings, tmp_path / str(bf16))
        with Progress(disable=True) as progress:
            trainer.train_autoencoder(progress)
            runs[bf16] = (trainer.train_denoiser(progress), trainer.history["dn"])
    for model, losses in runs.values():
        assert len(losses) == 20 and np.isfinite(losses).all()
        assert all(p.dtype == torch.float32 for p in model.denoiser.parameters())  # weights stay float32
    bf16, fp32 = (runs[k][0].denoiser.parameters() for k in (True, False))
    assert any(not torch.equal(a, b) for a, b in zip(bf16, fp32, strict=True))  # the autocast is in effect


def test_the_note_space_loss_weighs_a_wrong_estimate_and_trains_the_denoiser_alone(tmp_path):
    from rich.progress import Progress

    ds = random_dataset(n_pieces=10, bars=8)
    histories = {}
    for weight in (0.0, 100.0):
        settings = replace(quick_settings(TrainSettings()), dn_notes=weight)
        trainer = Trainer(ds, settings, tmp_path / str(weight))
        with Progress(disable=True) as progress:
            trainer.train_autoencoder(progress)
            ae_before = [p.clone() for p in trainer.model.autoencoder.parameters()]
            trainer.train_denoiser(progress)
        after = list(trainer.model.autoencoder.parameters())
        assert all(torch.equal(a, b) for a, b in zip(ae_before, after, strict=True))  # frozen
        histories[weight] = trainer.history["dn"]
        x0 = trainer.model.autoencoder.encode(trainer.ae_batch(np.arange(8), augment=False))
        t = torch.full((8,), 0.2)
        near = trainer.notes_loss(x0, x0, t)
        far = trainer.notes_loss(x0, x0 + torch.randn_like(x0), t)
        assert far > near  # an estimate away from the bar costs more than the bar itself
        pure_noise = torch.ones(8)  # t = 1: the loss does not weigh it
        assert trainer.notes_loss(x0, x0 + torch.randn_like(x0), pure_noise) == 0.0
    assert np.isfinite(histories[100.0]).all() and histories[100.0][0] > histories[0.0][0]
