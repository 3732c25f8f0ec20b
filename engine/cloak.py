"""The style cloak: paper section 5, equation 2.

    min_delta ||Phi(x + delta) - Phi(Omega(x, T))||^2 + alpha * max(LPIPS(x + delta, x) - p, 0)

with |delta| <= linf everywhere as a hard safety cap.

Several extractors. Phi is the set of image encoders the user defends against (SD 1/2,
SDXL, FLUX.1, FLUX.2, Qwen-Image: `CloakSettings.defend`; engine/extractors.py). The target
is Omega's one style-transferred image, encoded by each extractor. Each extractor's feature
term is its squared distance to its target divided by that distance at its first visit of
the view (where the image starts), and the terms are averaged: every term starts at 1
whatever its latent's scale or channel count (SDXL's latents are scaled by 0.13, FLUX.2's
have 128), so none dominates, and the average keeps the feature term on the scale alpha
was chosen for with one extractor. A step runs one family's encoder, the families taking
turns weighted toward the one furthest from its goal (FamilyTurns); every check measures
them all.

Large images. A mimic never trains on the full-resolution file: it resizes it to its training
size (512-1024 px) and often crops. So the loss is taken where the mimic looks: on "views"
of the image (resized to the working size; with `resize_robust`, also resized so the short
side is 1 and 1.5 working sizes and cropped to a working-size square, and a typical upload's
whole 1024 px view; engine/geometry.py declares them), through a
differentiable, antialiased resize (kornia). delta itself lives at twice the working size
(at least 1024 px) and is carried to full resolution by bicubic upsampling, so
the encoder's cost per step does not depend on the image's size, and resizing by the mimic
keeps the perturbation instead of averaging it away. Each view's share of the original image
is resized once, before the loop; since resizing is linear, view(x + up(delta)) = view(x) +
view(delta). The full-resolution work around the optimizer (compositing, reducing to the
views, carrying delta back, merging, measuring) runs in strips of rows (engine/fullres.py).

What an upload does. At each step one transformation a posted picture meets (JPEG, a
platform's resize and JPEG, noise, blur; `CloakSettings.transforms`, engine/transforms.py)
is drawn and applied, differentiably, to the view before the encoders see it, so that the
loss is an expectation over them (EOT); every other visit of the whole view and of the
upload's is clean. The LPIPS bound is taken on the view as delivered, before any
transformation. The report adds, per extractor, the shift after a typical upload (the whole
image at 1024 px, a real JPEG at quality 75): the figure an artist can count on, and the one
`incomplete` is judged by.

Transparency. The optimizer sees the image composited over mid-grey, so the RGB under fully
transparent pixels never drives the loss; those pixels are left exactly as they were.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import asdict, dataclass

import kornia
import numpy as np
import torch
import torch.nn.functional as F

from glaze.options import INTENSITY

from . import fullres
from .geometry import (
    UPLOAD_LONG_SIDE,
    View,
    check_size,
    fit,
    mimic_views,
    resize,
    upload_view,
    whole_view,
)
from .models import ModelBundle
from .pixels import check_pixels, image_array
from .progress import CancelCheck, FinishCheck, Progress, ProgressCallback
from .settings import CloakSettings
from .stopping import CAP, PLATEAU, Check, Stopping, time_left_text
from .transfer import transfer_style
from .transforms import TransformDraw, uploaded
from .visibility import flat_mask, full_visibility, haloed_strip, jnd_map

# A cloak that closes less than this share of the feature distance to its target after a
# typical upload is reported `incomplete`: it moved the image, not far enough to count on.
INCOMPLETE_BELOW = 0.25
TRANSFER_SHARE = 0.1  # the part of a job's progress bar given to style transfer
# Adam's first rate, as shares of the L_inf cap: a tenth, or more for a short cloak, so that
# the rates of its steps (cosine-annealed) add up to about twice the cap and delta can reach
# the cap however few steps it has; never more than half the cap at once.
RATE_SHARE, RATE_SHARE_MAX = 0.1, 0.5
RATE_SUM = 4.0  # the first rate's share times the steps, at least
# The signed step's share of each pixel's cap: from the first to the last over the horizon.
SIGNED_RATE, SIGNED_HORIZON = (0.5, 0.05), 40
# How much of the direction of the steps before a signed step keeps (momentum).
SIGNED_MOMENTUM = 0.9
# A family at or past its goal keeps this weight in the turns of the encoders (FamilyTurns).
TURN_FLOOR = 0.05
BUDGET_HALVINGS = 8  # the scale that brings a cloak back within p, to 1/256
# Checks of the after-upload shift (engine/stopping.py): as often as keeps their cost near
# CHECK_SHARE of the run, every 2 to 25 steps. An encoder's forward pass costs about
# FORWARD_SHARE of its forward and backward (benchmarks/cloak_step.py --sizes --memory
# 720x1024 --families sd taef2, on the CPU at 1024 x 720: SD's encoder 10.6 of 34.9 s,
# TAEF2 1.0 of 2.3 s).
CHECK_SHARE, CHECK_EVERY, FORWARD_SHARE = 0.1, (2, 25), 1 / 3


@dataclass
class ExtractorShift:
    """How far one defended extractor's features moved toward the target."""

    distance_before: float  # ||Phi(x) - Phi(Omega(x, T))||, working-size view
    distance_after: float  # the same for the output
    relative_shift: float  # share of that distance the cloak closed
    after_upload: float  # the same share after a typical upload (transforms.uploaded)
    incomplete: bool  # after_upload < INCOMPLETE_BELOW


