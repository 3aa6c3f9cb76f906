"""What a simulated house draws: a load model that is deterministic per seed.

Time is cut into 10-second steps, 180 to a 30-minute slot. Each slot has a mean power
in whole watts built from a base load, the household's daily and weekly rhythm,
heating and cooling by season, appliance events, an optional EV, and rooftop PV that
drives the flow negative (reverse, sold) around midday. Inside a slot the steps wander
around that mean by a zero-sum noise, `h(k) - h(k+1 mod 180)`, which gives three
properties the registers rely on:

- a slot's energy is exactly 1800 × mean watt-seconds, found in O(1);
- the energy up to any step inside a slot telescopes to O(1) too;
- the noise never exceeds a quarter of the mean, so a slot flows one way only and its
  energy lands wholly in the normal or wholly in the reverse register.

Everything is a pure function of (seed, time): no state, no wall clock, so any meter's
any past slot can be recomputed, and two runs with one seed agree to the watt.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from datetime import date, timedelta

from kenshin.jst import JST_OFFSET_S

STEP_S = 10
STEPS_PER_SLOT = 180
SLOT_S = STEP_S * STEPS_PER_SLOT
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_MASK = (1 << 64) - 1


def mix(*values: int) -> int:
    """A 64-bit hash of some integers (splitmix64 chained): cheap, stable across runs and
    Python versions (unlike `hash()`), good enough to drive a simulation."""
    state = 0x9E3779B97F4A7C15
    for value in values:
        state = (state ^ (value & _MASK)) + 0x9E3779B97F4A7C15 & _MASK
        z = state
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & _MASK
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & _MASK
        state = z ^ (z >> 31)
    return state


def unit_interval(h: int) -> float:
    """A hash as a float in [0, 1)."""
    return (h >> 11) / (1 << 53)


# Salts keep the hash streams of different purposes apart.
_PROFILE, _NOISE, _EVENT, _WEATHER, _CLOUD, _EV_NIGHT, _WEATHER_DAY = range(1, 8)

# How active the household is at each hour (0..1), read at the half hour between them.
_WEEKDAY = (0.05, 0.03, 0.03, 0.03, 0.05, 0.2, 0.6, 0.8, 0.5, 0.2, 0.15, 0.15,
            0.2, 0.15, 0.15, 0.2, 0.35, 0.6, 0.9, 1.0, 0.9, 0.75, 0.5, 0.2)  # fmt: skip
_WEEKEND = (0.08, 0.05, 0.03, 0.03, 0.03, 0.05, 0.2, 0.45, 0.7, 0.7, 0.6, 0.65,
            0.75, 0.6, 0.55, 0.55, 0.6, 0.75, 0.95, 1.0, 0.9, 0.8, 0.55, 0.25)  # fmt: skip


@dataclass(frozen=True)
class Appliance:
    name: str
    watts: int
    hours: tuple[tuple[float, float], ...]  # JST windows [from, to) in which it may run
    chance: float  # probability per slot in a window, scaled by activity


APPLIANCES = (
    Appliance("cooking", 1300, ((6.0, 8.5), (11.5, 13.0), (17.0, 20.0)), 0.45),
    Appliance("kettle / rice cooker", 800, ((5.5, 8.0), (17.0, 19.5)), 0.35),
    Appliance("washer-dryer", 1000, ((7.0, 22.0),), 0.06),
    Appliance("dishwasher", 750, ((19.0, 23.0),), 0.18),
    Appliance("hair dryer", 1100, ((6.0, 8.0), (20.0, 23.5)), 0.15),
    Appliance("vacuum", 600, ((9.0, 18.0),), 0.05),
)


@dataclass(frozen=True)
class HouseholdProfile:
    """One house's character, drawn from its seed."""

    seed: int
    base_w: int  # always on: fridge, standby, network
    activity_w: int  # lights, TV, PCs when everyone is up and about
    heating_kw: float
    cooling_kw: float
    ev_kw: float  # 0: no electric car
    pv_kw: float  # rooftop PV peak; 0: none
    contract_a: int  # the breaker: mean draw stays under it
    three_wire: bool  # single-phase 3-wire (100/200 V); else 2-wire 100 V
    r_share: float  # share of the current carried by phase R on 3-wire service
    power_factor: float
    away_on_workdays: bool  # nobody home in the daytime on weekdays

    @classmethod
    def from_seed(cls, seed: int, *, pv: bool | None = None) -> HouseholdProfile:
        rng = random.Random(mix(_PROFILE, seed))
        has_pv = rng.random() < 0.3 if pv is None else pv
        pv_kw = rng.choice((3.0, 4.0, 4.5, 5.5, 6.0))  # drawn always: pv= changes nothing else
        return cls(
            seed=seed,
            base_w=rng.randrange(80, 350),
            activity_w=rng.randrange(250, 900),
            heating_kw=round(rng.uniform(0.6, 1.6), 2),
            cooling_kw=round(rng.uniform(0.5, 1.2), 2),
            ev_kw=3.0 if rng.random() < 0.1 else 0.0,
            pv_kw=pv_kw if has_pv else 0.0,
            contract_a=rng.choice((30, 40, 40, 50, 60)),
            three_wire=rng.random() < 0.85,
            r_share=round(rng.uniform(0.35, 0.65), 2),
            power_factor=round(rng.uniform(0.9, 0.99), 2),
            away_on_workdays=rng.random() < 0.6,
        )


