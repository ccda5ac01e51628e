"""Governor pacing under a permanent backlog of mixed-priority requests against the simulator on 127.0.0.1.

The governor runs with its real clock and the default settings (unless overridden) and sends
``GET /market`` through ``OpinionClient`` to whaled's Opinion simulator. The backlog is larger than the
run can drain, so the bucket is the only limit. Every second one interactive request joins the queue.

Figures, from the arrival times the simulator records:

- Windows: for each arrival at ``t``, the requests that arrived in ``[t, t + 1 s)``. The allowance is
  ``ceil(r)`` requests, where ``r`` is the configured rate, plus the burst ``b`` for windows that start
  less than one second after the first arrival: the bucket starts full, and the backlog never lets it
  refill later. A violation is a window above its allowance. ``steady_max_window`` is the largest window
  that starts one second or more after the first arrival.
- Sustained rate: ``(n - 1) / (t_last - t_first)`` over the arrivals after the initial burst.
- Baseline, computed in the same run: the ideal schedule of the same bucket with zero latency, ``b``
  requests at the first arrival and then one every ``1/r`` s, cut at the same duration.

Usage: python bench/governor.py [--seconds 20] [--rate 12] [--burst 3] [--max-in-flight 8]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import math
import random
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass

from whaled.config import GovernorSettings
from whaled.governor import Governor, Priority
from whaled.opinion import OpinionClient
from whaled.simulator import start_simulator

# Shares of the backlog by priority; interactive requests arrive on their own, one per second.
MIX = {Priority.trades: 0.15, Priority.markets: 0.20, Priority.stats: 0.25, Priority.backfill: 0.40}


@dataclass
class Sent:
    priority: Priority
    queued_at: float
    started_at: float | None = None


def window_counts(times: list[float], width_s: float = 1.0) -> list[tuple[float, int]]:
    """Return ``(start, count in [start, start + width))`` for each arrival whose window ends inside the run."""
    last = times[-1]
    return [(t, bisect.bisect_left(times, t + width_s) - i) for i, t in enumerate(times) if t + width_s <= last]


def ideal_schedule(start: float, rate: float, burst: int, seconds: float) -> list[float]:
    times = [start] * burst
    k = 1
    while k / rate < seconds:
        times.append(start + k / rate)
        k += 1
    return times


def sustained_rate(times: list[float], burst: int) -> float:
    steady = times[burst:]
    if len(steady) < 2:
        return 0.0
    return (len(steady) - 1) / (steady[-1] - steady[0])


async def run(args: argparse.Namespace) -> list[str]:
    settings = GovernorSettings(
        rate_per_s=args.rate, burst=args.burst, max_in_flight=args.max_in_flight, deadline_s=args.seconds * 3
    )
    rng = random.Random(5)
    backlog = settings.burst + math.ceil(settings.rate_per_s * args.seconds * 1.25)
    async with await start_simulator(evolve_every_s=None) as simulator:
        client = OpinionClient(simulator.base_url)
        governor = Governor(settings)
        sent: list[Sent] = []

        def submit(priority: Priority) -> asyncio.Task[object]:
            record = Sent(priority, time.monotonic())
            sent.append(record)

            async def request() -> object:
                record.started_at = time.monotonic()
                return await client.list_markets(1)

            return asyncio.create_task(governor.call(request, priority=priority, name=f"/market {priority.name}"))

        priorities = rng.choices(list(MIX), weights=list(MIX.values()), k=backlog)
        tasks = [submit(priority) for priority in priorities]
        for _ in range(int(args.seconds)):
            await asyncio.sleep(1.0)
            tasks.append(submit(Priority.interactive))
        await asyncio.sleep(args.seconds - int(args.seconds))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        snapshot = governor.snapshot()
        await governor.close()
        await client.close()
        arrivals = [record.at_s for record in simulator.faults.matching("/market")]
        port = simulator.port
    return report(args, settings, arrivals, sent, snapshot.outcomes, port)


def report(
    args: argparse.Namespace,
    settings: GovernorSettings,
    arrivals: list[float],
    sent: list[Sent],
    outcomes: dict[str, int],
    port: int,
) -> list[str]:
    start = arrivals[0]
    measured = [t for t in arrivals if t < start + args.seconds]
    ideal = ideal_schedule(start, settings.rate_per_s, settings.burst, args.seconds)

    per_window = math.ceil(settings.rate_per_s)
    windows = window_counts(measured)
    steady = [count for at, count in windows if at >= start + 1.0]
    opening = [count for at, count in windows if at < start + 1.0]
    violations = sum(1 for count in steady if count > per_window)
    violations += sum(1 for count in opening if count > per_window + settings.burst)
    achieved = sustained_rate(measured, settings.burst)
    ideal_rate = sustained_rate(ideal, settings.burst)

    waits: dict[Priority, list[float]] = defaultdict(list)
    for record in sent:
        if record.started_at is not None:
            waits[record.priority].append(record.started_at - record.queued_at)
    interactive = waits[Priority.interactive]

    max_window = max(count for _, count in windows)
    ratio = achieved / settings.rate_per_s
    return [
        f"governor bench: rate {settings.rate_per_s:g}/s, burst {settings.burst}, max_in_flight "
        f"{settings.max_in_flight}, {args.seconds:g} s, GET /market against the simulator on 127.0.0.1:{port}",
        f"requests sent in {args.seconds:g} s: {len(measured)} (ideal schedule: {len(ideal)}); outcomes {outcomes}",
        f"sustained rate after the burst: {achieved:.3f}/s (ideal {ideal_rate:.3f}/s, configured "
        f"{settings.rate_per_s:g}/s)",
        f"1 s windows: {len(windows)}, violations {violations}; in the first second: max "
        f"{max(opening, default=0)} (allowed {per_window} + burst {settings.burst}); later: max "
        f"{max(steady, default=0)}, median {statistics.median(steady) if steady else 0:g} (allowed {per_window})",
        f"interactive queue wait: median {statistics.median(interactive):.3f} s, max {max(interactive):.3f} s "
        f"(token interval {1 / settings.rate_per_s:.3f} s, {len(interactive)} requests)",
        "median queue wait by priority: "
        + ", ".join(f"{p.name} {statistics.median(w):.2f} s ({len(w)})" for p, w in sorted(waits.items()) if w),
        f"RESULT governor utilisation={len(measured) / len(ideal):.3f} violations={violations} "
        f"max_window={max_window} steady_max_window={max(steady, default=0)} rate={achieved:.3f} "
        f"ratio={ratio:.3f}",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the run in seconds (default 20)")
    parser.add_argument("--rate", type=float, default=GovernorSettings().rate_per_s, help="tokens per second")
    parser.add_argument("--burst", type=int, default=GovernorSettings().burst, help="bucket size in requests")
    parser.add_argument("--max-in-flight", type=int, default=GovernorSettings().max_in_flight)
    args = parser.parse_args()
    if args.seconds < 2:
        parser.error("--seconds must be at least 2")
    for line in asyncio.run(run(args)):
        print(line)


if __name__ == "__main__":
    main()
