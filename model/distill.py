"""``musicbox distill``: one denoiser row and fewer sampler steps, learned from the trained model.

The trained denoiser (the teacher) writes a 3/4 or 6/8 bar with up to three rows per sampler step: the
conditional row, the contrast-meter row of meter guidance and, for a style with a contrast, the
contrast-style row (``SamplerInfo.row_guidance``), over 8 Euler steps. The student starts as a copy of the
teacher and learns, in one run, both distillations:

* **guidance** (Meng et al. 2023, "On Distillation of Guided Diffusion Models"): its target is the
  teacher's *guided* velocity (``sampling.cfg_velocity`` over the same rows the box would run), so one
  conditional row gives what the three gave;
* **steps** (progressive distillation, Salimans & Ho 2022, on the rectified-flow ODE): one student Euler
  step from ``t`` to the next lower level ``t - d`` of the student's schedule lands where two guided
  teacher Euler steps of ``d / 2`` land, so the student's target velocity is the mean of the teacher's at
  ``t`` and at the midpoint.

``t`` is a level of the student's schedule most of the time, else uniform (a form return starts its
sampler at the variation level and steps down to the schedule's next level: ``form.return_sigmas``).
Bars, context and conditions come from the phrase dataset as in training (``Trainer.dn_batch``), with the
style and meter always given (the box always gives them; no guidance row is run any more).

The checkpoint written carries the student's sampler (``steps``, no guidance rows) and, in
``sampler.folded``, the guidance it folded in and the teacher's steps. The run folder keeps a state every
``save_every`` steps; the same command resumes from it. A finished run goes on with ``init``: the new
run's student starts from that earlier student (same teacher, same steps) instead of from the teacher.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from musicbox.model.checkpoint import load_checkpoint, save_checkpoint
from musicbox.model.train import Trainer, TrainSettings, _log_every, progress_bars, warmup_cosine
from musicbox.runtime.features import ATTRS
from musicbox.runtime.pianoroll import note_f1, planes_to_roll
from musicbox.runtime.sampling import get_sigmas_flow

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistillSettings:
    """A distillation run. ``steps``: the student's sampler steps; ``train_steps``: optimizer updates."""

    steps: int = 4
    train_steps: int = 3000
    batch: int = 256
    lr: float = 2e-4
    ema: float = 0.995
    save_every: int = 250
    p_level: float = 0.7
    """Share of samples at a level of the student's schedule (the rest: ``t`` uniform in (0.02, 1])."""
    p_blend: float = 0.2
    """Share of samples whose style is blended with a neighbouring one (the style knob between two)."""
    balance: float = 0.0
    """How far the bars drawn within a style and meter are evened out over the conditions they teach (0:
    as in the data; 1: each mode and span of onsets per bar as often; :func:`condition_weights`): the
    minor bars and the density ends the mood and tempo knobs ask for are rarer in the data."""
    p_mid_mood: float = 0.0
    """Share of samples whose mode input is moved toward the middle, ``mode * u`` with ``u`` uniform in
    [0, 1): the mood knob between its ends (at 0 the box plays the tempo knob's energy), which the data's
    bars, each -1 or +1, never ask for."""
    seed: int = 0
    threads: int = 2
    bf16: bool = True


