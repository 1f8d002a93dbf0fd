"""``pylog bench --plot FILE.png``: one PNG drawn from the JSON document alone.

``plot(document, path)`` reads nothing but ``document`` (pylog/bench/report.py's JSON: ``rows``,
``scaling``, ``machine``, ``quick``, ``repeat``, ``started``), so a saved ``--json`` file can be
drawn again later, on another machine (``pylog bench --from-json FILE --plot OUT.png``:
``from_json``). Panels, top to bottom:

1. throughput: every throughput row (not the scaling group) as a group of bars, one bar per
   contender (native, reference, os.write, sqlite3, twainmq; always the same colours), log-scale
   because the contenders differ by orders of magnitude; each group is labelled with its
   workload and unit (units differ between workloads, so compare bars within a group);
2. latency: every percentile row (``p50``, ``p99``, ``p99.9``...) likewise, microseconds, log;
3. scaling: append throughput against log size, and seek time by offset (solid) and by
   timestamp (dashed) against log size, per engine, both axes log (a flat line is flat append, a
   straight rising line on these axes would be polynomial growth).

A row that failed its check is drawn without bars and labelled ``(wrong)``; a panel with nothing
to draw says so. matplotlib is imported here only (an optional extra: ``pip install
'pylog[plot]'``), through the Agg canvas: a file is written, never a window opened, and no
global pyplot state is touched.

Thread-safety: each call builds its own Figure.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import Any

from pylog.cli.common import CliError

#: the contenders in drawing order, and their colours (the same in every panel and every plot)
COLOURS = {
    "native": "#1f77b4",
    "reference": "#aec7e8",
    "os.write": "#7f7f7f",
    "sqlite3": "#2ca02c",
    "twainmq": "#d62728",
}
ENGINE_STYLES = {"native": COLOURS["native"], "reference": "#ff7f0e"}
MISSING_MATPLOTLIB = "--plot needs matplotlib: pip install 'pylog[plot]'"


def _matplotlib() -> tuple[Any, Any]:
    """``(Figure, FigureCanvasAgg)``; a ``CliError`` saying how to install matplotlib."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise CliError(MISSING_MATPLOTLIB) from None
    return Figure, FigureCanvasAgg


def throughput_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    return [r for r in document.get("rows", []) if r["metric"] == "throughput" and r["group"] != "scaling"]