class LoadModel:
    """Net power flow at the meter (positive: bought, negative: sold), per slot and step.

    `slot` is seconds since the Unix epoch // 1800, `step` is seconds // 10; both are
    aligned with JST half hours because JST is a whole number of hours from UTC."""

    def __init__(self, profile: HouseholdProfile):
        self.profile = profile
        self._seed = profile.seed
        self._means: dict[int, int] = {}
        # Faults (SimulatedMeter.inject): slot ranges [first, last) with no power at all (a
        # power cut), and with an extra load in W (a heater left on, a faulty appliance).
        self.outages: tuple[tuple[int, int], ...] = ()
        self.surges: tuple[tuple[int, int, int], ...] = ()

    # -- per slot ------------------------------------------------------------------------

    def slot_mean_w(self, slot: int) -> int:
        mean = self._means.get(slot)
        if mean is None:
            if len(self._means) > 4096:  # a bounded memo: readers mostly want recent slots
                self._means.clear()
            mean = self._compute_slot_mean(slot)
            if any(first <= slot < last for first, last in self.outages):
                mean = 0
            mean += sum(w for first, last, w in self.surges if first <= slot < last)
            self._means[slot] = mean
        return mean

    def slot_energy_ws(self, slot: int) -> tuple[int, int]:
        """(normal, reverse) energy of a whole slot in watt-seconds, exactly."""
        mean = self.slot_mean_w(slot)
        return (SLOT_S * mean, 0) if mean >= 0 else (0, -SLOT_S * mean)

    def _compute_slot_mean(self, slot: int) -> int:
        p = self.profile
        local_s = slot * SLOT_S + JST_OFFSET_S
        day = local_s // 86400
        hour = (local_s % 86400) / 3600 + 0.25  # the middle of the slot
        day_of_year = date.fromordinal(_EPOCH_ORDINAL + day).timetuple().tm_yday
        weekend = (day + 3) % 7 >= 5  # 1970-01-01 was a Thursday

        activity = _interpolate(_WEEKEND if weekend else _WEEKDAY, hour)
        if not weekend and not p.away_on_workdays and 9 <= hour < 17:
            activity = max(activity, 0.35)
        consumption = p.base_w + p.activity_w * activity
        consumption += self._climate_w(day, day_of_year, hour, activity)
        consumption += self._appliances_w(slot, hour, activity)
        if p.ev_kw and (hour >= 23 or hour < 5) and self._ev_night(day, hour):
            consumption += p.ev_kw * 1000
        consumption = min(consumption, p.contract_a * 100 * 0.95)
        return round(consumption - self._pv_w(slot, day, day_of_year, hour))

    def _climate_w(self, day: int, day_of_year: int, hour: float, activity: float) -> float:
        p = self.profile
        temperature = outdoor_temperature_c(day, day_of_year, hour)
        need_heat = min(1.0, max(0.0, 15 - temperature) / 9)
        need_cool = min(1.0, max(0.0, temperature - 24) / 6)
        presence = 1.0 if activity >= 0.15 else 0.3  # set back at night and when away
        return 1000 * presence * (p.heating_kw * need_heat + p.cooling_kw * need_cool)

    def _appliances_w(self, slot: int, hour: float, activity: float) -> float:
        total = 0.0
        for index, appliance in enumerate(APPLIANCES):
            if not any(start <= hour < end for start, end in appliance.hours):
                continue
            h = mix(_EVENT, self._seed, slot, index)
            if unit_interval(h) < appliance.chance * (0.3 + 0.7 * activity):
                share = 0.2 + 0.8 * unit_interval(mix(h))  # it ran for part of the slot
                total += appliance.watts * share
        return total

    def _ev_night(self, day: int, hour: float) -> bool:
        night = day if hour >= 23 else day - 1  # a night belongs to the evening it starts
        return unit_interval(mix(_EV_NIGHT, self._seed, night)) < 0.4

    def _pv_w(self, slot: int, day: int, day_of_year: int, hour: float) -> float:
        kw = self.profile.pv_kw
        if not kw:
            return 0.0
        sun = _sun(day_of_year, hour)
        if not sun:
            return 0.0
        clear = _clear_sky_share(day)
        passing_cloud = 1 - (1 - clear) * unit_interval(mix(_CLOUD, self._seed, slot))
        return kw * 1000 * 0.8 * sun * passing_cloud  # 0.8: inverter and wiring losses

    # -- per step ------------------------------------------------------------------------

    def _wobble(self, slot: int, k: int, amplitude: int) -> int:
        return mix(_NOISE, self._seed, slot, k % STEPS_PER_SLOT) % (amplitude + 1)

    def step_power_w(self, step: int) -> int:
        """Net power during one 10-second step."""
        slot, k = divmod(step, STEPS_PER_SLOT)
        mean = self.slot_mean_w(slot)
        amplitude = abs(mean) // 4
        if not amplitude:
            return mean
        return mean + self._wobble(slot, k, amplitude) - self._wobble(slot, k + 1, amplitude)

    def energy_into_slot_ws(self, slot: int, steps: int) -> int:
        """Signed energy of the first `steps` (0..180) whole steps of a slot, in O(1):
        the noise telescopes to h(0) - h(steps)."""
        mean = self.slot_mean_w(slot)
        amplitude = abs(mean) // 4
        noise = 0
        if amplitude and 0 < steps < STEPS_PER_SLOT:
            noise = self._wobble(slot, 0, amplitude) - self._wobble(slot, steps, amplitude)
        return STEP_S * (steps * mean + noise)


