"""Run every benchmark, print one table, write benchmarks/results.json and draw
benchmarks/rate.png (calls per second over time at the real 10/s limit).

    python -m benchmarks                # full forms (about 8 minutes)
    python -m benchmarks --quick        # short forms (about 3 minutes)
    python -m benchmarks --only soak    # re-run one part, update results.json
    python -m benchmarks --table        # the table and plot from results.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

from . import client_overhead, fanout, rate_fidelity, settle, sim_throughput, soak
from ._common import machine

HERE = Path(__file__).resolve().parent


def _rows(results: dict[str, Any]) -> list[tuple[str, str, object, str, bool | None]]:
    rf, st, fo = results["rate_fidelity"], results["sim_throughput"], results["fanout"]
    se, co, so = results["settle"], results["client_overhead"], results["soak"]
    a, b, c = fo["real_rate"], fo["many_ids"], fo["urgent"]
    rows = [
        (
            "rate fidelity",
            "max calls in any sliding 1 s",
            rf["max_in_sliding_second"],
            "<= 10",
            rf["max_in_sliding_second"] <= 10,
        ),
        (
            "rate fidelity",
            "achieved rate /s",
            rf["achieved_rate"],
            ">= 9.8",
            rf["achieved_rate"] >= 9.8,
        ),
        ("rate fidelity", "429s", rf["throttled_429"], "0", rf["throttled_429"] == 0),
        (
            "simulator",
            "requests/s",
            st["requests_per_second"],
            ">= 2000",
            st["requests_per_second"] >= 2000,
        ),
        ("fan-out (a)", "elapsed s (floor)", f"{a['elapsed_s']} ({a['floor_s']})", "", None),
        (
            "fan-out (a)",
            "calls per message",
            a["calls_per_message"],
            "<= 1.01",
            a["calls_per_message"] <= 1.01,
        ),
        (
            "fan-out (a)",
            "max in sliding 1 s / 429s",
            f"{a['max_in_sliding_second']} / {a['throttled_429']}",
            "<= 10 / 0",
            a["max_in_sliding_second"] <= 10 and a["throttled_429"] == 0,
        ),
        (
            "fan-out (b)",
            f"peak RSS growth MB ({b['ids']} IDs)",
            b["peak_rss_growth_mb"],
            "< 50",
            b["peak_rss_growth_mb"] < 50,
        ),
        ("fan-out (b)", "client CPU per message us", b["client_cpu_per_message_us"], "", None),
        (
            "fan-out (c)",
            "urgent send p99 ms",
            c["urgent_p99_ms"],
            "<= 150",
            c["urgent_p99_ms"] <= 150,
        ),
        (
            "settle",
            f"calls to settle {se['planned']['messages']}",
            se["planned"]["calls_to_settle"],
            "<= 60",
            se["planned"]["calls_to_settle"] <= 60,
        ),
        ("settle", "per-message strategy calls", se["per_message"]["calls_to_settle"], "", None),
        ("client overhead", "SDK CPU / raw aiohttp CPU", co["ratio"], "<= 1.5", co["ratio"] <= 1.5),
        (
            "soak",
            "RSS MB first -> last",
            f"{so['rss_first_mb']} -> {so['rss_last_mb']}",
            "flat",
            so["rss_last_mb"] - so["rss_first_mb"] < 10,
        ),
        (
            "soak",
            "open FDs first -> last",
            f"{so['fds_first']} -> {so['fds_last']}",
            "flat",
            so["fds_last"] - so["fds_first"] <= 5,
        ),
    ]
    dist = results.get("distributed")
    if dist and "max_in_sliding_second" in dist:
        rows += [
            (
                "distributed",
                "max in sliding 1 s (4 processes)",
                dist["max_in_sliding_second"],
                "<= 10",
                dist["max_in_sliding_second"] <= 10,
            ),
            (
                "distributed",
                "achieved rate /s",
                dist["achieved_rate"],
                ">= 9.5",
                dist["achieved_rate"] >= 9.5,
            ),
            ("distributed", "429s", dist["throttled_429"], "0", dist["throttled_429"] == 0),
            (
                "distributed",
                "Redis us per acquire (median / p99)",
                f"{dist['redis_us_median']} / {dist['redis_us_p99']}",
                "",
                None,
            ),
        ]
    elif dist:
        rows.append(("distributed", "skipped", dist.get("skipped"), "", None))
    return rows


def plot(times: list[float], limit: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    end = int(times[-1]) + 1
    per_second = [sum(1 for t in times if s <= t < s + 1) for s in range(end)]
    steps = [i / 10 for i in range(end * 10)]
    sliding = [sum(1 for t in times if s <= t < s + 1) for s in steps]
    fig, ax = plt.subplots(figsize=(9, 3.6))
    ax.bar(
        range(end),
        per_second,
        width=0.9,
        align="edge",
        color="#9ecae1",
        label="calls in each second",
    )
    ax.plot(steps, sliding, color="#08519c", linewidth=1, label="calls in the sliding second")
    ax.axhline(limit, color="#cb181d", linestyle="--", label=f"limit {limit:g}/s")
    ax.set_xlabel("seconds")
    ax.set_ylabel("calls")
    ax.set_ylim(0, limit * 1.5)
    ax.set_title("postman_async client at the real 10/s limit, as the server saw it")
    ax.legend(loc="upper right", fontsize=8, ncol=3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


async def _distributed(quick: bool) -> dict[str, Any]:
    try:
        from . import distributed
    except ImportError as exc:  # pragma: no cover - without the redis extra
        return {"skipped": f"needs the redis extra ({exc})"}
    return await distributed.run_or_skip(15.0 if quick else 30.0)


async def run_all(quick: bool) -> dict[str, Any]:
    results: dict[str, Any] = {}
    results["rate_fidelity"] = await rate_fidelity.run(10.0 if quick else 30.0)
    results["sim_throughput"] = await sim_throughput.run(3.0 if quick else 5.0)
    results["fanout"] = await fanout.run(quick)
    results["settle"] = await settle.run(2000 if quick else 10_000)
    results["client_overhead"] = await client_overhead.run(2000 if quick else 5000)
    results["soak"] = await soak.run(0.5 if quick else 2.0, 10.0 if quick else 30.0)
    results["distributed"] = await _distributed(quick)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        choices=["rate_fidelity", "soak", "distributed"],
        help="re-run one part and update results.json",
    )
    parser.add_argument(
        "--table",
        action="store_true",
        help="print the table and draw the plot from results.json only",
    )
    args = parser.parse_args()
    started = time.monotonic()
    path = HERE / "results.json"
    if args.table or args.only:
        saved = json.loads(path.read_text())
        results, quick = saved["results"], saved["quick"]
        if args.only == "soak":
            results["soak"] = asyncio.run(soak.run(0.5 if quick else 2.0, 10.0 if quick else 30.0))
        elif args.only == "rate_fidelity":
            results["rate_fidelity"] = asyncio.run(rate_fidelity.run(10.0 if quick else 30.0))
        elif args.only == "distributed":
            results["distributed"] = asyncio.run(_distributed(quick))
    else:
        results, quick = asyncio.run(run_all(args.quick)), args.quick
    plot(results["rate_fidelity"]["times"], 10.0, HERE / "rate.png")
    rows = _rows(results)
    print(f"\nall benchmarks ({'quick' if quick else 'full'} forms) on {machine()}")
    width = max(len(r[0]) + len(r[1]) for r in rows) + 3
    for name, metric, value, target, ok in rows:
        mark = "" if ok is None else ("ok" if ok else "MISSED")
        print(f"  {name + ': ' + metric:<{width}} {value!s:<16} {target:<10} {mark}")
    out = {
        "machine": machine(),
        "quick": quick,
        "seconds": round(time.monotonic() - started),
        "results": results,
    }
    path.write_text(json.dumps(out, indent=1, default=str))
    print(f"wrote {path} and {HERE / 'rate.png'}")


if __name__ == "__main__":
    main()