class Teacher:
    """The trained denoiser with its sampler's guidance: :meth:`velocity` is the guided velocity the box's
    sampler would take (``runtime.generator``'s rows and ``sampling.cfg_velocity``), for a batch."""

    def __init__(self, denoiser, sampler: dict, meters: list[str], styles: list[str], bf16: bool):
        self.dn, self.bf16 = denoiser.eval(), bf16
        for p in self.dn.parameters():
            p.requires_grad_(False)
        eye = np.eye(len(meters), dtype=np.float32)
        n = len(meters)
        # per meter index: its guidance scale and the meter input its contrast row gets
        self.meter_g = torch.tensor([sampler.get("meter_guidance", {}).get(m, 1.0) for m in meters])
        contrast = [sampler.get("meter_contrast", {}).get(m) for m in meters]
        self.meter_away = torch.from_numpy(
            np.stack([eye[meters.index(c)] if c else np.zeros(n, np.float32) for c in contrast])
        )
        self.style_g = torch.tensor([sampler.get("style_guidance", {}).get(m, 1.0) for m in meters])
        away = sampler.get("style_contrast", {})
        self.style_away = torch.tensor([styles.index(away[s]) if s in away else -1 for s in styles])
        self.n_styles = len(styles)
        if sampler.get("guidance", 1.0) != 1.0:
            raise ValueError("distilling an unconditional guidance row is not supported (guidance must be 1)")

    @torch.no_grad()
    def velocity(self, x, t, context, context_mask, style_w, attrs, attr_mask, place, meter):
        b = x.shape[0]
        m = meter.argmax(dim=1)
        known = meter.sum(dim=1) > 0
        meter_g = torch.where(known, self.meter_g[m], torch.ones(b))
        # the leading style: the larger blend weight, the upper style at a tie (``nearest_style``)
        lead = (style_w[:, : self.n_styles] + 1e-6 * torch.arange(self.n_styles)).argmax(dim=1)
        away = self.style_away[lead]
        style_g = torch.where(known & (away >= 0), self.style_g[m], torch.ones(b))
        rows_m = torch.nonzero(meter_g != 1.0).squeeze(1)
        rows_s = torch.nonzero(style_g != 1.0).squeeze(1)
        meter_rows = torch.cat([meter, self.meter_away[m[rows_m]], meter[rows_s]])
        style_rows = torch.cat(
            [style_w, style_w[rows_m], F.one_hot(away[rows_s], self.n_styles + 1).to(style_w.dtype)]
        )
        idx = torch.cat([torch.arange(b), rows_m, rows_s])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            v = self.dn(
                x[idx],
                t[idx],
                context[idx],
                context_mask[idx],
                style_rows,
                attrs[idx],
                attr_mask[idx],
                place[idx],
                meter_rows,
            ).float()
        v_c, v_m, v_s = v[:b], v[b : b + len(rows_m)], v[b + len(rows_m) :]
        out = v_c.clone()
        out[rows_m] += (meter_g[rows_m] - 1.0)[:, None, None] * (v_c[rows_m] - v_m)
        out[rows_s] += (style_g[rows_s] - 1.0)[:, None, None] * (v_c[rows_s] - v_s)
        return out


def step_levels(levels: np.ndarray, t: np.ndarray) -> np.ndarray:
    """For each ``t``, the length of the student's step from it: down to the highest level of the
    student's schedule ``levels`` (decreasing, ending at 0) below ``t``."""
    below = np.where(levels[None, :] < t[:, None] - 1e-6, levels[None, :], -1.0).max(axis=1)
    return (t - below).astype(np.float32)


def condition_weights(dataset, groups, power: float, bins: int = 5) -> np.ndarray:
    """Draw weights, one per dataset bar, that even out within each group of ``groups`` (bar indices by
    style, then meter: ``Trainer.groups``) the mode and the density the bars teach: a bar weighs the
    number of bars of its group in its cell to the ``-power``. A cell is a mode and one of ``bins``
    equal spans of onsets per bar between the group's 10th and 90th percentile, the end spans taking
    the tails, so the sparse and busy ends the tempo knob asks for weigh as much as the middle. Bars in
    no group weigh 0."""
    density = dataset.attrs[:, ATTRS.index("density")]
    major = dataset.attrs[:, ATTRS.index("mode")] > 0
    weights = np.zeros(len(density))
    for group in (g for row in groups for g in row if len(g)):
        lo, hi = np.percentile(density[group], [10, 90])
        cell = 2 * np.digitize(density[group], np.linspace(lo, hi, bins + 1)[1:-1]) + major[group]
        _, which, counts = np.unique(cell, return_inverse=True, return_counts=True)
        weights[group] = counts[which].astype(np.float64) ** -power
    return weights


