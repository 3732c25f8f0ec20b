"""The results folder's report: results.json, results.md (Table 2's shape) and results.png.

The first line of the Markdown and the first field of the JSON say which models produced the
numbers; with any demo (tiny random) model they say first that the numbers carry NO meaning
about protection.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path

from ..storage import atomic_path
from .countermeasures import UNITS

NO_MEANING = ("These numbers carry NO meaning about protection: they were produced with tiny "
              "random demo models, which know nothing about art.")


QUICK_RUN = ("These numbers carry NO meaning about protection: a --quick run shortens the "
             "fine-tune and the cloak to test the set-up, not to measure anything.")


def headline(summary: dict) -> str:
    """One line: whether the numbers mean anything, and which models and seeds made them."""
    models = summary["models"]
    names = (f"text-to-image {models['bundle']}, mimic {models.get('mimic_family', 'sd')} "
             f"{models.get('mimic', models['bundle'])}, CLIP {models['clip']}, "
             f"upscaler {models['upscaler'] or 'none'}")
    seeds = (f"seeds: split/train {summary['seeds']['run']}, "
             f"generation {summary['seeds']['generation']}")
    if summary["models"]["demo"]:
        return f"{NO_MEANING} Models: {names}; {seeds}."
    if not summary["meaningful"]:
        return f"{QUICK_RUN} Models: {names}; {seeds}."
    return f"Glaze evaluation. Models: {names}; {seeds}."


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.0f}%"


def _number(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _extractors(cells: list[dict]) -> list[str]:
    """The extractors whose feature shifts some cell reports, in the order first seen."""
    names: list[str] = []
    for cell in cells:
        names += [name for name in cell.get("extractor_shifts") or {} if name not in names]
    return names


def _condition_rows(cells: list[dict]) -> list[str]:
    extractors = _extractors(cells)
    shift_columns = "".join(f" {name.upper()} feature shift |" for name in extractors)
    rows = ["| Protection | Budget p (LPIPS) | L_inf cap | Share cloaked | Measured max change "
            f"|{shift_columns} Genre shift rate | CLIP similarity to held-out works |",
            "|---|---|---|---|---|" + "---|" * len(extractors) + "---|---|"]
    for cell in cells:
        if cell["countermeasure"]["kind"] != "none":
            continue
        condition = cell["condition"]
        unprotected = condition["kind"] == "unprotected"
        cap = f"{255 * cell['linf_cap']:.1f}/255"
        shifts = cell.get("extractor_shifts") or {}
        rows.append(
            f"| {condition['kind']} | {'—' if unprotected else condition['budget']} "
            f"| {'—' if unprotected else cap} "
            f"| {'—' if unprotected else _percent(condition['share'])} "
            f"| {255 * cell['measured_linf']:.1f}/255 |"
            + "".join(f" {_percent(shifts.get(name))} |" for name in extractors)
            + f" {_percent(cell.get('shift_rate'))} | {_number(cell.get('clip_similarity'))} |")
    return rows


def _countermeasure_rows(cells: list[dict], skipped: list[dict]) -> list[str]:
    table: dict[str, dict[str, dict]] = defaultdict(dict)
    columns: list[str] = []
    for cell in cells + skipped:
        name = cell["condition_name"]
        if cell["countermeasure"]["kind"] == "none" or name in columns:
            continue
        columns.append(name)
    if not columns:
        return []
    for cell in cells + skipped:
        table[cell["countermeasure_name"]][cell["condition_name"]] = cell
    rows = [f"| Countermeasure | {' | '.join(columns)} |", "|---" * (len(columns) + 1) + "|"]
    for name, by_condition in table.items():
        values = []
        for column in columns:
            cell = by_condition.get(column)
            if cell is None:
                values.append("")
            elif cell.get("status") == "skipped":
                values.append("skipped")
            else:
                values.append(_percent(cell["shift_rate"]))
        rows.append(f"| {name} | {' | '.join(values)} |")
    return rows


def markdown(summary: dict) -> str:
    """The report as Markdown: headline, command, the two tables, reading notes."""
    cells, skipped = summary["cells"], summary["skipped"]
    lines = [headline(summary), "", "# Style-mimicry evaluation", "",
             f"Command: `{summary['command']}`", "",
             f"Artist: {summary['artist']['folder']} ({summary['artist']['works']} works: "
             f"{len(summary['artist']['training'])} for training, "
             f"{len(summary['artist']['held_out'])} held out); artist genre "
             f"**{summary['artist']['genre']}** ({summary['artist']['genre_source']}); "
             f"Glaze target style: {summary['target_style']}.", "",
             f"Held-out works themselves: genre shift rate "
             f"{_percent(summary['reference']['shift_rate'])} (how often CLIP misplaces "
             "the artist's own works).", "",
             "## Protection conditions (no countermeasure)", "", *_condition_rows(cells), "",
             "Feature shift: the share of the distance to the target style's features that the "
             "cloak closed, per defended extractor, mean over the cloaked works (— where a "
             "protection has no style target). Genre shift rate: share of mimicked images "
             "whose top-3 CLIP genres exclude the artist's genre (higher = the mimicry missed "
             "the style). CLIP similarity: mean cosine to the centroid of the held-out works "
             "(lower = less alike).", ""]
    rows = _countermeasure_rows(cells, skipped)
    if rows:
        lines += ["## Countermeasures (genre shift rate; applied to the training set before "
                  "fine-tuning)", "", *rows, ""]
    for cell in skipped:
        lines.append(f"- {cell['name']}: {cell['reason']}")
    return "\n".join(lines).rstrip() + "\n"


def plot(summary: dict, path: Path) -> None:
    """Shift rate vs budget and vs each countermeasure's strength (matplotlib, Agg)."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot

    cells = summary["cells"]
    kinds = sorted({c["countermeasure"]["kind"] for c in cells} - {"none"})
    columns = min(3, 1 + len(kinds))
    rows = -(-(1 + len(kinds)) // columns)
    figure, axes = pyplot.subplots(rows, columns, figsize=(4.5 * columns, 3.6 * rows),
                                   squeeze=False)
    axes = axes.flatten()
    _plot_budget(axes[0], cells)
    for axis, kind in zip(axes[1:], kinds, strict=False):
        _plot_countermeasure(axis, cells, kind)
    for axis in axes[1 + len(kinds):]:
        axis.set_visible(False)
    title = headline(summary) if summary["meaningful"] else (
        "DEMO MODELS" if summary["models"]["demo"] else "QUICK RUN") + \
        ": these numbers carry NO meaning about protection"
    figure.suptitle(title, fontsize=8, wrap=True)
    figure.tight_layout()
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format="png", dpi=100)
    pyplot.close(figure)