# -- the sky and the air, the same over every simulated house (a weather provider's view) --


def outdoor_temperature_c(day: int, day_of_year: int, hour: float) -> float:
    """Tokyo-like air temperature: the season, the hour, and the day's weather."""
    seasonal = 16 - 10 * math.cos(2 * math.pi * (day_of_year - 20) / 365)
    daily = 4 * math.sin(2 * math.pi * (hour - 9) / 24)  # warmest mid-afternoon
    weather = (unit_interval(mix(_WEATHER_DAY, day)) - 0.5) * 6  # same sky for every house
    return seasonal + daily + weather


def _sun(day_of_year: int, hour: float) -> float:
    """The sun's strength as a share of a clear midsummer noon (0 at night)."""
    season = math.cos(2 * math.pi * (day_of_year - 172) / 365)  # 1 at midsummer
    half_day = 6.1 + 1.2 * season  # hours from solar noon to sunset, Tokyo-like
    offset = (hour - 11.67) / half_day  # solar noon near 11:40 JST
    if abs(offset) >= 1:
        return 0.0
    return math.cos(math.pi / 2 * offset) ** 1.5 * (0.8 + 0.2 * season)


def _clear_sky_share(day: int) -> float:
    return 0.15 + 0.85 * unit_interval(mix(_WEATHER, day)) ** 0.5  # mostly fair


def irradiance_w_m2(day: int, day_of_year: int, hour: float) -> float:
    """Global horizontal irradiance the simulated plants see (passing clouds averaged)."""
    return 1000 * _sun(day_of_year, hour) * (1 + _clear_sky_share(day)) / 2


def weather_csv(first: date, days: int) -> str:
    """Hourly weather as `kenshin.server.analytics.generation.CsvWeather` reads it (JST
    hours; the value for the middle of each hour), for the demo's offline provider."""
    lines = ["time,irradiance_w_m2,temperature_c"]
    for n in range(days):
        today = first + timedelta(days=n)
        day = today.toordinal() - _EPOCH_ORDINAL
        day_of_year = today.timetuple().tm_yday
        for h in range(24):
            sun = irradiance_w_m2(day, day_of_year, h + 0.5)
            air = outdoor_temperature_c(day, day_of_year, h + 0.5)
            lines.append(f"{today.isoformat()}T{h:02d}:00,{sun:.0f},{air:.1f}")
    return "\n".join(lines) + "\n"


def _interpolate(table: tuple[float, ...], hour: float) -> float:
    below = int(hour) % 24
    frac = hour - int(hour)
    return table[below] * (1 - frac) + table[(below + 1) % 24] * frac
