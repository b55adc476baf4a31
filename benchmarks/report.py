"""Turn a run's raw samples (``results/latest.json``) into the markdown table, the issue-3 target
check and the PNG chart. ``python benchmarks/report.py results/latest.json`` re-renders them."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path
from typing import Any

__all__ = ["check_targets", "medians", "render_chart", "render_markdown"]

LIMIT = "bare-aiohttp"
DIRECT = "direct"
MODES = {"plain": "chat, non-streamed", "stream": "chat, streamed (20 chunks)"}
Run = dict[str, Any]
Cell = dict[str, float]


def medians(run: Run, target: str, mode: str, conc: int) -> Cell | None:
    """Median figures of one target in one cell, or ``None`` when it was not measured."""
    samples = run["samples"].get(f"{target}|{mode}|{conc}")
    if not samples:
        return None
    keys = ("rps", "p50_ms", "p99_ms", "cpu_ms", "errors", "requests")
    return {key: statistics.median(float(s[key]) for s in samples) for key in keys}


def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    return f"{value:,.{digits}f}"


def render_markdown(run: Run) -> str:
    meta = run["meta"]
    targets = run["targets"]
    lines = [
        f"# Benchmark results: {meta['date']}",
        "",
        f"Machine: {meta['cpu']}, `nproc` = {meta['nproc']}, {meta['kernel']}; Python {meta['python']}; "
        f"server: uvicorn {meta['uvicorn']} (loop `{meta['loop']}`, http `{meta['http']}`), 1 worker per target; "
        f"pinning: {meta['pinning']}; load: {meta['loadgen']}; {meta['duration']:g} s per measurement, "
        f"{meta['reps']} interleaved repetitions, medians. Versions: {meta['versions']}. "
        f"Package at {meta.get('commit', 'unknown')}.",
        "",
        _foreign_note(run),
        "",
        "Targets: " + "; ".join(f"`{t['name']}` = {t['label']}" for t in targets) + ".",
        "",
        "| workload | c | target | req/s | p50 ms | p99 ms | added p50 ms vs direct | CPU ms/req | x limit | errors |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode in run["modes"]:
        for conc in run["concurrency"]:
            direct = medians(run, DIRECT, mode, conc)
            limit = medians(run, LIMIT, mode, conc)
            for target in targets:
                cell = medians(run, target["name"], mode, conc)
                if cell is None:
                    continue
                added = cell["p50_ms"] - direct["p50_ms"] if direct and target["name"] != DIRECT else None
                ratio = cell["rps"] / limit["rps"] if limit and limit["rps"] else None
                lines.append(
                    f"| {MODES[mode]} | {conc} | {target['name']} | {cell['rps']:,.0f} | {cell['p50_ms']:.2f} | "
                    f"{cell['p99_ms']:.2f} | {_fmt(added)} | {cell['cpu_ms']:.3f} | {_fmt(ratio)} | "
                    f"{cell['errors']:.0f} |"
                )
    lines += [
        "",
        "CPU ms/req: utime+stime of the target's server process (all threads: the export worker and the",
        "OTLP batch thread included; for `direct`, the fake provider itself) over the measurement, divided",
        "by the requests served. x limit: req/s over the bare aiohttp proxy's in the same cell.",
        "",
        "| target | RSS after warm-up MB | peak RSS (VmHWM) MB |",
        "|---|---:|---:|",
    ]
    for target in targets:
        memory = run["memory"].get(target["name"], {})
        lines.append(
            f"| {target['name']} | {_fmt(memory.get('rss_after_warmup'), 1)} | {_fmt(memory.get('peak'), 1)} |"
        )
    otlp = run.get("otlp")
    if otlp:
        lines += [
            "",
            f"OTLP receiver: {otlp['spans']:,} spans in {otlp['requests']:,} exports for {otlp['records']:,} "
            f"records in the every-sink gateways' log stores: {otlp['spans'] / max(1, otlp['records']):.2f} spans "
            f"and {otlp['records'] / max(1, otlp['requests']):.1f} records per export call.",
        ]
    checks = check_targets(run)
    if checks:
        lines += ["", "## Issue 3 targets", "", "| target | measured | status |", "|---|---|---|"]
        lines += [f"| {goal} | {measured} | {status} |" for goal, measured, status in checks]
    return "\n".join(lines) + "\n"


def _foreign_note(run: Run) -> str:
    loads = sorted(
        float(s["foreign_cores"]) for samples in run["samples"].values() for s in samples if "foreign_cores" in s
    )
    if not loads:
        return ""
    meta = run["meta"]
    limit = meta.get("max_foreign", 0.3)
    over = sum(1 for load in loads if load > limit)
    retries = meta.get("retries", 2)
    policy = (
        f"samples above {limit:g} cores were measured again, at most {retries} more time(s)"
        if retries
        else "no re-measurement"
    )
    if meta.get("quiet_wait"):
        policy += f", and each sample first waited up to {meta['quiet_wait']:g} s for a quieter machine"
    return (
        f"Other processes on the machine (not part of the benchmark) used a median {statistics.median(loads):.2f} "
        f"and at most {loads[-1]:.2f} of the {meta['nproc']} cores during the measurements ({policy}); "
        f"{over} of {len(loads)} kept samples were taken while they used more than {limit:g} cores."
    )


def _ratios(run: Run, target: str, other: str, modes: list[str], concs: list[int]) -> list[tuple[str, float]]:
    found = []
    for mode in modes:
        for conc in concs:
            a, b = medians(run, target, mode, conc), medians(run, other, mode, conc)
            if a and b and b["rps"]:
                found.append((f"{mode} c={conc}", a["rps"] / b["rps"]))
    return found


def _ratio_check(found: list[tuple[str, float]], goal: float) -> tuple[str, str]:
    if not found:
        return "not measured", "n/a"
    worst = min(found, key=lambda item: item[1])
    shown = ", ".join(f"{where} {ratio:.2f}x" for where, ratio in found)
    status = (
        "met" if worst[1] >= goal else f"NOT met (worst {worst[0]}: {worst[1]:.2f}x, {worst[1] / goal:.0%} of goal)"
    )
    return shown, status


def check_targets(run: Run) -> list[tuple[str, str, str]]:
    """Where each issue-3 target stands in this run: (goal, measured, status)."""
    concs = [c for c in run["concurrency"] if c > 1]
    modes = list(run["modes"])
    checks: list[tuple[str, str, str]] = []
    for name, goal in (("gw-all", 0.5), ("gw-off", 0.8)):
        measured, status = _ratio_check(_ratios(run, name, LIMIT, modes, concs), goal)
        checks.append((f"`{name}` ≥ {goal}x limit req/s (c>1, both workloads)", measured, status))
    if any(t["name"] == "litellm" for t in run["targets"]):
        measured, status = _ratio_check(_ratios(run, "gw-all", "litellm", modes, run["concurrency"]), 20.0)
        checks.append(("`gw-all` ≥ 20x LiteLLM req/s", measured, status))
    measured, status = _ratio_check(_ratios(run, "gw-all", "bare-httpx", modes, run["concurrency"]), 1.0)
    checks.append(("`gw-all` ≥ 1x bare httpx proxy req/s", measured, status))
    cpu = [(c, medians(run, "gw-all", "plain", c)) for c in run["concurrency"]]
    cpu_found = [(c, cell["cpu_ms"]) for c, cell in cpu if cell]
    if cpu_found:
        worst = max(value for _, value in cpu_found)
        shown = ", ".join(f"c={c} {value:.3f} ms" for c, value in cpu_found)
        status = "met" if worst <= 0.25 else f"NOT met (worst {worst:.3f} ms, {worst / 0.25:.1f}x the budget)"
        checks.append(("`gw-all` CPU ≤ 0.25 ms per non-streamed request", shown, status))
    for name in ("gw-all", "gw-off"):
        added = []
        for mode in modes:
            cell, direct = medians(run, name, mode, 1), medians(run, DIRECT, mode, 1)
            if cell and direct:
                added.append((mode, cell["p50_ms"] - direct["p50_ms"]))
        if added:
            worst = max(value for _, value in added)
            shown = ", ".join(f"{mode} +{value:.2f} ms" for mode, value in added)
            status = "met" if worst <= 0.5 else f"NOT met (worst +{worst:.2f} ms, {worst / 0.5:.1f}x the budget)"
            checks.append((f"`{name}` added p50 ≤ 0.5 ms at c=1", shown, status))
    rss = run["memory"].get("gw-all", {}).get("rss_after_warmup")
    if rss is not None:
        checks.append(("`gw-all` RSS ≤ 120 MB after warm-up", f"{rss:.1f} MB", "met" if rss <= 120 else "NOT met"))
    return checks


def render_chart(run: Run, path: Path) -> None:
    """Grouped bars: req/s and CPU ms per request, per workload and concurrency, one bar per target."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    targets = [t["name"] for t in run["targets"]]
    modes = list(run["modes"])
    concs = list(run["concurrency"])
    fig, axes = plt.subplots(2, len(modes), figsize=(6.5 * len(modes), 8.5), squeeze=False)
    width = 0.8 / len(targets)
    for col, mode in enumerate(modes):
        for row, (key, title) in enumerate((("rps", "requests/s"), ("cpu_ms", "server CPU ms per request"))):
            ax = axes[row][col]
            for i, target in enumerate(targets):
                values = []
                for conc in concs:
                    cell = medians(run, target, mode, conc)
                    values.append(cell[key] if cell else 0.0)
                xs = [x + (i - (len(targets) - 1) / 2) * width for x in range(len(concs))]
                bars = ax.bar(xs, values, width, label=target)
                if key == "rps":
                    ax.bar_label(bars, labels=[f"{v:,.0f}" for v in values], fontsize=6, rotation=90, padding=2)
            ax.set_xticks(range(len(concs)), [f"c={c}" for c in concs])
            ax.set_title(f"{MODES[mode]}: {title}", fontsize=10)
            if key == "cpu_ms" and "litellm" in targets:
                ax.set_yscale("log")
            ax.grid(axis="y", alpha=0.3)
    axes[0][0].legend(fontsize=7)
    meta = run["meta"]
    fig.suptitle(f"llm-obs benchmarks, {meta['date']}, nproc={meta['nproc']}, medians of {meta['reps']} reps")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    source = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results" / "latest.json")
    run = json.loads(source.read_text())
    out = source.with_suffix(".md")
    out.write_text(render_markdown(run))
    render_chart(run, source.with_suffix(".png"))
    sys.stdout.write(out.read_text())


if __name__ == "__main__":
    main()
