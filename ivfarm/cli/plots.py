"""PNG pictures for the CLI: usage per farm over time, each host's used and free capacity (matplotlib, Agg).

matplotlib is imported when a picture is drawn, so commands that draw none do not pay its start-up.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ivfarm.errors import InvalidInput
from ivfarm.services.compute.hosts import HostView
from ivfarm.services.jobs.accounting import UsageSeries


def _figure(rows: int) -> Any:
    from matplotlib.figure import Figure  # heavy: imported only when drawing

    return Figure(figsize=(10, 3.5 * rows), dpi=100, layout="constrained")


def _save(figure: Any, path: Path) -> None:
    try:
        figure.savefig(path, format="png")
    except OSError as exc:
        raise InvalidInput(f"cannot write {path}: {exc.strerror or exc}") from exc


def usage_plot(usage: UsageSeries, path: Path) -> None:
    """Two panels, stacked by farm: vCPU-hours and memory GB-hours per time slice."""
    figure = _figure(2)
    top, bottom = figure.subplots(2, 1, sharex=True)
    middles = [a + (b - a) / 2 for a, b in zip(usage.edges, usage.edges[1:], strict=False)]
    for axes, data, label in ((top, usage.vcpu_hours, "vCPU-hours"), (bottom, usage.memory_gb_hours, "memory GB-hours")):
        axes.stackplot(middles, *data.values(), labels=list(data), step=None)
        axes.set_ylabel(label)
        axes.grid(alpha=0.3)
        axes.legend(loc="upper left", fontsize="small")
    width = usage.edges[1] - usage.edges[0]
    top.set_title(f"usage per farm ({width.total_seconds() / 3600:.2f} h slices, UTC)")
    bottom.set_xlabel("time (UTC)")
    figure.autofmt_xdate()
    _save(figure, path)


def capacity_plot(hosts: list[HostView], path: Path) -> None:
    """Two panels, one bar per host: used and free vCPUs, used and free memory (GB)."""
    if not hosts:
        raise InvalidInput("no hosts registered: nothing to draw")
    figure = _figure(2)
    cpus, memory = figure.subplots(2, 1)
    names = [h.name for h in hosts]
    for axes, used, total, label in (
            (cpus, [h.used_cpus for h in hosts], [h.schedulable_cpus for h in hosts], "vCPUs"),
            (memory, [h.used_memory_mb / 1024 for h in hosts], [h.schedulable_memory_mb / 1024 for h in hosts],
             "memory (GB)")):
        free = [max(0.0, t - u) for u, t in zip(used, total, strict=True)]
        axes.bar(names, used, color="tab:red", label="used")
        axes.bar(names, free, bottom=used, color="tab:green", label="free")
        axes.set_ylabel(label)
        axes.legend(loc="upper right", fontsize="small")
        axes.grid(axis="y", alpha=0.3)
    cpus.set_title("host capacity")
    _save(figure, path)