def latency_rows(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Percentile rows (metric ``p`` + digits), outside the scaling group."""
    return [
        r
        for r in document.get("rows", [])
        if r["group"] != "scaling" and r["metric"][:1] == "p" and r["metric"][1:2].isdigit()
    ]


def contenders_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The contenders with a figure in any of ``rows``, in ``COLOURS`` order (then the others)."""
    present = {name for row in rows for name in row.get("figures", {})}
    return [name for name in COLOURS if name in present] + sorted(present - set(COLOURS))


def _bars(axes: Any, rows: Sequence[dict[str, Any]], labels: Sequence[str], ylabel: str, empty: str) -> None:
    """Grouped log-scale bars: one group per row, one bar per contender."""
    if not rows:
        axes.text(0.5, 0.5, empty, ha="center", va="center", transform=axes.transAxes)
        axes.set_axis_off()
        return
    names = contenders_of(rows)
    width = 0.8 / max(len(names), 1)
    drawn: set[str] = set()
    for i, name in enumerate(names):
        xs, heights = [], []
        for x, row in enumerate(rows):
            value = row.get("figures", {}).get(name)
            if row.get("ok", True) and value is not None and math.isfinite(value) and value > 0:
                xs.append(x - 0.4 + width * (i + 0.5))
                heights.append(value)
        if xs:
            axes.bar(xs, heights, width, label=name, color=COLOURS.get(name))
            drawn.add(name)
    if drawn:
        axes.set_yscale("log")
        axes.legend(loc="upper right", fontsize="small", ncols=len(drawn))
    axes.set_xticks(range(len(rows)))
    axes.set_xticklabels(labels, rotation=35, ha="right", fontsize="small")
    axes.set_xlim(-0.6, len(rows) - 0.4)
    axes.set_ylabel(ylabel)
    axes.grid(axis="y", which="major", alpha=0.3)


def _label(row: dict[str, Any], with_metric: bool) -> str:
    name = f"{row['workload']} {row['metric']}" if with_metric else row["workload"]
    return f"{name} ({row['unit']})" + ("" if row.get("ok", True) else " (wrong)")


def _curves(axes: Any, scaling: dict[str, Any], key: str, styles: dict[str, str], ylabel: str) -> bool:
    """Lines of ``scaling[key]`` per engine against ``scaling["sizes"]``; whether any was drawn."""
    sizes = scaling.get("sizes", [])
    drawn = False
    for engine, series in scaling.get(key, {}).items():
        points = [(s, v) for s, v in zip(sizes, series, strict=False) if v is not None and v > 0]
        if not points:
            continue
        xs, ys = zip(*points, strict=True)
        axes.plot(
            xs,
            ys,
            styles.get("line", "-"),
            marker="o",
            color=ENGINE_STYLES.get(engine),
            label=f"{engine}{styles.get('suffix', '')}",
        )
        drawn = True
    if drawn:
        axes.set_xscale("log")
        axes.set_yscale("log")
        axes.set_xlabel("records in the log")
        axes.set_ylabel(ylabel)
        axes.grid(which="both", alpha=0.3)
    return drawn


def _scaling_panels(append_axes: Any, seek_axes: Any, scaling: dict[str, Any] | None) -> None:
    if not scaling or not scaling.get("sizes"):
        for axes in (append_axes, seek_axes):
            axes.text(
                0.5,
                0.5,
                "no scaling run in this document",
                ha="center",
                va="center",
                transform=axes.transAxes,
            )
            axes.set_axis_off()
        return
    findings = scaling.get("findings", {})
    if _curves(append_axes, scaling, "append", {}, "append throughput (records/s)"):
        # why a wide y range: on a tight log axis, run-to-run noise would look like a trend
        rates = [v for series in scaling["append"].values() for v in series if v]
        append_axes.set_ylim(min(rates) / 4, max(rates) * 4)
        append_axes.set_title(
            _with_verdicts("append while the log grows", findings, "append_flat", "flat", "NOT flat"),
            fontsize="medium",
        )
        append_axes.legend(fontsize="small")
    drawn = _curves(seek_axes, scaling, "seek_offset_us", {"suffix": " by offset"}, "seek (us per call)")
    drawn |= _curves(
        seek_axes,
        scaling,
        "seek_timestamp_us",
        {"line": "--", "suffix": " by timestamp"},
        "seek (us per call)",
    )
    if drawn:
        seek_axes.set_title(
            _with_verdicts(
                "random seek while the log grows", findings, "seek_log_like", "log-like", "MORE than log-like"
            ),
            fontsize="medium",
        )
        seek_axes.legend(fontsize="small")


def _with_verdicts(title: str, findings: dict[str, Any], key: str, yes: str, no: str) -> str:
    """``title`` followed by each engine's verdict on ``key`` of the scaling findings (the
    engines without one are left out)."""
    verdicts = [f"{e}: {yes if f[key] else no}" for e, f in findings.items() if f.get(key) is not None]
    return title + (f" ({', '.join(verdicts)})" if verdicts else "")


def title(document: dict[str, Any]) -> str:
    machine = document.get("machine", {})
    kind = "quick (smoke test)" if document.get("quick") else "default suite"
    where = ", ".join(
        part
        for part in (
            machine.get("cpu"),
            f"{machine['cores']} cores" if machine.get("cores") else None,
            machine.get("filesystem"),
        )
        if part
    )
    return f"pylog bench, {kind}, medians of {document.get('repeat', '?')} runs, {document.get('started', '')}\n{where}"


def plot(document: dict[str, Any], path: str | os.PathLike[str]) -> None:
    """Draw ``document`` (a ``pylog bench`` JSON document) as one PNG at ``path``."""
    figure_class, canvas_class = _matplotlib()
    throughput, latency = throughput_rows(document), latency_rows(document)
    width = max(12.0, 0.55 * max(len(throughput), len(latency)) + 4)
    figure = figure_class(figsize=(width, 15), layout="constrained")
    canvas_class(figure)
    grid = figure.add_gridspec(3, 2, height_ratios=[1.2, 1, 1])
    top = figure.add_subplot(grid[0, :])
    _bars(
        top,
        throughput,
        [_label(r, False) for r in throughput],
        "throughput (the row's unit, log)",
        "no throughput workloads in this document",
    )
    top.set_title("throughput per workload (higher is better)", fontsize="medium")
    middle = figure.add_subplot(grid[1, :])
    _bars(
        middle,
        latency,
        [_label(r, True) for r in latency],
        "microseconds (log)",
        "no latency workloads in this document",
    )
    middle.set_title("latency percentiles (lower is better)", fontsize="medium")
    _scaling_panels(figure.add_subplot(grid[2, 0]), figure.add_subplot(grid[2, 1]), document.get("scaling"))
    figure.suptitle(title(document), fontsize="medium")
    figure.savefig(os.fspath(path), format="png", dpi=100)


def from_json(json_path: str, png_path: str | None) -> int:
    """``pylog bench --from-json FILE --plot OUT.png``: draw a saved document; exit code 0. A
    ``CliError`` for a missing ``--plot``, an unreadable file or one that is not a bench document
    (also when a row lacks what the plot draws)."""
    if not png_path:
        raise CliError("--from-json needs --plot FILE.png (it draws a saved document, runs nothing)")
    try:
        with open(json_path) as f:
            document = json.load(f)
    except OSError as error:
        raise CliError(f"cannot read {json_path}: {error.strerror or error}") from None
    except ValueError as error:
        raise CliError(f"{json_path} is not JSON: {error}") from None
    if not isinstance(document, dict) or not isinstance(document.get("rows"), list):
        raise CliError(f"{json_path} is not a pylog bench document (no rows)")
    try:
        plot(document, png_path)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        # why here and not per field: the document is the user's file; any field plot() cannot
        # use (a row that is not an object, a missing metric) means it is not one bench wrote
        raise CliError(
            f"{json_path} is not a pylog bench document ({type(error).__name__}: {error})"
        ) from None
    return 0