@dataclass
class CloakReport:
    """What a cloak achieved, measured on the output as delivered (after quantization)."""

    target_style: str
    bundle: str
    model: str  # where the bundle was loaded from: "demo", a folder or a hub id
    protection_note: str | None
    width: int
    height: int
    defended: list[str]  # the extractors optimized against
    extractors: dict[str, ExtractorShift]  # by name, each defended one
    relative_shift: float  # the smallest of the extractors' shifts
    after_upload: float  # the smallest of the extractors' shifts after a typical upload
    incomplete: bool  # some defended extractor's shift after a typical upload fell short
    transforms: list[str]  # what the loss was an expectation over ([]: the views alone)
    lpips: float  # output vs input, working-size view
    psnr: float | None  # dB over covered pixels at full size; None if nothing changed
    # How visible the change is where a painter looks, at full size (visibility.Visibility):
    # the share of pixels over their JND, SSIM and new texture over flat regions.
    visibility: dict
    linf: float  # the largest change of any sample, [0, 1] units
    budget: float  # p
    linf_cap: float
    steps_run: int
    kept_step: int  # the step whose delta the output is: the last, or at a plateau the best
    # Why the run stopped (engine/stopping.py: the goal reached, a plateau of the shift, the
    # most steps, or "cancelled": finished early when asked) and the goal it ran toward
    # (None: every step runs).
    stopped: str
    goal: float | None
    encoder_passes: int  # forward passes of the defended encoders, set-up and checks included
    seconds: float
    seed: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class CloakResult:
    image: np.ndarray  # the input's shape, dtype and alpha, RGB cloaked
    report: CloakReport
    # The original, the output and the target as a typical upload delivers them (as_posted),
    # 8-bit: what the after-upload shift was taken on, and what a preview decodes.
    posted: tuple[np.ndarray, ...] = ()


