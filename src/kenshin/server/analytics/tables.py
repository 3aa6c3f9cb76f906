"""The analytics room's tables: forecasts (per meter and per tenant), a retailer's
procurement plan and a generator's plant prices. `schema.py` imports them with every
other room's.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Column,
    Date,
    ForeignKey,
    Index,
    PrimaryKeyConstraint,
    SmallInteger,
    String,
    Table,
)

from ..schema_base import (
    Id,
    UTCDateTime,
    _created_at,
    _id,
    metadata,
    utcnow,
)


# Forecast 30-minute energy with a band (low/high: e.g. the 10th and 90th percentiles).
def _forecast_table(name: str, owner: str) -> Table:
    return Table(
        name,
        metadata,
        Column(f"{owner}_id", Id, ForeignKey(f"{owner}s.id"), nullable=False),
        Column("slot_start", UTCDateTime(), nullable=False),
        Column("direction", SmallInteger(), nullable=False),
        Column("low_wh", BigInteger(), nullable=False),
        Column("mid_wh", BigInteger(), nullable=False),
        Column("high_wh", BigInteger(), nullable=False),
        Column("made_at", UTCDateTime(), nullable=False, default=utcnow),
        PrimaryKeyConstraint(f"{owner}_id", "slot_start", "direction"),
        CheckConstraint("direction IN (0, 1)", name="direction"),
    )


meter_forecast = _forecast_table("meter_forecast", "meter")
tenant_forecast = _forecast_table("tenant_forecast", "tenant")

# A retailer's procured energy per 30-minute slot (uploaded as CSV or through the API).
procurement_plan = Table(
    "procurement_plan",
    metadata,
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("slot_start", UTCDateTime(), nullable=False),
    Column("wh", BigInteger(), nullable=False),
    Column("uploaded_at", UTCDateTime(), nullable=False, default=utcnow),
    Column("uploaded_by", String(64), nullable=True),
    PrimaryKeyConstraint("tenant_id", "slot_start"),
)

# A generator's sale price per plant (meter), valid over a JST date range (to: inclusive,
# NULL: open-ended).
plant_prices = Table(
    "plant_prices",
    metadata,
    _id(),
    Column("tenant_id", Id, ForeignKey("tenants.id"), nullable=False),
    Column("meter_id", Id, ForeignKey("meters.id"), nullable=False),
    Column("yen_per_kwh_milli", BigInteger(), nullable=False),  # 1/1000 yen, exact
    Column("valid_from", Date(), nullable=False),
    Column("valid_to", Date(), nullable=True),
    _created_at(),
    Index(None, "meter_id", "valid_from"),
)
