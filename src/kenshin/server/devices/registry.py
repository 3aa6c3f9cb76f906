"""The registry: gateways (made at the factory, claimed by a tenant), customer sites, and
the meters behind them with their B-route credentials sealed at rest.

Functions take a SQLAlchemy `Connection` inside the caller's transaction and return rows;
the API layer turns them into HTTP. Every lookup that a tenant can reach is scoped by the
tenant's id, so another tenant's ids are simply not found.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import re
import unicodedata
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Connection, Row, insert, or_, select, update

from kenshin.wire.enrollment import valid_serial

from .. import listing
from ..accounts import audit, last_audited
from ..events import record_event
from ..schema_base import utcnow
from ..security import CredentialBox, meter_credential_ad
from . import tables as t

# The factory's CSV: one row per box.
IDENTITY_COLUMNS = ("serial", "model", "public_key", "claim_code")


class RegistryError(ValueError):
    """A request the registry cannot carry out (the message says why, for the API user)."""


def claim_code_digest(code: str, key: bytes) -> str:
    """Keyed hash of a claim code: a leaked table does not reveal codes by brute force
    without the server's key. Dashes, spaces and case do not matter when typing it."""
    normal = code.replace("-", "").replace(" ", "").upper()
    return hmac.new(key, b"claim:" + normal.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class ImportReport:
    added: int
    already_known: int
    errors: list[str]


def csv_rows(text: str, need: Iterable[str], one_of: Iterable[str] = ()) -> Iterator[dict]:
    """An uploaded CSV's rows as dicts (a BOM as Excel writes is skipped): every column of
    `need` and, if given, at least one of `one_of` must be in its header. What the csv
    module cannot read is a RegistryError, whenever it is met."""
    try:
        reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
        have = set(reader.fieldnames or ())
        missing = set(need) - have
        if missing:
            raise RegistryError(f"the CSV lacks the column(s) {', '.join(sorted(missing))}")
        if one_of and not have & set(one_of):
            raise RegistryError(f"the CSV needs one of the columns {', '.join(one_of)}")
        yield from reader
    except csv.Error as err:  # e.g. a bare CR inside a field
        raise RegistryError(f"not CSV: {err}") from None


def import_identities(conn: Connection, text: str, key: bytes, actor: str) -> ImportReport:
    """Add manufactured gateways from the factory's CSV; known serials are left as they
    are (re-importing a file is harmless); a bad row is reported and skipped."""
    rows = csv_rows(text, IDENTITY_COLUMNS)
    added = known = 0
    errors = []
    for line, row in enumerate(rows, start=2):
        serial = (row["serial"] or "").strip()
        try:
            public_key = base64.urlsafe_b64decode((row["public_key"] or "").strip() + "==")
        except ValueError:
            public_key = b""
        if not valid_serial(serial):
            errors.append(f"line {line}: serial {serial!r} is not 1..32 of A-Z a-z 0-9 _ -")
            continue
        if len(public_key) != 32:
            errors.append(f"line {line}: public_key is not a base64 Ed25519 key (32 bytes)")
            continue
        if conn.execute(select(t.gateways.c.id).where(t.gateways.c.serial == serial)).first():
            known += 1
            continue
        code = (row["claim_code"] or "").strip()
        conn.execute(
            insert(t.gateways).values(
                serial=serial,
                model=(row["model"] or "kenshin-gw").strip()[:64],
                public_key=public_key,
                claim_code_hash=claim_code_digest(code, key) if code else None,
                state="unclaimed",
                state_since=utcnow(),
            )
        )
        added += 1
    audit(conn, actor, "gateway.import", detail={"added": added, "already_known": known})
    return ImportReport(added, known, errors)


def gateway_by_serial(conn: Connection, serial: str) -> Row | None:
    return conn.execute(select(t.gateways).where(t.gateways.c.serial == serial)).first()


def get_gateway(conn: Connection, gateway_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(t.gateways).where(t.gateways.c.id == gateway_id, t.gateways.c.tenant_id == tenant_id)
    ).first()


def set_gateway_tags(
    conn: Connection, tenant_id: int, gateway_id: int, tags: list[str], actor: str
) -> Row | None:
    """Replace the gateway's tags (sorted, once each); None if it is not the tenant's."""
    g = t.gateways.c
    tags = sorted(set(tags))
    done = conn.execute(
        update(t.gateways)
        .where(g.id == gateway_id, g.tenant_id == tenant_id)
        .values(tags=tags or None)
    )
    if not done.rowcount:
        return None
    audit(conn, actor, "gateway.tags", target=f"gateway:{gateway_id}", tenant_id=tenant_id,
          detail={"tags": tags})  # fmt: skip
    return get_gateway(conn, gateway_id, tenant_id)


def claim_gateway(
    conn: Connection,
    tenant_id: int,
    *,
    key: bytes,
    actor: str,
    serial: str | None = None,
    claim_code: str | None = None,
    site_id: int | None = None,
) -> Row:
    """Give an unclaimed gateway to this tenant (and a site). By its printed claim code,
    or by serial — a serial alone claims only a gateway made without a claim code."""
    query = select(t.gateways).where(t.gateways.c.state == "unclaimed")
    if claim_code:
        query = query.where(t.gateways.c.claim_code_hash == claim_code_digest(claim_code, key))
        if serial:
            query = query.where(t.gateways.c.serial == serial)
    elif serial:
        query = query.where(t.gateways.c.serial == serial, t.gateways.c.claim_code_hash.is_(None))
    else:
        raise RegistryError("give the gateway's claim code (or, if it has none, its serial)")
    gateway = conn.execute(query).first()
    if gateway is None:
        raise RegistryError("no unclaimed gateway matches; check the code printed on the box")
    if site_id is not None and get_site(conn, site_id, tenant_id) is None:
        raise RegistryError(f"no site {site_id}")
    now = utcnow()
    conn.execute(
        update(t.gateways)
        .where(t.gateways.c.id == gateway.id)
        .values(
            tenant_id=tenant_id,
            site_id=site_id,
            state="never_seen",
            state_since=now,
        )
    )
    record_event(
        conn,
        tenant_id=tenant_id,
        gateway_id=gateway.id,
        code="gateway_claimed",
        severity="info",
        detail={"serial": gateway.serial},
        at=now,
    )
    audit(conn, actor, "gateway.claim", target=f"gateway:{gateway.id}", tenant_id=tenant_id)
    return get_gateway(conn, gateway.id, tenant_id)


# -- sites -------------------------------------------------------------------------------


def add_site(conn: Connection, tenant_id: int, actor: str, **values: Any) -> Row:
    key = conn.execute(insert(t.sites).values(tenant_id=tenant_id, **values)).inserted_primary_key
    audit(conn, actor, "site.create", target=f"site:{key[0]}", tenant_id=tenant_id)
    return get_site(conn, key[0], tenant_id)


def site_clash(
    conn: Connection, tenant_id: int, values: dict[str, Any], site_id: int | None = None
) -> str | None:
    """What another site of the tenant already has of `values`' customer_id and
    service_code (both unique within a tenant), as a sentence; None: nothing."""
    for column, what in (("customer_id", "customer"), ("service_code", "service code")):
        value = values.get(column)
        if value is None:
            continue
        c = t.sites.c
        if conn.execute(
            select(c.id).where(c.tenant_id == tenant_id, c[column] == value, c.id != (site_id or 0))
        ).first():
            return f"{what} {value} already has a site"
    return None


def update_site(
    conn: Connection, tenant_id: int, site_id: int, actor: str, **changes: Any
) -> Row | None:
    """Change a site's fields (None for the site of another tenant, or none at all)."""
    if get_site(conn, site_id, tenant_id) is None:
        return None
    if changes:
        conn.execute(update(t.sites).where(t.sites.c.id == site_id).values(**changes))
        audit(
            conn, actor, "site.update", target=f"site:{site_id}", tenant_id=tenant_id,
            detail=changes,
        )  # fmt: skip
    return get_site(conn, site_id, tenant_id)


def get_site(conn: Connection, site_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(t.sites).where(t.sites.c.id == site_id, t.sites.c.tenant_id == tenant_id)
    ).first()


# -- meters ------------------------------------------------------------------------------

SUPPLY_POINT_DIGITS = 22
# What people type between the digits: hyphens and dashes of every kind, the long-vowel
# mark typed for one, spaces (NFKC has already made full-width digits and spaces ASCII).
_SUPPLY_POINT_SEPARATORS = re.compile(r"[\s\-\u2010-\u2015\u2212\u30fc]")


class SupplyPointTaken(RegistryError):
    """Another meter of the tenant already has this supply point number."""


def supply_point_digits(text: str) -> str:
    """A supply point number (供給地点特定番号) as stored: its 22 digits, whatever hyphens,
    spaces or full-width digits it was typed with; anything else is a RegistryError."""
    digits = _SUPPLY_POINT_SEPARATORS.sub("", unicodedata.normalize("NFKC", text))
    if len(digits) != SUPPLY_POINT_DIGITS or not digits.isascii() or not digits.isdigit():
        raise RegistryError(
            f"a supply point number is {SUPPLY_POINT_DIGITS} digits (hyphens and spaces "
            "between them are ignored)"
        )
    return digits


def supply_point_search(q: str | None) -> str | None:
    """A search text as it would be stored when it is a (part of a) supply point number
    typed with separators ("0300-1111" finds 03001111...), else as it is."""
    if not q:
        return q
    digits = _SUPPLY_POINT_SEPARATORS.sub("", unicodedata.normalize("NFKC", q))
    return digits if digits.isascii() and digits.isdigit() else q


def meter_search(q: str | None, tenant_id: int) -> ColumnElement | None:
    """Meters found by `q` (None: no search): their serial, UDP host, dongle port or
    supply point number, or their site's customer ID or service code, so a meter is found
    by the customer it serves (the meter list and the settlement export search alike)."""
    if not q:
        return None
    m, site = t.meters.c, t.sites.c
    return or_(
        listing.search_filter(q, [m.serial, m.udp_host, m.device]),
        listing.search_filter(supply_point_search(q), [m.supply_point]),
        m.site_id.in_(
            select(site.id).where(
                site.tenant_id == tenant_id,
                listing.search_filter(q, [site.customer_id, site.service_code]),
            )
        ),
    )


def _check_supply_point_free(
    conn: Connection, tenant_id: int, digits: str, meter_id: int | None = None
) -> None:
    """A clash is the caller's to hear (409), not the unique constraint's 500."""
    m = t.meters.c
    other = conn.execute(
        select(m.id).where(
            m.tenant_id == tenant_id, m.supply_point == digits, m.id != (meter_id or 0)
        )
    ).first()
    if other is not None:
        raise SupplyPointTaken(f"supply point {digits} is already meter {other.id}'s")


def set_supply_point(
    conn: Connection, tenant_id: int, meter_id: int, text: str | None, actor: str
) -> Row:
    """Set (or, with None or "", clear) a meter's supply point number."""
    if get_meter(conn, meter_id, tenant_id) is None:
        raise RegistryError(f"no meter {meter_id}")
    digits = supply_point_digits(text) if text else None
    if digits is not None:
        _check_supply_point_free(conn, tenant_id, digits, meter_id)
    conn.execute(update(t.meters).where(t.meters.c.id == meter_id).values(supply_point=digits))
    audit(
        conn, actor, "meter.update", target=f"meter:{meter_id}", tenant_id=tenant_id,
        detail={"supply_point": digits},
    )  # fmt: skip
    return get_meter(conn, meter_id, tenant_id)


SUPPLY_POINT_KEYS = ("meter_id", "service_code")  # how an import row names its meter


def import_supply_points(conn: Connection, tenant_id: int, text: str, actor: str) -> ImportReport:
    """Supply point numbers from a CSV with `supply_point` and either `meter_id` or the
    site's `service_code` (then the site must have exactly one meter). Rows are applied in
    order; a bad row is reported and skipped; the same number again is already known."""
    m, site = t.meters.c, t.sites.c
    added = known = 0
    errors = []
    for line, row in enumerate(csv_rows(text, ("supply_point",), SUPPLY_POINT_KEYS), start=2):
        meter_id, code = ((row.get(k) or "").strip() for k in SUPPLY_POINT_KEYS)
        if meter_id:  # an id the database can hold, else no meter at all
            number = int(meter_id) if meter_id.isdecimal() and len(meter_id) < 16 else -1
            which, named = f"meter {meter_id}", m.id == number
        else:
            which, named = (
                f"service code {code!r}",
                m.site_id.in_(
                    select(site.id).where(site.tenant_id == tenant_id, site.service_code == code)
                ),
            )
        ids = conn.execute(select(m.id).where(m.tenant_id == tenant_id, named)).scalars().all()
        if len(ids) != 1:
            errors.append(f"line {line}: {which} " + ("has several meters" if ids else "not found"))
            continue
        try:
            digits = supply_point_digits(row["supply_point"] or "")
            before = get_meter(conn, ids[0], tenant_id).supply_point
            if before == digits:
                known += 1
                continue
            set_supply_point(conn, tenant_id, ids[0], digits, actor)
        except RegistryError as err:
            errors.append(f"line {line}: {err}")
            continue
        added += 1
    return ImportReport(added, known, errors)


def add_meter(
    conn: Connection,
    tenant_id: int,
    box: CredentialBox,
    actor: str,
    *,
    site_id: int,
    link: str,
    gateway_id: int | None = None,
    serial: str | None = None,
    udp_host: str | None = None,
    udp_port: int | None = None,
    device: str | None = None,
    broute_id: str | None = None,
    broute_password: str | None = None,
    supply_point: str | None = None,
) -> Row:
    if get_site(conn, site_id, tenant_id) is None:
        raise RegistryError(f"no site {site_id}")
    if gateway_id is not None and get_gateway(conn, gateway_id, tenant_id) is None:
        raise RegistryError(f"no gateway {gateway_id}")
    if link == "udp" and not udp_host:
        raise RegistryError("a meter on UDP needs udp_host")
    if link == "wisun" and not (broute_id and broute_password):
        raise RegistryError("a meter on Wi-SUN needs broute_id and broute_password")
    supply_point = supply_point_digits(supply_point) if supply_point else None
    if supply_point is not None:
        _check_supply_point_free(conn, tenant_id, supply_point)
    key = conn.execute(
        insert(t.meters).values(
            tenant_id=tenant_id,
            site_id=site_id,
            gateway_id=gateway_id,
            serial=serial,
            link=link,
            udp_host=udp_host if link == "udp" else None,
            udp_port=udp_port if link == "udp" else None,
            device=device if link == "wisun" else None,
            supply_point=supply_point,
        )
    ).inserted_primary_key
    meter_id = key[0]
    audit(conn, actor, "meter.create", target=f"meter:{meter_id}", tenant_id=tenant_id)
    if broute_id and broute_password:
        set_broute_credentials(conn, box, meter_id, broute_id, broute_password)
        _audit_credentials(conn, actor, tenant_id, meter_id)
    return get_meter(conn, meter_id, tenant_id)


BROUTE_AUDIT = "meter.broute_credentials"  # when they were set: the audit log's entry


def _audit_credentials(conn: Connection, actor: str, tenant_id: int, meter_id: int) -> None:
    audit(conn, actor, BROUTE_AUDIT, target=f"meter:{meter_id}", tenant_id=tenant_id)


def replace_broute_credentials(
    conn: Connection,
    tenant_id: int,
    box: CredentialBox,
    actor: str,
    meter_id: int,
    broute_id: str,
    password: str,
) -> Row:
    """New B-route credentials for a meter of the tenant (they are write-only: the audit
    log keeps when, never what)."""
    if get_meter(conn, meter_id, tenant_id) is None:
        raise RegistryError(f"no meter {meter_id}")
    set_broute_credentials(conn, box, meter_id, broute_id, password)
    _audit_credentials(conn, actor, tenant_id, meter_id)
    return get_meter(conn, meter_id, tenant_id)


def broute_credentials_set_at(
    conn: Connection, tenant_id: int, meter_ids: Iterable[int]
) -> dict[int, Any]:
    """meter id -> when its B-route credentials were last set, from the audit log (what
    the panel shows of them: never the values). A meter whose entry the audit retention
    has removed is not in the answer."""
    targets = {f"meter:{m}": m for m in meter_ids}
    if not targets:
        return {}
    done = last_audited(conn, tenant_id, BROUTE_AUDIT, targets)
    return {targets[target]: at for target, at in done.items()}


def set_broute_credentials(
    conn: Connection, box: CredentialBox, meter_id: int, broute_id: str, password: str
) -> None:
    """Seal both, each bound to this meter and column (a copied ciphertext won't open)."""
    conn.execute(
        update(t.meters)
        .where(t.meters.c.id == meter_id)
        .values(
            broute_id_enc=box.seal(broute_id, meter_credential_ad(meter_id, "broute_id")),
            broute_password_enc=box.seal(
                password, meter_credential_ad(meter_id, "broute_password")
            ),
        )
    )


def get_meter(conn: Connection, meter_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(t.meters).where(t.meters.c.id == meter_id, t.meters.c.tenant_id == tenant_id)
    ).first()


def meters_of_gateway(conn: Connection, gateway_id: int) -> list[Row]:
    return list(conn.execute(select(t.meters).where(t.meters.c.gateway_id == gateway_id)))


def meter_ref(meter_id: int) -> str:
    """How the gateway names a meter on the wire: short, and not the customer's data."""
    return f"m{meter_id}"


def meter_link_settings(meter: Row, box: CredentialBox) -> dict[str, Any]:
    """The `meter` section of a gateway's settings, credentials opened for the wire."""
    if meter.link == "udp":
        return {
            "ref": meter_ref(meter.id),
            "link": "udp",
            "host": meter.udp_host,
            "port": meter.udp_port or 3610,
        }
    return {
        "ref": meter_ref(meter.id),
        "link": "wisun",
        "device": meter.device or "/dev/ttyUSB0",
        "broute_id": box.open(meter.broute_id_enc, meter_credential_ad(meter.id, "broute_id")),
        "broute_password": box.open(
            meter.broute_password_enc, meter_credential_ad(meter.id, "broute_password")
        ),
    }