class CloakOptimizer:
    """The optimization of delta for one image and target; `step()` runs one step, `check()`
    measures the shift after a typical upload, `optimize` runs them until a stop."""

    def __init__(self, bundle: ModelBundle, seen: fullres.Seen, target: torch.Tensor,
                 settings: CloakSettings, views: list[View] | None = None) -> None:
        """`seen`: the image as `see` gives it for `settings`; `target`: Omega's image at
        the first view's size; `views`: cloak_views' for the image (made if not given)."""
        self.bundle, self.settings = bundle, settings
        self.defended = settings.extractors
        self.shape = shape = seen.shape
        self.multiple = bundle.size_multiple(self.defended)
        self.views = views or cloak_views(shape, settings, bundle)
        # delta at the largest view's scale: twice the working size, and at least the
        # typical upload's, so that a 1024 px training view sees it unblurred.
        delta_long = (max(2 * settings.work_size, UPLOAD_LONG_SIDE) if settings.resize_robust
                      else settings.work_size)
        delta_shape = fit(shape, min(max(shape), delta_long), multiple=1)
        self.delta = torch.zeros((1, 3, *delta_shape), device=bundle.device, requires_grad=True)
        self.bound = (PerceptualBound(resize(seen.colours(), delta_shape), settings)
                      if settings.visibility_bound else None)
        self.target = target
        # An encoder's forward keeps for its backward what grows with the view: over its
        # weights, the SD encoder's forward and backward (bf16, CPU) peaked at 1.8 GiB on
        # 512 x 512 and 5.9 GiB on the typical upload's 1024 x 720. Where that would take
        # too much of the free memory, the view's blocks are recomputed in the backward
        # instead: 3.2 GiB there, for up to a sixth more time (benchmarks/cloak_step.py
        # --memory); where it fits, the time is saved.
        self.checkpointed = bundle.needs_checkpointing(
            self.defended, [view.pixels for view in self.views])
        # The views the report measures (the whole view, the typical upload's) see the
        # picture as it is on every other visit, so that their clean shifts are not left to
        # the draw: in 12 steps, whether one of the whole view's two visits drew `none`
        # changed its shift 2.5-fold. At 24 steps (two seeds' mean) the upload view's clean
        # visits raised the shift after a resize to 1024 px from 0.14 to 0.26, held the
        # shift after a typical upload, and lowered the others by 0.01-0.07.
        self.alternately_clean = [index == 0 or view == self.upload_view
                                  for index, view in enumerate(self.views)]
        self.order = view_order(self.views, self.upload_view, settings.views_in_turn)
        self.visits = [0] * len(self.views)
        self.turns = FamilyTurns(self.defended, settings.goal)
        # Each family's features of the target on each view, made at first need (a short
        # run on several families visits few of the pairs), and the distance each term is
        # divided by: its own at its first visit, so that every term starts at 1.
        self.targets: dict[tuple[str, View], torch.Tensor] = {}
        self.scales: dict[tuple[str, View], torch.Tensor] = {}
        self.passes = 0  # forward passes of the defended encoders: set-up, steps and checks
        with torch.no_grad():
            self.bases = [view.apply(seen.image) for view in self.views]
            self.coverages = [view.apply(seen.coverage) for view in self.views]
            goals = {name: self.target_of(name, self.upload_view) for name in self.defended}
            self.posted = PostedCheck(bundle, self.upload_view, seen, goals)
        self.passes += len(self.defended)  # the posted original's
        self.draw = TransformDraw(settings.transforms, settings.seed)
        self.rule = (AdamSteps(self.delta, settings) if settings.step_rule == "adam" else
                     SignedSteps(self.delta, settings.linf if self.bound is None
                                 else self.bound.cap, min(SIGNED_HORIZON, settings.steps)))
        self.steps_run = 0
        self.kept: tuple[int, torch.Tensor] | None = None  # a check's step and its delta
        self.kept_step = 0  # the step whose delta `optimize` ended with
        self.stopped: str | None = None  # why `optimize` ended the run
        self.stopping: Stopping | None = None  # its rule and checks, once `optimize` runs
        self.check_seconds: list[float] = []  # what each check took

    @property
    def upload_view(self) -> View:
        """A typical upload's view, at the defended extractors' size multiple."""
        return upload_view(self.shape, self.multiple)

    def view_image(self, index: int) -> torch.Tensor:
        """The perturbed image as view `index` sees it."""
        view = self.views[index]
        moved = self.bases[index] + view.apply(self.delta) * self.coverages[index]
        return moved.clamp(0, 1)

    def step(self) -> dict[str, float]:
        index = self.order[self.steps_run % len(self.order)]
        visit = self.visits[index]
        self.visits[index] += 1
        image = self.view_image(index)
        # Each loss term is back-propagated to the transformed view on its own, so that
        # only one encoder's activations are held at a time (three at once would triple the
        # peak memory); the summed gradient then flows on through the transformation to the
        # view and to delta. The same gradient as one backward of the whole loss.
        seen = image.detach().requires_grad_(True)
        clean = self.alternately_clean[index] and visit % 2 == 0
        transform, transformed = ("none", seen) if clean else self.draw(seen)
        uploaded_view = transformed.detach().requires_grad_(True)
        terms = {}
        families = self.defended if self.settings.every_family else (self.turns.next(),)
        view = self.views[index]
        for name in families:
            latent = self.bundle.encode(uploaded_view, name, self.checkpointed[index])
            distance = F.mse_loss(latent, self.target_of(name, view))
            scale = self.scales.setdefault((name, view), distance.detach().clamp_min(1e-12))
            term = distance / scale
            (term / len(families)).backward()
            terms[name] = term.detach()
            self.passes += 1
        if transformed is seen:
            seen.grad = uploaded_view.grad
        else:
            transformed.backward(uploaded_view.grad)
        feature = sum(terms.values()) / len(terms)
        perceptual = self.bundle.perceptual_distance(seen, self.bases[index]).mean()
        excess = torch.relu(perceptual - self.settings.budget)
        # A hinge: within the budget its gradient is zero, and a backward through LPIPS's
        # network would only add zeros (TAEF2's upload-view step: 2.68 s with it, 2.55 s
        # without; docs/engine.md).
        if excess.item() > 0:
            (self.settings.alpha * excess).backward()
        self.delta.grad = None
        image.backward(seen.grad)
        self.rule.step()
        with torch.no_grad():
            self.delta.clamp_(-self.settings.linf, self.settings.linf)
            if self.bound is not None:
                self.delta.copy_(self.bound.project(self.delta))
        self.steps_run += 1
        loss = feature + self.settings.alpha * excess.detach()
        return {"feature": feature.item(), "lpips": perceptual.item(), "loss": loss.item(),
                "transform": transform,
                **{f"feature_{name}": term.item() for name, term in terms.items()}}

    def check_every(self) -> int:
        """Steps between checks, so that checking costs about CHECK_SHARE of a run: from
        the pixels each encodes (a check, every family's forward pass on the upload view; a
        step, one family's or every family's forward and backward on its view), not from
        measured times, so that the same settings check, and stop, at the same steps on
        any machine."""
        step = sum(self.views[index].pixels for index in self.order) / len(self.order)
        if self.settings.every_family:
            step *= len(self.defended)
        check = FORWARD_SHARE * self.upload_view.pixels * len(self.defended)
        fewest, most = CHECK_EVERY
        return min(max(math.ceil(check / (CHECK_SHARE * step)), fewest), most)

    def target_of(self, name: str, view: View) -> torch.Tensor:
        """Family `name`'s features of the target on `view`, encoded at first need."""
        if (name, view) not in self.targets:
            with torch.no_grad():
                self.targets[name, view] = self.bundle.encode(view.apply(self.target), name)
            self.passes += 1
        return self.targets[name, view]

    def within_budget(self) -> None:
        """Scale delta back, where need be, until the whole view's LPIPS is within the budget
        p: the penalty is a hinge, and signed steps end by crossing it back and forth by up
        to a step. The caps, a box around zero, hold for any smaller scale."""
        def perceptual(scale: float) -> float:
            moved = self.bases[0] + self.views[0].apply(scale * self.delta) * self.coverages[0]
            return self.bundle.perceptual_distance(moved.clamp(0, 1), self.bases[0]).item()

        budget = self.settings.budget
        with torch.no_grad():
            if perceptual(1.0) <= budget:
                return
            low, high = 0.0, 1.0
            for _ in range(BUDGET_HALVINGS):
                middle = (low + high) / 2
                low, high = (middle, high) if perceptual(middle) <= budget else (low, middle)
            self.delta.mul_(low)

    def check(self) -> dict[str, float]:
        """Each defended family's shift after a typical upload, as delta stands now."""
        with torch.no_grad():
            moved = self.posted.base + self.upload_view.apply(self.delta) * self.posted.coverage
            shifts = self.posted.shifts(moved.clamp(0, 1))
        self.passes += len(shifts)
        self.turns.weigh(shifts)
        return shifts

    def keep(self) -> None:
        """Keep delta as it stands, to end with it (`restore_kept`)."""
        self.kept = (self.steps_run, self.delta.detach().clone())

    def restore_kept(self) -> int:
        """Go back to the kept delta, if any; the step it was kept at."""
        if self.kept is None:
            return self.steps_run
        step, delta = self.kept
        with torch.no_grad():
            self.delta.copy_(delta)
        return step

    def full_delta(self, source: np.ndarray) -> fullres.DeltaRows:
        """delta carried to full resolution, within the L_inf cap and the perceptual
        bound of `source`'s own pixels, by strips of rows."""
        if self.bound is not None:
            return self.bound.full_rows(source, self.delta)
        return fullres.FullDelta(self.delta, self.shape, self.settings.linf)


