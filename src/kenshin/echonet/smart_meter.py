"""Arithmetic of the smart meter's cumulative registers (class 0x0288), exact.

energy = raw × unit (E1) × coefficient (D3), and the register wraps at 10**digits (D7).
Every unit is a whole number of milliwatt-hours (the smallest, 0.0001 kWh, is 100 mWh),
so integer mWh keeps the arithmetic exact; Wh is given as a Decimal for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from .edt import EnergyUnit
from .errors import EchonetEncodeError


@dataclass(frozen=True, slots=True)
class EnergyScale:
    """What turns a raw register count into energy: coefficient, unit and digits."""

    coefficient: int = 1
    unit: EnergyUnit = EnergyUnit.KWH_0_1
    digits: int = 6

    def __post_init__(self) -> None:
        if not 1 <= self.coefficient <= 999_999:
            raise EchonetEncodeError(f"coefficient {self.coefficient} outside 1..999999")
        if not 1 <= self.digits <= 8:
            raise EchonetEncodeError(f"effective digits {self.digits} outside 1..8")

    @property
    def modulus(self) -> int:
        """The register wraps to 0 here."""
        return 10**self.digits

    @property
    def milliwatt_hours_per_count(self) -> int:
        return self.unit.milliwatt_hours * self.coefficient

    def to_milliwatt_hours(self, raw: int) -> int:
        return raw * self.milliwatt_hours_per_count

    def to_wh(self, raw: int) -> Decimal:
        return Decimal(self.to_milliwatt_hours(raw)) / 1000

    def delta_counts(self, old_raw: int, new_raw: int) -> int:
        """Counts advanced from `old_raw` to `new_raw`, across at most one wrap."""
        return (new_raw - old_raw) % self.modulus

    def delta_milliwatt_hours(self, old_raw: int, new_raw: int) -> int:
        return self.to_milliwatt_hours(self.delta_counts(old_raw, new_raw))
