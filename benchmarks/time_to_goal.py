"""How long a cloak takes to protect: the cloak before goals against the new default.

Engineering figures, not protection claims. Side by side in one run, on the sample painting
at 1024 x 720 toward a fixed synthetic target (as benchmarks/visibility.py), it cloaks

- "before goals": the cloak before goals: Adam, its rate annealed over the steps, each view
  in turn, every defended encoder at every step, every step of 500 (`step_rule="adam"`,
  `views_in_turn=True`, `every_family=True`, `quality=500`: a number of steps runs them
  all);
- "signed, no stopping": the new step rule, view order and turns of the encoders, every
  step of 200 (`--new-steps`),
  to compare them with the cloak before goals at every moment;
- "default": the new default, which stops at its goal, at a plateau or at its most steps;
- "faster" (`--runs ... faster`): the `faster` preset, likewise;

on (a) the trained TAEF2 extractor (engine/taef2.py, FLUX.2's latent space: what survives
and how many steps a shift takes) or (b) with `--full-size`, the full-size random-weight
encoders of every defended family (cost only; their shifts say nothing about real VAEs).

With `--estimate-before N` (with `--full-size`, 4 unless given: one step on each view; 0
runs every step, about 9.4 hours on five full-size families on the 2-core CPU) the
cloak before goals runs only N steps and its time is estimated from them: set-up (every
view's targets encoded first, as it did) plus its most steps at their mean time, stated as
an estimate, without shifts.

For each it prints the wall time (set-up, steps and checks; for "before goals", whose
checks exist only to trace it here, their time is left out), steps, encoder passes, why it
stopped, the after-upload shift at its checks (its trace) and, past the step rule's
settling, the shift a run ending there delivers (its best check since settling,
engine/stopping.py), the time at which that shift first reached 0.2, 0.3 and 0.4, and on
the output: each family's shift on the working view and after a typical upload (1024 px,
JPEG q75), the share of the working view's shift kept after JPEG q75 and after Gaussian
noise 0.05 (at 512 px), and the visibility figures. A run named more than once in `--runs`
runs again, interleaved with the others, and its time is the median of its runs (on this
machine the same run's time varied by a sixth from one run to the next); the rest comes
from its first. Beside "before goals", it gives each new run's share of its time and says whether
each new run's delivered shift was at every moment (at every check of either run, the
shift between a run's checks taken as the straight line between them, a run that has ended
holding its output) at least the cloak before goals'.

    python benchmarks/time_to_goal.py                    # TAEF2; about 30 minutes
    python benchmarks/time_to_goal.py --runs default
    python benchmarks/time_to_goal.py --runs default before default signed default
    python benchmarks/time_to_goal.py --full-size --runs before --whole-job faster
    python benchmarks/time_to_goal.py --full-size --whole-job faster --runs
    python benchmarks/time_to_goal.py --runs default --momentum 0 --horizon 60 --seed 1
    python benchmarks/time_to_goal.py --runs default --rate 0.5 0.03 --seed 2

`--momentum`, `--horizon` and `--rate FIRST SETTLED` probe the signed step rule's constants
(engine/cloak.py) in every run that uses it.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from cloak_step import FULL_SIZE, full_size_bundle, machine  # this folder's
from cloak_survival import WEIGHTS, Preprocessing, load_image, long_side, shifts
from PIL import Image

from glaze.engine import cloak as cloak_module
from glaze.engine.cloak import CloakOptimizer, cloak, cloak_views, optimize, see
from glaze.engine.evaluation.countermeasures import gaussian_noise
from glaze.engine.evaluation.synthetic import painting
from glaze.engine.geometry import UPLOAD_LONG_SIDE, whole_view
from glaze.engine.pixels import image_tensor
from glaze.engine.progress import Progress
from glaze.engine.settings import CloakSettings
from glaze.engine.stopping import Stopping, best_of
from glaze.engine.taef2 import measurement_bundle
from glaze.engine.transforms import jpeg
from glaze.engine.visibility import visibility


def measured(multiple: int) -> list[Preprocessing]:
    """What the output's shifts are taken after, at sides that are multiples of what the
    defended encoders need (FLUX.2's: 16)."""
    return [
        Preprocessing("working view", long_side(512, multiple)),
        Preprocessing("typical upload", long_side(UPLOAD_LONG_SIDE, multiple),
                      lambda a: jpeg(a, 75)),
        Preprocessing("JPEG q75 @512", long_side(512, multiple), lambda a: jpeg(a, 75)),
        Preprocessing("Gaussian 0.05 @512", long_side(512, multiple),
                      lambda a: gaussian_noise(a, 0.05)),
    ]


MILESTONES = (0.2, 0.3, 0.4)


@dataclass(frozen=True)
class Run:
    name: str
    fields: dict  # CloakSettings fields over the defaults
    traced_only: bool = False  # its checks exist only to trace it: their time is left out


RUNS = {
    "before": Run("before goals", {"step_rule": "adam", "views_in_turn": True,
                                   "every_family": True}, True),
    "signed": Run("signed, no stopping", {}),
    "default": Run("default", {}),
    "faster": Run("faster", {"quality": "faster"}),
}


# The signed step rule's constants a run can probe: each flag's constant in engine/cloak.py
# and how the flag reads it.
PROBES = {"momentum": ("SIGNED_MOMENTUM", dict(type=float)),
          "horizon": ("SIGNED_HORIZON", dict(type=int)),
          "rate": ("SIGNED_RATE", dict(type=float, nargs=2, metavar=("FIRST", "SETTLED")))}


def seeded(seed: int | None) -> dict:
    """The settings field --seed gives (none: the settings' default seed)."""
    return {} if seed is None else {"seed": seed}


def run_one(run: Run, image: np.ndarray, bundle, goal: torch.Tensor, defend: str,
            steps: int | None, sample: int | None = None,
            seed: int | None = None) -> tuple[np.ndarray | None, dict]:
    """Cloak `image` as `run` says; the output and what it took. With `sample`, run only
    that many steps and estimate the whole run's time from them (no output); `seed`: the
    cloak's (its views' crop and its draws), the settings' default if None."""
    fields = {**run.fields, **seeded(seed)}
    if steps is not None:
        fields["quality"] = steps
    settings = CloakSettings(defend=defend, **fields)
    started = time.perf_counter()
    views = cloak_views(image.shape[:2], settings, bundle)
    optimizer = CloakOptimizer(bundle, see(image, settings, bundle, views),
                               goal.to(bundle.device), settings, views)
    if sample:  # every target first, as the cloak before goals' set-up encoded them, so
        # that the sampled steps are steps alone
        for name in settings.extractors:
            for view in views:
                optimizer.target_of(name, view)
    set_up = time.perf_counter() - started
    if sample:
        step_seconds = []
        for _ in range(sample):
            stepping = time.perf_counter()
            optimizer.step()
            step_seconds.append(time.perf_counter() - stepping)
        mean = float(np.mean(step_seconds))
        return None, {"seconds": set_up + mean * settings.steps, "set_up": set_up,
                      "steps": settings.steps, "stopped": f"estimated from {sample} steps",
                      "passes": optimizer.passes - sample * len(settings.extractors)
                      + settings.steps * len(settings.extractors), "trace": [],
                      "step_seconds": step_seconds}
    output = optimize(optimizer, image, settings, Progress(None))
    seconds = time.perf_counter() - started
    checks = optimizer.stopping.checks
    # The checks' own time, before each check, where it is to be left out.
    before = np.cumsum([0.0, *optimizer.check_seconds])
    before = before if run.traced_only else np.zeros_like(before)
    trace = [(set_up + check.seconds - before[index], check.step, check.weakest)
             for index, check in enumerate(checks)]
    return output, {"seconds": seconds - before[-1], "set_up": set_up,
                    "steps": optimizer.steps_run, "passes": optimizer.passes
                    - (len(checks) * len(settings.extractors) if run.traced_only else 0),
                    "stopped": optimizer.stopped, "trace": trace,
                    "delivered": delivered(trace, optimizer.stopping)}


def delivered(trace: list[tuple[float, int, float]],
              stopping: Stopping) -> list[tuple[float, int, float]]:
    """The shift a run ending at each check of `trace` delivers, as the run's own rule keeps
    it: the check's own before the step rule settles, then the best check since settling."""
    replay, points = Stopping(stopping.goal, stopping.cap, stopping.settled), []
    for (seconds, step, shift), check in zip(trace, stopping.checks, strict=True):
        replay.add(check)
        kept = best_of(replay.settled_checks)
        points.append((seconds, step, shift if kept is None else kept.weakest))
    return points


def shortfalls(new: list[tuple[float, int, float]],
               old: list[tuple[float, int, float]]) -> list[tuple[float, float, float]]:
    """The moments (a check of either run, once both have had one) at which `new`'s shift
    was below `old`'s: (seconds, new's, old's). Between its checks a run's shift is taken
    as the straight line from one to the next; a run that has ended holds its last."""
    def at(points: list[tuple[float, int, float]], moment: float) -> float:
        return float(np.interp(moment, [seconds for seconds, _, _ in points],
                               [shift for _, _, shift in points]))

    start = max(new[0][0], old[0][0])
    moments = sorted({seconds for seconds, _, _ in [*new, *old] if seconds >= start})
    pairs = [(moment, at(new, moment), at(old, moment)) for moment in moments]
    return [(moment, mine, theirs) for moment, mine, theirs in pairs if mine < theirs]


def whole_job(bundle, image: np.ndarray, defend: str, quality: str,
              seed: int | None = None) -> None:
    """Time a whole cloak job at the `quality` preset as `glaze cloak` runs it: the style
    transfer (the demo's Omega), the set-up, the steps, the checks and the report."""
    started = time.perf_counter()
    report = cloak(image, bundle, "Impressionism painting by Claude Monet",
                   CloakSettings(defend=defend, quality=quality, **seeded(seed))).report
    print(f"\nwhole job, {quality}: {time.perf_counter() - started:.0f} s, "
          f"{report.steps_run} steps, {report.encoder_passes} encoder passes, stopped: "
          f"{report.stopped}; after upload " + ", ".join(
              f"{name} {shift.after_upload:.3f}" for name, shift in report.extractors.items()),
          flush=True)


def first_reached(trace: list[tuple[float, int, float]], level: float) -> str:
    for seconds, step, shift in trace:
        if shift >= level:
            return f"{seconds:.0f} s (step {step})"
    return "never"


def compare_with_before(results: dict[str, tuple[np.ndarray | None, dict]]) -> None:
    """Each new run's share of the cloak before goals' time (estimated, where it was), and
    whether its delivered shift was at every moment at least the cloak before goals'."""
    before = results.get(RUNS["before"].name)
    if before is None:
        return
    estimated = " (estimated)" if before[0] is None else ""
    for name, (output, took) in results.items():
        if name == RUNS["before"].name or output is None:
            continue
        print(f"\n{name}: {median_seconds(took):.0f} s "
              f"({', '.join(f'{seconds:.0f}' for seconds in took['times'])}), "
              f"{median_seconds(took) / median_seconds(before[1]):.1%} of before goals' "
              f"time{estimated}")
        if before[0] is not None:
            short = shortfalls(took["delivered"], before[1]["trace"])
            print("  delivered after-upload shift at every moment at least before goals': "
                  + ("yes" if not short else "no, " + ", ".join(
                      f"at {seconds:.0f} s {mine:.3f} against {theirs:.3f}"
                      for seconds, mine, theirs in short)))


def median_seconds(took: dict) -> float:
    """A run's time: the median of its times where --runs named it more than once."""
    return float(np.median(took["times"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--full-size", action="store_true",
                        help="the full-size random-weight encoders of every family (cost)")
    parser.add_argument("--steps", type=int, default=500,
                        help="the steps of the cloak before goals")
    parser.add_argument("--new-steps", type=int, default=200,
                        help="the steps of the new step rule without stopping")
    parser.add_argument("--runs", nargs="*", choices=list(RUNS),
                        default=["before", "signed", "default"],
                        help="the runs, in this order (none: only --whole-job's)")
    parser.add_argument("--estimate-before", type=int, metavar="STEPS",
                        help="run only this many steps of the cloak before goals and estimate "
                        "its time from them (with --full-size: one step per view; 0: run "
                        "every step)")
    parser.add_argument("--weights", type=Path, default=WEIGHTS, help="TAEF2's folder")
    parser.add_argument("--seed", type=int, help="the cloaks' seed (their views' crop and "
                        "draws); the settings' default unless given")
    for flag, (constant, reading) in PROBES.items():
        parser.add_argument(f"--{flag}", **reading, help="probe the signed steps with this "
                            f"instead of engine/cloak.py's {constant}")
    parser.add_argument("--whole-job", metavar="PRESET",
                        help="also time a whole job at this quality preset, style transfer "
                        "and report included")
    args = parser.parse_args()
    torch.manual_seed(0)
    for flag, (constant, _) in PROBES.items():
        value = getattr(args, flag)
        if value is not None:
            setattr(cloak_module, constant, tuple(value) if isinstance(value, list) else value)
    print("signed steps: " + ", ".join(f"{flag} {getattr(cloak_module, constant)}"
                                       for flag, (constant, _) in PROBES.items())
          + (f"; seed {args.seed}" if args.seed is not None else ""))
    if args.full_size:
        bundle, defend = full_size_bundle(None, "bf16", tuple(FULL_SIZE)), ",".join(FULL_SIZE)
        print("FULL-SIZE RANDOM-WEIGHT encoders of every family: cost only")
    else:
        bundle, defend = measurement_bundle(args.weights), "flux2"
        print("TRAINED TAEF2 encoder (FLUX.2's latent space): engineering figures, not "
              "protection claims")
    image = load_image(UPLOAD_LONG_SIDE)
    target = np.asarray(Image.fromarray(painting(512, seed=11)).resize(
        (image.shape[1], image.shape[0]), Image.Resampling.BICUBIC))
    goal = whole_view(image.shape[:2], 512).apply(image_tensor(target))
    print(machine(bundle.device))
    print(f"sample painting {image.shape[1]} x {image.shape[0]}, {bundle.precision}, "
          f"default preset ({CloakSettings().steps} steps at most, goal "
          f"{CloakSettings().goal:.0%})")
    if args.whole_job:
        whole_job(bundle, image, defend, args.whole_job, args.seed)
    estimate = (args.estimate_before if args.estimate_before is not None
                else 4 if args.full_size else 0)  # 0: run every step
    results = {}
    for key in args.runs:
        run = RUNS[key]
        steps = {"before": args.steps, "signed": args.new_steps}.get(key)
        output, took = run_one(run, image, bundle, goal, defend, steps,
                               estimate if key == "before" else None, args.seed)
        print(f"\n{run.name}: {took['seconds']:.0f} s (set-up {took['set_up']:.0f} s), "
              f"{took['steps']} steps, {took['passes']} encoder passes, stopped: "
              f"{took['stopped']}", flush=True)
        if run.name in results:  # again: its time counts toward the median, the rest is kept
            results[run.name][1]["times"].append(took["seconds"])
            continue
        results[run.name] = (output, {**took, "times": [took["seconds"]]})
        if output is None:
            print("  ESTIMATED: its steps took " + ", ".join(
                f"{seconds:.1f}" for seconds in took["step_seconds"]) + " s")
            continue
        print("  after-upload shift at its checks: " + ", ".join(
            f"{seconds:.0f} s {shift:.3f}" for seconds, _, shift in took["trace"]))
        if took["delivered"] != took["trace"]:
            print("  delivered by a run ending there: " + ", ".join(
                f"{seconds:.0f} s {shift:.3f}" for seconds, _, shift in took["delivered"]))
        print("  first reached " + ", ".join(
            f"{level}: {first_reached(took['delivered'], level)}" for level in MILESTONES))
    compare_with_before(results)
    if results:
        table(results, bundle, defend, image, target)


def table(results: dict[str, tuple[np.ndarray | None, dict]], bundle, defend: str,
          image: np.ndarray, target: np.ndarray) -> None:
    """Each run's figures on its output, a row per defended family."""
    print(f"\n{'run':<22} {'seconds':>8} {'steps':>6} {'passes':>7} {'family':>7} "
          f"{'working':>8} {'upload':>7} {'JPEG kept':>10} {'noise kept':>11} "
          f"{'over JND':>9} {'flat SSIM':>10}")
    families = defend.split(",")
    preprocessings = measured(bundle.size_multiple(families))
    for name, (output, took) in results.items():
        if output is None:
            continue
        seen = visibility(image_tensor(image), image_tensor(output))
        for family in families:
            working, upload, after_jpeg, noisy = (shift for (shift,) in shifts(
                bundle, family, image, [output], target, preprocessings))
            print(f"{name:<22} {median_seconds(took):>8.0f} {took['steps']:>6} "
                  f"{took['passes']:>7} {family:>7} {working:>8.3f} {upload:>7.3f} "
                  f"{after_jpeg / working:>10.0%} {noisy / working:>11.0%} "
                  f"{seen.over_jnd:>9.1%} {seen.flat_ssim:>10.3f}", flush=True)


if __name__ == "__main__":
    main()