class SignedSteps:
    """Projected gradient descent in the box the caps make: each step moves every pixel by
    a share of its own cap against the sign of its direction, then projects. The direction
    is the gradient, divided by its mean magnitude, plus SIGNED_MOMENTUM of the direction
    before: successive steps see different views, transformations and families, and the
    direction keeps what they agree on. On TAEF2 (three seeds, horizon 60) momentum 0.8
    kept 0.006-0.008 more after an upload at the same steps, which let the horizon fall to
    40: with 0.9 a run ends after 48 steps about where it ended after 66 without momentum
    (docs/engine.md has the probes, and the seeds on which both end below the cloak
    before goals). The share falls from SIGNED_RATE[0] to SIGNED_RATE[1] over `horizon`
    steps (cosine), then stays: SIGNED_HORIZON, or a shorter run's own steps. Past the
    horizon the schedule does not depend on the most steps, so a run stopped at its goal
    took the same steps as a longer one up to there. Adam's steps, in the same units for
    every pixel whatever its cap, reach the box slowly where the cap is small and overshoot
    it where it is large (docs/engine.md, "Steps, and when they stop")."""

    def __init__(self, delta: torch.Tensor, scale: torch.Tensor | float, horizon: int) -> None:
        self.delta, self.scale, self.horizon, self.steps = delta, scale, max(horizon, 1), 0
        self.settled: int | None = self.horizon  # from here on, its step stays the same
        self.direction = torch.zeros_like(delta)

    @property
    def rate(self) -> float:
        top, low = SIGNED_RATE
        done = min(self.steps / self.horizon, 1.0)
        return low + (top - low) * 0.5 * (1 + math.cos(math.pi * done))

    def step(self) -> None:
        with torch.no_grad():
            gradient = self.delta.grad
            self.direction.mul_(SIGNED_MOMENTUM).add_(
                gradient / gradient.abs().mean().clamp_min(torch.finfo(gradient.dtype).tiny))
            self.delta -= self.rate * self.scale * self.direction.sign()
        self.steps += 1