def _plot_budget(axis, cells: list[dict]) -> None:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for cell in cells:
        condition = cell["condition"]
        if cell["countermeasure"]["kind"] != "none" or condition["share"] != 1.0:
            continue
        if condition["kind"] == "unprotected":
            axis.axhline(cell["shift_rate"], color="grey", linestyle="--", label="unprotected")
        else:
            series[condition["kind"]].append((condition["budget"], cell["shift_rate"]))
    for kind, points in sorted(series.items()):
        points.sort()
        axis.plot(*zip(*points, strict=True), marker="o", label=kind)
    axis.set(xlabel="budget p (LPIPS)", ylabel="genre shift rate", ylim=(-0.05, 1.05),
             title="shift rate vs budget")
    axis.legend(fontsize=7)


def _plot_countermeasure(axis, cells: list[dict], kind: str) -> None:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for cell in cells:
        if cell["countermeasure"]["kind"] == kind:
            series[cell["condition_name"]].append((cell["countermeasure"]["strength"],
                                                   cell["shift_rate"]))
    baseline = {cell["condition_name"]: cell["shift_rate"] for cell in cells
                if cell["countermeasure"]["kind"] == "none"}
    for name, points in sorted(series.items()):
        points.sort()
        line, = axis.plot(*zip(*points, strict=True), marker="o", label=name)
        if name in baseline:  # the same condition without the countermeasure
            axis.axhline(baseline[name], color=line.get_color(), linestyle=":",
                         label=f"{name}, no countermeasure")
    axis.set(xlabel=UNITS[kind], ylabel="genre shift rate", ylim=(-0.05, 1.05), title=kind)
    axis.legend(fontsize=7)


def write(summary: dict, folder: Path) -> dict[str, Path]:
    """Write results.json, results.md and results.png into `folder`; return their paths."""
    paths = {"json": folder / "results.json", "markdown": folder / "results.md",
             "plot": folder / "results.png"}
    with atomic_path(paths["json"]) as temporary:  # field order kept: the note comes first
        temporary.write_text(json.dumps(summary, indent=2) + "\n")
    with atomic_path(paths["markdown"]) as temporary:
        temporary.write_text(markdown(summary))
    plot(summary, paths["plot"])
    return paths