class Distiller:
    """One distillation run: the teacher checkpoint, the phrase dataset, the run folder."""

    def __init__(
        self, dataset, teacher_dir: Path, settings: DistillSettings, run_dir: Path, init: Path | None = None
    ):
        self.s, self.run = settings, Path(run_dir)
        self.run.mkdir(parents=True, exist_ok=True)
        torch.manual_seed(settings.seed)
        torch.set_num_threads(settings.threads)
        self.model, self.config = load_checkpoint(teacher_dir)
        if self.config["sampler"].get("folded"):
            raise ValueError(f"{teacher_dir}: already distilled; distill from the trained checkpoint")
        ae, dn = self.model.autoencoder.cfg, self.model.denoiser.cfg
        train = TrainSettings(
            seed=settings.seed,
            dn_batch=settings.batch,
            p_drop_style=0.0,
            p_drop_all=0.0,
            p_drop_meter=0.0,
            threads=settings.threads,
            autoencoder=ae,
            denoiser=dn,
        )
        self.data = Trainer(dataset, train, self.run)
        self.data.model = self.model  # its autoencoder encodes the bars, in the teacher's latent scale
        attrs = self.config["controls"]["attrs"]
        self.data.attr_mean = np.array(attrs["mean"], np.float32)
        self.data.attr_std = np.array(attrs["std"], np.float32)
        self.data.rng = np.random.default_rng((settings.seed, 3))
        styles = [s["name"] for s in self.config["controls"]["styles"]]
        if styles != list(dataset.style_names):
            raise ValueError(f"the dataset's styles {dataset.style_names} are not the checkpoint's {styles}")
        self.teacher = Teacher(
            self.model.denoiser, self.config["sampler"], list(dn.meters), styles, settings.bf16
        )
        self.weights = (
            condition_weights(dataset, self.data.groups, settings.balance) if settings.balance else None
        )
        self.student = copy.deepcopy(self.model.denoiser).train()
        self.init = self._earlier_student(init) if init is not None else None
        for p in self.student.parameters():
            p.requires_grad_(True)
        sampler = self.config["sampler"]
        self.levels = get_sigmas_flow(settings.steps, sampler.get("shift", 1.0))
        self.history: list[float] = []
        self.started, self.earlier_seconds = time.time(), 0.0

    def _earlier_student(self, init: Path) -> dict:
        """Start the student from an earlier student of this teacher at these steps; its record."""
        model, config = load_checkpoint(init)
        folded = config["sampler"].get("folded")
        if not folded:
            raise ValueError(
                f"{init}: not a distilled checkpoint (no sampler.folded); --init takes a student"
            )
        if (
            folded["teacher_steps"] != self.config["sampler"]["steps"]
            or config["sampler"]["steps"] != self.s.steps
        ):
            raise ValueError(
                f"{init}: a {config['sampler']['steps']}-step student of a {folded['teacher_steps']}-step teacher;"
                f" this run distils {self.config['sampler']['steps']} teacher steps into {self.s.steps}"
            )
        if config["controls"] != self.config["controls"]:
            raise ValueError(f"{init}: its controls are not the teacher's; it is another teacher's student")
        self.student.load_state_dict(model.denoiser.state_dict())
        earlier = config["training"]["distill"]
        return {
            "from": str(init),
            "train_steps": earlier["settings"]["train_steps"],
            **{k: earlier[k] for k in ("wall_seconds", "final_loss") if k in earlier},
        }

    def seconds(self) -> float:
        return self.earlier_seconds + time.time() - self.started

    def batch(self, latents, prev, plain: bool = False):
        """A training batch (``Trainer.dn_batch``) with ``t`` redrawn, its step length, blended styles and,
        unless ``plain`` (the data's bars and modes as they come), the run's ``balance`` and
        ``p_mid_mood``."""
        s, rng = self.s, self.data.rng
        x0, _, *cond = self.data.dn_batch(latents, prev, None if plain else self.weights)
        b = x0.shape[0]
        levels = self.levels[:-1]
        t = rng.uniform(0.02, 1.0, b).astype(np.float32)
        on = rng.random(b) < s.p_level
        t[on] = levels[rng.integers(len(levels), size=int(on.sum()))]
        style_w = cond[2]
        n = style_w.shape[1] - 1
        blend = torch.from_numpy(rng.random(b) < s.p_blend)
        style = style_w[:, :n].argmax(dim=1)
        other = torch.clamp(style + torch.from_numpy(rng.choice([-1, 1], b)), 0, n - 1)
        w = torch.from_numpy(rng.uniform(0.5, 1.0, b).astype(np.float32))
        mixed = w[:, None] * F.one_hot(style, n + 1) + (1 - w)[:, None] * F.one_hot(other, n + 1)
        cond[2] = torch.where(blend[:, None], mixed.float(), style_w)
        if s.p_mid_mood and not plain:
            mode = ATTRS.index("mode")  # normalized as it is: mean 0, std 1
            mid = torch.from_numpy(rng.random(b) < s.p_mid_mood)
            u = torch.from_numpy(rng.random(b).astype(np.float32))
            cond[3][:, mode] = torch.where(mid, cond[3][:, mode] * u, cond[3][:, mode])
        return x0, torch.from_numpy(t), torch.from_numpy(step_levels(self.levels, t)), cond

    def target(self, x, t, d, cond):
        """The student's target velocity: the mean of the teacher's guided velocities over two Euler
        half-steps from ``t`` to ``t - d``."""
        v1 = self.teacher.velocity(x, t, *cond)
        half = (d / 2)[:, None, None]
        v2 = self.teacher.velocity(x - half * v1, t - d / 2, *cond)
        return (v1 + v2) / 2

    def encode(self, progress, batch: int = 4096):
        """The scaled latents ``[shifts, N, F, D]`` that training batches read (``Trainer.dn_batch``): each
        training bar in the key that moves its tonic to C, and each bar at its context lags in that key
        too (the rest stay zero: a sixth of the work of encoding every bar in every key), and the context
        index."""
        from musicbox.runtime.pianoroll import KEY_SHIFTS, shift_to_c

        ds, prev = self.data.ds, self.data.context_index()
        bars = self.data.train_idx
        shift_i = shift_to_c(ds.tonic[bars]) - KEY_SHIFTS[0]
        found = [np.stack([shift_i, bars], axis=1)]
        for col in range(prev.shape[1]):
            ok = prev[bars, col] >= 0
            found.append(np.stack([shift_i[ok], prev[bars[ok], col]], axis=1))
        pairs = np.unique(np.concatenate(found), axis=0)
        ae = self.model.autoencoder
        scale = float(ae.latent_scale)
        latents = np.zeros((len(KEY_SHIFTS), len(ds.rolls), ae.cfg.frames, ae.cfg.latent_dim), np.float32)
        task = progress.add_task("encoding bars", total=len(pairs))
        with torch.no_grad():
            for k, shift in enumerate(KEY_SHIFTS):
                rows = pairs[pairs[:, 0] == k, 1]
                if len(rows):
                    latents[k, rows] = self.data.encode_all(shift, batch, rows) * scale
                progress.update(task, advance=len(rows))
        log.info("encoded %d (bar, key) pairs of %d", len(pairs), len(KEY_SHIFTS) * len(ds.rolls))
        return latents, prev

    def train(self, progress) -> None:
        s = self.s
        latents, prev = self.encode(progress)
        ema = copy.deepcopy(self.student).eval()
        opt = torch.optim.AdamW(self.student.parameters(), lr=s.lr, weight_decay=0.0)
        sched = warmup_cosine(opt, s.train_steps)
        start = self._load(ema, opt, sched)
        task = progress.add_task("distill", total=s.train_steps, completed=start)
        for step in range(start, s.train_steps):
            if step and step % s.save_every == 0:
                self._save(step, ema, opt, sched)
            x0, t, d, cond = self.batch(latents, prev)
            noise = torch.randn_like(x0)
            xt = (1 - t[:, None, None]) * x0 + t[:, None, None] * noise
            goal = self.target(xt, t, d, cond)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=s.bf16):
                v = self.student(xt, t, *cond)
            loss = F.mse_loss(v.float(), goal)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.student.parameters(), 1.0)
            opt.step()
            sched.step()
            with torch.no_grad():
                for pe, pm in zip(ema.parameters(), self.student.parameters(), strict=True):
                    pe.lerp_(pm, 1.0 - s.ema)
            self.history.append(loss.item())
            progress.update(task, advance=1, description=f"distill loss {loss.item():.4f}")
            _log_every(step + 1, s.train_steps, "distill velocity MSE", self.history)
        self.student = ema
        self.fidelity = self.compare(latents, prev)

    @torch.no_grad()
    def compare(self, latents, prev, n: int = 512) -> dict:
        """Whole bars sampled from the same noise and conditions (the data's, whatever the run's
        ``balance``) by the teacher (its steps, guided rows) and the student (its steps, one row), decoded
        and thresholded: the note F1 of the student's against
        the teacher's, and of the teacher's 4-step sampler (the same cut without distillation)."""
        rng_state = self.data.rng.bit_generator.state
        self.data.rng = np.random.default_rng((self.s.seed, 4))
        x0, _, _, cond = self.batch(latents, prev, plain=True)
        self.data.rng.bit_generator.state = rng_state
        cond = [c[:n] for c in cond]
        noise = torch.randn(x0[:n].shape, generator=torch.Generator().manual_seed(7))
        sampler = self.config["sampler"]
        teacher_levels = get_sigmas_flow(sampler["steps"], sampler.get("shift", 1.0))

        def run(velocity, levels):
            x = noise.clone()
            for a, b in zip(levels[:-1], levels[1:], strict=True):
                x = x - float(a - b) * velocity(x, torch.full((len(x),), float(a)), *cond)
            return x

        def student(x, t, *c):
            return self.student(x, t, *c).float()

        def roll(latent):
            probs = self.model.autoencoder.decode(latent)
            return planes_to_roll(probs.numpy(), sampler["threshold"])

        ref = roll(run(self.teacher.velocity, teacher_levels))
        out = {
            "student_f1": note_f1(roll(run(student, self.levels)), ref),
            "teacher_cut_f1": note_f1(roll(run(self.teacher.velocity, self.levels)), ref),
            "bars": n,
        }
        log.info("against the teacher's bars: %s", out)
        return out

    def _save(self, step, ema, opt, sched) -> None:
        state = {
            "step": step,
            "student": self.student.state_dict(),
            "ema": ema.state_dict(),
            "opt": opt.state_dict(),
            "sched": sched.state_dict(),
            "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "np_rng": self.data.rng.bit_generator.state,
            "seconds": self.seconds(),
            "settings": asdict(self.s),
        }
        tmp = self.run / "distill.pt.tmp"
        torch.save(state, tmp)
        tmp.replace(self.run / "distill.pt")

    def _load(self, ema, opt, sched) -> int:
        path = self.run / "distill.pt"
        if not path.exists():
            return 0
        state = torch.load(path, weights_only=True)
        if state.get("settings") != asdict(self.s):
            raise ValueError(f"{path}: a run with other settings ({state.get('settings')}); use --fresh")
        self.student.load_state_dict(state["student"])
        ema.load_state_dict(state["ema"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        self.history = state["history"]
        torch.set_rng_state(state["torch_rng"])
        self.data.rng.bit_generator.state = state["np_rng"]
        self.earlier_seconds = float(state["seconds"])
        log.info("resumed: distillation at step %d from %s", state["step"], path)
        return int(state["step"])

    def student_config(self) -> dict:
        """The teacher's config with the student's sampler: its steps, no guidance rows, and what it folded in."""
        config = copy.deepcopy(self.config)
        sampler = config["sampler"]
        folded = {
            "teacher_steps": sampler["steps"],
            "meter_guidance": sampler.pop("meter_guidance", {}),
            "meter_contrast": sampler.pop("meter_contrast", {}),
            "style_guidance": sampler.pop("style_guidance", {}),
            "style_contrast": sampler.pop("style_contrast", {}),
        }
        sampler.update(steps=self.s.steps, folded=folded)
        config["training"]["distill"] = {
            "settings": asdict(self.s),
            "wall_seconds": round(self.seconds(), 1),
            "final_loss": float(np.mean(self.history[-100:])) if self.history else None,
            "against_teacher": getattr(self, "fidelity", None),
            "continued": self.init,
            "distilled": time.strftime("%Y-%m-%d", time.gmtime()),
        }
        return config


def distill(
    dataset,
    teacher_dir: Path,
    settings: DistillSettings,
    run_dir: Path,
    out_dir: Path,
    init: Path | None = None,
) -> Path:
    """Distil ``teacher_dir``'s checkpoint into a one-row, ``settings.steps``-step student at ``out_dir``
    (starting from the earlier student ``init`` when given)."""
    run = Distiller(dataset, teacher_dir, settings, run_dir, init)
    with progress_bars() as progress:
        run.train(progress)
    (run.run / "history.json").write_text(json.dumps(run.history))
    run.model.denoiser = run.student
    return save_checkpoint(run.model, run.student_config(), out_dir)


def quick_settings(settings: DistillSettings) -> DistillSettings:
    """A few steps for tests and smoke checks."""
    return replace(settings, train_steps=6, batch=16, save_every=3)