class AdamSteps:
    """Adam, its rate cosine-annealed over the quality's steps: the step rule of the cloak
    before goals (`CloakSettings.step_rule` "adam"), kept to measure the new one against."""

    settled = None  # its rate falls to the last step

    def __init__(self, delta: torch.Tensor, settings: CloakSettings) -> None:
        steps = max(settings.steps, 1)
        self.optimizer = torch.optim.Adam([delta], lr=first_rate(settings.linf, steps))
        self.schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
            self.optimizer, T_max=steps, eta_min=settings.linf / 100)

    def step(self) -> None:
        self.optimizer.step()
        self.schedule.step()


class PostedCheck:
    """The shift after a typical upload, cheaply, while the cloak runs: the upload view of
    the reduced picture stored as a real JPEG, against the target at that view, as
    `as_posted` and `_measure` take it on the delivered output for the report. `goals`:
    each family's features of the target at the `upload` view."""

    def __init__(self, bundle: ModelBundle, upload: View, seen: fullres.Seen,
                 goals: dict[str, torch.Tensor]) -> None:
        self.bundle, self.goals = bundle, goals
        self.base, self.coverage = upload.apply(seen.image), upload.apply(seen.coverage)
        original = uploaded(self.base)
        self.before = {name: self._distance(original, name) for name in goals}

    def _distance(self, image: torch.Tensor, name: str) -> float:
        return torch.linalg.vector_norm(self.bundle.encode(image, name)
                                        - self.goals[name]).item()

    def shifts(self, image: torch.Tensor) -> dict[str, float]:
        """Each family's share of its distance to the target that `image`, uploaded, closed."""
        return self.posted_shifts(uploaded(image))

    def posted_shifts(self, posted: torch.Tensor) -> dict[str, float]:
        """The same for a picture already as an upload stores it (as_posted's)."""
        with torch.no_grad():
            return {name: _share(before, self._distance(posted, name))
                    for name, before in self.before.items()}


