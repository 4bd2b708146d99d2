"""The PNG plots (matplotlib) drawn from a results dict beside its JSON file.

matplotlib is imported inside the functions, with the Agg backend: only drawing
needs it, and it must work without a display.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks.report.values import _get


def _plots(results: dict, out_dir: Path, name: str) -> dict[str, Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    made: dict[str, Path] = {}
    tag = " (QUICK smoke run, shared machine)" if results["run"]["quick"] else ""

    # Latency distributions (CDFs, log x).
    curves = [
        ("PlaceTrade at half peak", _get(results, "placement.half_peak.cdf")),
        ("place→filled at half peak", _get(results, "end_to_end.half_peak.cdf")),
        ("relay lag (commit→append)", _get(results, "relay.lag.cdf")),
        ("naive 100 ms relay lag", _get(results, "relay.naive_lag.cdf")),
        ("FIX: acceptance→filled at idle", _get(results, "fix.idle.cdf")),
        ("FIX: the demo's burst", _get(results, "fix.burst.cdf")),
    ]
    curves = [(label, c) for label, c in curves if c and c.get("ms")]
    if curves:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        for label, cdf in curves:
            xs = [max(0.05, x) for x in cdf["ms"]]
            ax.plot(xs, [q * 100 for q in cdf["q"]], marker=".", label=label)
        ax.set_xscale("log")
        ax.set_xlabel("latency (ms, log scale)")
        ax.set_ylabel("percentile")
        ax.axhline(99, color="grey", lw=0.6, ls=":")
        ax.axhline(50, color="grey", lw=0.6, ls=":")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(loc="lower right", fontsize=8)
        ax.set_title("Latency distributions" + tag, fontsize=10)
        made["latency"] = _save(fig, out_dir / f"{name}-latency.png")

    # Placement sweep.
    sweep = _get(results, "placement.sweep")
    if sweep:
        fig, ax = plt.subplots(figsize=(8, 4.8))
        xs = [p["concurrency"] for p in sweep]
        ax.plot(xs, [p["tps"] for p in sweep], marker="o", label="PlaceTrade/s (HTTP)")
        for label, path, style in [
            ("pgbench tpcb-like", "placement.pgbench_tpcb_tps", "--"),
            ("pgbench -f placement.sql", "placement.pgbench_placement_sql_tps", ":"),
        ]:
            value = _get(results, path)
            if value:
                ax.axhline(value, ls=style, color="grey")
                ax.annotate(
                    f"{label} @ c={_get(results, 'placement.pgbench_clients')}: "
                    f"{value:,.0f}",
                    (xs[0], value),
                    fontsize=8,
                    va="bottom",
                )
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("transactions/s (log)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Placement throughput vs concurrency" + tag, fontsize=10)
        made["placement"] = _save(fig, out_dir / f"{name}-placement.png")

    # Failover times.
    kills = _get(results, "failover.kills") or []
    zombies = _get(results, "failover.zombies") or []
    timeout = _get(results, "failover.session_timeout_negotiated_s")
    if kills or zombies:
        fig, ax = plt.subplots(figsize=(8, 4.2))
        if kills:
            ax.plot(
                range(1, len(kills) + 1),
                [k["kill_to_filled_s"] for k in kills],
                "o",
                label="SIGKILL → successor's fill",
            )
        if zombies:
            ax.plot(
                range(1, len(zombies) + 1),
                [z["stop_to_filled_s"] for z in zombies],
                "s",
                label="SIGSTOP → successor's fill",
            )
        if timeout:
            ax.axhline(timeout, color="grey", ls="--", label="session timeout")
            ax.axhline(
                1.5 * timeout, color="red", ls=":", label="1.5 x timeout (target)"
            )
        ax.set_xlabel("round")
        ax.set_ylabel("seconds")
        ax.set_ylim(bottom=0)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
        ax.set_title("Failover" + tag, fontsize=10)
        made["failover"] = _save(fig, out_dir / f"{name}-failover.png")

    # Scaling curves.
    grid = _get(results, "scale.grid") or []
    if grid:
        fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4.4))
        for topics in sorted({p["topics"] for p in grid}):
            points = sorted(
                (p for p in grid if p["topics"] == topics), key=lambda p: p["executors"]
            )
            left.plot(
                [p["executors"] for p in points],
                [p["e2e_tps"] or 0 for p in points],
                marker="o",
                label=f"{topics} topic{'s' if topics > 1 else ''}",
            )
        left.set_xlabel("executors")
        left.set_ylabel("end-to-end trades/s")
        left.set_xticks(sorted({p["executors"] for p in grid}))
        left.set_ylim(bottom=0)
        left.grid(True, alpha=0.3)
        left.legend(fontsize=8)
        left.set_title("Throughput vs executors" + tag, fontsize=9)
        labels = [f"{p['topics']}tx{p['executors']}e" for p in grid]
        xs = range(len(grid))
        left_bars = [p["leaders_max"] for p in grid]
        right.bar([x - 0.2 for x in xs], left_bars, width=0.4, label="most topics led")
        right.bar(
            [x + 0.2 for x in xs],
            [p["leaders_min"] for p in grid],
            width=0.4,
            label="fewest topics led",
        )
        right.plot(list(xs), [p["share"] for p in grid], "k_", ms=18, label="ceil(T/E)")
        right.set_xticks(list(xs))
        right.set_xticklabels(labels, rotation=45, fontsize=8)
        right.set_ylabel("topics led per executor")
        right.legend(fontsize=8)
        right.set_title("Leadership spread", fontsize=9)
        fig.tight_layout()
        made["scale"] = _save(fig, out_dir / f"{name}-scale.png")
    return made


def _save(fig, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    return path
