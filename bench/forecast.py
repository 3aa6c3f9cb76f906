"""Next-day forecasts of a retailer's 30-minute demand: `.venv/bin/python bench/forecast.py`.

A tenant of simulated households (kenshin.sim.load: daily and weekly rhythm, heating and
cooling by season, a daily weather shared by all houses, appliances, EVs, PV) over 90 JST
days from 1 September, when cooling gives way to heating. Every day after a warm-up, each
method forecasts the next day's 48 tenant totals (bought energy, the normal direction)
from the days before it only; the table gives the MAPE over all those slots and the share
of actual slots inside each method's 80 % band (every method gets its band the same way,
from its own replayed recent errors, so the coverages compare).

Goal (issue 7): Kenshin's MAPE lower than both baselines; its band coverage within 5
points of 80 %.

    --meters N / --days D   the tenant's size and the history's length (1,000 × 90)
    --quick                 40 meters × 50 days: the smoke test's configuration
The simulated history is cached under build/ (first run: about a minute on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

from kenshin.jst import JST
from kenshin.server.analytics.forecast import (
    SLOTS,
    forecast_with_band,
    kenshin,
    mean_of_four_weekdays,
    same_slot_last_week,
)
from kenshin.sim.load import SLOT_S, HouseholdProfile, LoadModel

START = date(2026, 9, 1)
WARM_UP_DAYS = 35  # four weeks of shape and three of replayed errors need history first
CACHE = Path(__file__).resolve().parents[1] / "build"


def _house(seed_days: tuple[int, int]) -> list[int]:
    """One house's bought Wh per slot over the days (as a flat list)."""
    seed, days = seed_days
    model = LoadModel(HouseholdProfile.from_seed(seed))
    first = int(datetime.combine(START, datetime.min.time(), JST).timestamp()) // SLOT_S
    out = []
    for slot in range(first, first + days * SLOTS):
        normal_ws, _ = model.slot_energy_ws(slot)
        out.append(normal_ws // 3600)
    return out


def tenant_history(meters: int, days: int) -> dict[date, list[float]]:
    path = CACHE / f"forecast-history-{START}-{meters}x{days}.json"
    if path.exists():
        flat = json.loads(path.read_text())
    else:
        flat = [0] * (days * SLOTS)
        started = time.monotonic()
        with multiprocessing.Pool() as pool:
            jobs = pool.imap_unordered(_house, ((seed, days) for seed in range(meters)), 8)
            for done, house in enumerate(jobs, 1):
                flat = [a + b for a, b in zip(flat, house, strict=True)]
                if done % max(1, meters // 10) == 0 or done == meters:
                    print(
                        f"  simulating households: {done}/{meters} "
                        f"({time.monotonic() - started:.0f} s)",
                        file=sys.stderr,
                        flush=True,
                    )
        CACHE.mkdir(exist_ok=True)
        path.write_text(json.dumps(flat))
    return {
        START + timedelta(days=d): [float(x) for x in flat[d * SLOTS : (d + 1) * SLOTS]]
        for d in range(days)
    }


METHODS = {
    "same slot last week": same_slot_last_week,
    "mean of last 4 same weekdays": mean_of_four_weekdays,
    "kenshin": kenshin,
}


def evaluate(history: dict[date, list[float]]) -> dict[str, tuple[float, float, int]]:
    """Per method: (MAPE %, band coverage %, slots scored)."""
    days = sorted(history)[WARM_UP_DAYS:]
    results = {}
    for name, method in METHODS.items():
        errors: list[float] = []
        inside = 0
        for day in days:
            past = {d: v for d, v in history.items() if d < day}
            band = forecast_with_band(past, day, method)
            for slot, actual in enumerate(history[day]):
                mid, low, high = band.mid[slot], band.low[slot], band.high[slot]
                errors.append(abs(actual - mid) / actual)
                inside += low is not None and high is not None and low <= actual <= high
        results[name] = (100 * sum(errors) / len(errors), 100 * inside / len(errors), len(errors))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--meters", type=int, default=1000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--quick", action="store_true", help="40 meters × 50 days")
    args = parser.parse_args(argv)
    if args.quick:
        args.meters, args.days = 40, 50
    if args.days <= WARM_UP_DAYS + 1:
        parser.error(f"--days must exceed the warm-up of {WARM_UP_DAYS} days")
    history = tenant_history(args.meters, args.days)
    started = time.monotonic()
    results = evaluate(history)
    scored_days = args.days - WARM_UP_DAYS
    print(
        f"next-day forecast of a tenant's 30-minute demand: {args.meters} meters, "
        f"{args.days} days from {START}, scored on the last {scored_days} days "
        f"({time.monotonic() - started:.1f} s)"
    )
    print(f"{'method':<30} {'MAPE %':>8} {'in 80% band %':>14} {'slots':>7}")
    for name, (mape, coverage, n) in results.items():
        print(f"{name:<30} {mape:>8.2f} {coverage:>14.1f} {n:>7}")
    ours = results["kenshin"]
    best_baseline = min(v[0] for k, v in results.items() if k != "kenshin")
    print(
        f"goal: kenshin MAPE < both baselines ({ours[0]:.2f} vs {best_baseline:.2f}: "
        f"{'met' if ours[0] < best_baseline else 'MISSED'}); band coverage within 5 points "
        f"of 80 ({ours[1]:.1f}: {'met' if abs(ours[1] - 80) <= 5 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