class PerceptualBound:
    """Where a painter would see the cloak, it may not go: each pixel's change stays within
    its just-noticeable difference (engine/visibility.py), scaled by the intensity (1 at the
    default preset), and in flat regions the change is smoothed so that it paints no new
    texture there. Applied to delta after every step (a projection), and again, per pixel, to
    the change carried to full resolution (`full_rows`).

    What it costs (docs/engine.md, "Visibility"): on TAEF2, nearly all of the
    after-upload shift the bound gives up is the texture it keeps off flat regions; the JND
    cap alone keeps 92% of it."""

    FLAT_SMOOTHING = 3.0  # the Gaussian's sigma, in delta's pixels
    QUANTUM = 0.5 / 255

    def __init__(self, image: torch.Tensor, settings: CloakSettings) -> None:
        self.settings = settings
        self.cap = self.cap_of(image)
        self.flat = flat_mask(image).float()

    def cap_of(self, image: torch.Tensor) -> torch.Tensor:
        """Each pixel's largest allowed change in `image` (N x 3 x H x W, the picture's own
        colours): its JND scaled by the intensity, within the L_inf cap."""
        scale = self.settings.budget / INTENSITY.presets[INTENSITY.default]
        # Half a grey level under the threshold: an 8-bit file rounds the change by up to
        # that much (benchmarks/visibility.py on TAEF2: 10.1% of the painting's pixels over
        # their JND at 24 steps without this margin, none at 100 steps with it).
        return (scale * jnd_map(image) - self.QUANTUM).clamp(0, self.settings.linf)

    def smooth(self, delta: torch.Tensor) -> torch.Tensor:
        """`delta` with no detail finer than what flat regions may carry."""
        sigma = self.FLAT_SMOOTHING
        size = 2 * math.ceil(3 * sigma) + 1
        return kornia.filters.gaussian_blur2d(delta, (size, size), (sigma, sigma),
                                              border_type="replicate")

    def project(self, delta: torch.Tensor) -> torch.Tensor:
        delta = self.flat * self.smooth(delta) + (1 - self.flat) * delta
        return torch.maximum(torch.minimum(delta, self.cap), -self.cap)

    def full_rows(self, source: np.ndarray, delta: torch.Tensor) -> fullres.DeltaRows:
        """`delta` carried to `source`'s full resolution, a strip of rows at a time, within
        the bound of the full-size picture itself, which upsampling does not know: each
        pixel within its own cap, and where the full-size picture is flat (a region that is
        thin at delta's scale, beside an outline, may not be), only the smoothed delta."""
        shape, linf = source.shape[:2], self.settings.linf
        with torch.no_grad():
            rough = fullres.FullDelta(delta, shape, linf)
            smooth = fullres.FullDelta(self.smooth(delta), shape, linf)

        def bounded(rows: slice) -> np.ndarray:
            colours, _, inner = haloed_strip(source, rows)
            with torch.no_grad():
                cap = self.cap_of(colours)[0, 0, inner, :, None].numpy()
                flat = flat_mask(colours)[0, 0, inner, :, None].numpy()
            return np.clip(np.where(flat, smooth(rows), rough(rows)), -cap, cap)

        return bounded


class FamilyTurns:
    """Which defended family's encoder a step runs, where several are defended: one a step,
    so that a step costs one encoder pass, not one per family. Each family earns its weight
    at every step and the one with the most credit runs (a weighted round robin: equal
    weights take them in turn, in declared order). After each check a family's weight is
    TURN_FLOOR plus how far its shift after upload falls short of the goal (with no goal,
    of the strongest family's), so that the family furthest behind runs most often, and one
    past the goal still runs now and then, which holds what it reached."""

    def __init__(self, names: tuple[str, ...], goal: float | None) -> None:
        self.names, self.goal = names, goal
        self.weights = dict.fromkeys(names, 1.0)
        self.credit = dict.fromkeys(names, 0.0)

    def weigh(self, shifts: dict[str, float]) -> None:
        reach = self.goal if self.goal is not None else max(shifts.values())
        self.weights = {name: TURN_FLOOR + max(reach - shifts[name], 0.0)
                        for name in self.names}

    def next(self) -> str:
        for name in self.names:
            self.credit[name] += self.weights[name]
        chosen = max(self.names, key=self.credit.__getitem__)
        self.credit[chosen] -= sum(self.weights.values())
        return chosen


def view_order(views: list[View], upload: View, in_turn: bool = False) -> list[int]:
    """The indices of `views` a cycle of steps visits: the typical upload's view every other
    step, the others in turn between (the after-upload shift, which judges a cloak, is
    taken on that view, and a mimic's other views are cut from the upload; on TAEF2 it
    reached the same after-upload shift a quarter sooner than every view in turn, for a
    lower shift on the 512 px working view: docs/engine.md, "Steps, and when they stop");
    with `in_turn`, or without an upload view among them, each view in turn (the cloak
    before goals)."""
    if in_turn or upload not in views or len(views) == 1:
        return list(range(len(views)))
    first = views.index(upload)
    return [index for other in range(len(views)) if other != first
            for index in (first, other)]


def first_rate(linf: float, steps: int) -> float:
    """Adam's first learning rate for a cloak of `steps` steps under the cap `linf`."""
    return linf * min(max(RATE_SHARE, RATE_SUM / steps), RATE_SHARE_MAX)


def cloak_views(shape: tuple[int, int], settings: CloakSettings,
                bundle: ModelBundle) -> list[View]:
    """The views the cloak of an image of `shape` optimizes through (the whole view first),
    their sides multiples of what the defended extractors need."""
    return mimic_views(shape, settings.work_size, settings.resize_robust,
                       random.Random(settings.seed), bundle.size_multiple(settings.extractors))


def see(image: np.ndarray, settings: CloakSettings, bundle: ModelBundle,
        views: list[View] | None = None) -> fullres.Seen:
    """`image` as the optimizer sees it: over grey, reduced as far as its views (made if not
    given) allow."""
    shape = image.shape[:2]
    upload = upload_view(shape, bundle.size_multiple(settings.extractors))
    views = views or cloak_views(shape, settings, bundle)
    sizes = [view.size for view in [*views, upload]]
    return fullres.seen(image, bundle.device, fullres.reduction(shape, sizes))


def _distances(bundle: ModelBundle, name: str, images: list[torch.Tensor],
               target: torch.Tensor) -> list[float]:
    """Extractor `name`'s feature distance from each of `images` to the `target` features."""
    with torch.no_grad():
        return [torch.linalg.vector_norm(bundle.encode(image, name) - target).item()
                for image in images]


def _share(before: float, after: float) -> float:
    return 1.0 - after / before if before > 0 else 0.0


def as_posted(upload: View, original: torch.Tensor, delivered: torch.Tensor,
              target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The original and the delivered output (the whole image over grey, reduced alike) as a
    typical upload stores them, at the `upload` view as a real JPEG, and the target at that
    view (what the cloak aims at; it is never posted)."""
    with torch.no_grad():
        return (uploaded(upload.apply(original)), uploaded(upload.apply(delivered)),
                upload.apply(target))


def _measure(bundle: ModelBundle, optimizer: CloakOptimizer, delivered: torch.Tensor,
             posted: tuple[torch.Tensor, ...], source: np.ndarray, output: np.ndarray) -> dict:
    """What the delivered output achieved: LPIPS and each extractor's shift as the whole
    view sees it, and the shift after a typical upload (`posted`: as_posted, against the
    original and target features the optimizer's checks hold); both images reduced alike,
    so that only the cloak tells them apart."""
    view = optimizer.views[0]
    with torch.no_grad():
        seen = view.apply(delivered)
        lpips_value = bundle.perceptual_distance(seen, optimizer.bases[0]).item()
    shifts, uploaded_shifts = {}, optimizer.posted.posted_shifts(posted[1])
    for name in optimizer.defended:
        before, after = _distances(bundle, name, [optimizer.bases[0], seen],
                                   optimizer.target_of(name, view))
        upload_shift = uploaded_shifts[name]
        shifts[name] = ExtractorShift(before, after, _share(before, after), upload_shift,
                                      upload_shift < INCOMPLETE_BELOW)
    return {
        "defended": list(shifts), "extractors": shifts,
        "relative_shift": min(shift.relative_shift for shift in shifts.values()),
        "after_upload": min(shift.after_upload for shift in shifts.values()),
        "incomplete": any(shift.incomplete for shift in shifts.values()), "lpips": lpips_value,
        "transforms": [name for name, weight in optimizer.settings.transforms if weight > 0],
        **fullres.pixel_change(source, output),
        "visibility": full_visibility(source, output).to_dict(),
    }


def optimize(optimizer: CloakOptimizer, source: np.ndarray, settings: CloakSettings,
             phase: Progress) -> np.ndarray:
    """Run the optimizer until its stopping rule ends it (engine/stopping.py), reporting
    progress with the time left; the cloaked image in the source's own format. The reason
    it stopped is left in `optimizer.stopped`, the step whose delta it is in
    `optimizer.kept_step`."""
    stopping = optimizer.stopping = Stopping(settings.goal, settings.steps,
                                             optimizer.rule.settled)
    started = time.perf_counter()
    every, shown = optimizer.check_every(), 0.0
    while (reason := stopping.reason(optimizer.steps_run, phase.finishing())) is None:
        phase.check(optimizer.steps_run)
        optimizer.step()
        steps = optimizer.steps_run
        # At the most steps the run ends whatever it finds, so a check there only decides
        # which delta it ends with, where it has settled checks to weigh against.
        if (steps % every == 0 and steps < stopping.cap) or stopping.checks_at_cap(steps):
            checking = time.perf_counter()
            stopping.add(Check(steps, checking - started, optimizer.check()))
            if stopping.worth_keeping():
                optimizer.keep()
            optimizer.check_seconds.append(time.perf_counter() - checking)
        seconds = time.perf_counter() - started
        left = stopping.seconds_left(steps, seconds)
        shown = max(shown, seconds / (seconds + left) if left > 0 else 1.0)
        phase.report(shown, _progress_text(steps, settings, stopping, left))
    # Past the step rule's settling the last steps of a plateau or of the cap only
    # wandered: the best check's delta since then is kept (engine/stopping.py).
    optimizer.kept_step = (optimizer.restore_kept() if reason in (PLATEAU, CAP)
                           else optimizer.steps_run)
    optimizer.within_budget()
    optimizer.stopped = reason
    return fullres.merge(source, optimizer.full_delta(source))


def _progress_text(steps: int, settings: CloakSettings, stopping: Stopping,
                   left: float) -> str:
    text = f"cloak step {steps} of at most {settings.steps}"
    if stopping.checks:
        text += f", shift after upload {stopping.best.weakest:.0%}"
        if settings.goal is not None:
            text += f" (goal {settings.goal:.0%})"
    return f"{text}; {time_left_text(left)}"


def cloak_toward(image: np.ndarray, bundle: ModelBundle, target: torch.Tensor,
                 settings: CloakSettings | None = None, progress: ProgressCallback | None = None,
                 cancel: CancelCheck | None = None,
                 finish: FinishCheck | None = None) -> np.ndarray:
    """The cloak's optimization toward a given target image (1 x 3 x h x w in [0, 1], at
    the whole view's size) instead of a style transfer: the encoder attacks PhotoGuard and
    Mist make, and fixed targets for benchmarks."""
    settings = settings or CloakSettings()
    check_pixels(image)
    check_size(image.shape[:2])
    views = cloak_views(image.shape[:2], settings, bundle)
    optimizer = CloakOptimizer(bundle, see(image, settings, bundle, views),
                               target.to(bundle.device), settings, views)
    return optimize(optimizer, image, settings, Progress(progress, cancel, finish=finish))


def style_target(bundle: ModelBundle, seen: fullres.Seen, target_style: str,
                 settings: CloakSettings, progress: Progress | None = None) -> torch.Tensor:
    """Omega's image: the whole view of `seen` (see()) in `target_style`, what the cloak
    moves the picture's features toward; the same for the same image, settings and seed."""
    whole = whole_view(seen.shape, settings.work_size, bundle.size_multiple(settings.extractors))
    with torch.no_grad():
        return transfer_style(bundle, whole.apply(seen.image), target_style, settings.strength,
                              settings.seed, progress or Progress(None))


def cloak(image: np.ndarray, bundle: ModelBundle, target_style: str,
          settings: CloakSettings | None = None, progress: ProgressCallback | None = None,
          cancel: CancelCheck | None = None, finish: FinishCheck | None = None) -> CloakResult:
    """Cloak `image` (H x W x 3|4; uint8, uint16, float16 or float32) toward `target_style`.

    Returns the cloaked image in the input's own format (alpha untouched) and a report.
    Raises ValueError for unsupported input and Cancelled when `cancel()` turns true. When
    `finish()` turns true the cloak ends at its next step (after one at least) with what it
    has made, and its report says `stopped` "cancelled".
    """
    settings = settings or CloakSettings()
    started = time.perf_counter()
    check_pixels(image)
    shape = image.shape[:2]
    check_size(shape)
    tracker = Progress(progress, cancel, finish=finish)
    tracker.check()
    for name in settings.extractors:  # a missing extractor is refused before any work
        bundle.extractor(name)
    tracker.report(0.0, "style transfer")
    views = cloak_views(shape, settings, bundle)
    seen = see(image, settings, bundle, views)
    target = style_target(bundle, seen, target_style, settings,
                          tracker.phase(0.0, TRANSFER_SHARE))
    optimizer = CloakOptimizer(bundle, seen, target, settings, views)
    output = optimize(optimizer, image, settings, tracker.phase(TRANSFER_SHARE, 1.0))
    delivered = fullres.seen(output, bundle.device, seen.factor).image
    posted = as_posted(optimizer.upload_view, seen.image, delivered, optimizer.target)
    report = CloakReport(
        target_style=target_style, bundle=bundle.name, model=bundle.source,
        protection_note=bundle.protection_note,
        width=shape[1], height=shape[0], budget=settings.budget, linf_cap=settings.linf,
        steps_run=optimizer.steps_run, kept_step=optimizer.kept_step,
        stopped=optimizer.stopped, goal=settings.goal,
        encoder_passes=optimizer.passes, seed=settings.seed, seconds=0.0,
        **_measure(bundle, optimizer, delivered, posted, image, output))
    report.seconds = time.perf_counter() - started
    return CloakResult(image=output, report=report,
                       posted=tuple(image_array(picture) for picture in posted))
