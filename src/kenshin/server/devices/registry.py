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
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row, insert, select, update

from kenshin.wire.enrollment import valid_serial

from .. import schema as s
from ..accounts import audit
from ..events import record_event
from ..schema import utcnow
from ..security import CredentialBox, meter_credential_ad

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


def import_identities(conn: Connection, text: str, key: bytes, actor: str) -> ImportReport:
    """Add manufactured gateways from the factory's CSV; known serials are left as they
    are (re-importing a file is harmless); a bad row is reported and skipped."""
    try:
        return _import_identities(conn, text, key, actor)
    except csv.Error as err:  # e.g. a bare CR inside a field
        raise RegistryError(f"not CSV: {err}") from None


def _import_identities(conn: Connection, text: str, key: bytes, actor: str) -> ImportReport:
    reader = csv.DictReader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    missing = set(IDENTITY_COLUMNS) - set(reader.fieldnames or ())
    if missing:
        raise RegistryError(f"the CSV lacks the column(s) {', '.join(sorted(missing))}")
    added = known = 0
    errors = []
    for line, row in enumerate(reader, start=2):
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
        if conn.execute(select(s.gateways.c.id).where(s.gateways.c.serial == serial)).first():
            known += 1
            continue
        code = (row["claim_code"] or "").strip()
        conn.execute(
            insert(s.gateways).values(
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
    return conn.execute(select(s.gateways).where(s.gateways.c.serial == serial)).first()


def get_gateway(conn: Connection, gateway_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(s.gateways).where(s.gateways.c.id == gateway_id, s.gateways.c.tenant_id == tenant_id)
    ).first()


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
    query = select(s.gateways).where(s.gateways.c.state == "unclaimed")
    if claim_code:
        query = query.where(s.gateways.c.claim_code_hash == claim_code_digest(claim_code, key))
        if serial:
            query = query.where(s.gateways.c.serial == serial)
    elif serial:
        query = query.where(s.gateways.c.serial == serial, s.gateways.c.claim_code_hash.is_(None))
    else:
        raise RegistryError("give the gateway's claim code (or, if it has none, its serial)")
    gateway = conn.execute(query).first()
    if gateway is None:
        raise RegistryError("no unclaimed gateway matches; check the code printed on the box")
    if site_id is not None and get_site(conn, site_id, tenant_id) is None:
        raise RegistryError(f"no site {site_id}")
    now = utcnow()
    conn.execute(
        update(s.gateways)
        .where(s.gateways.c.id == gateway.id)
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
    key = conn.execute(insert(s.sites).values(tenant_id=tenant_id, **values)).inserted_primary_key
    audit(conn, actor, "site.create", target=f"site:{key[0]}", tenant_id=tenant_id)
    return get_site(conn, key[0], tenant_id)


def get_site(conn: Connection, site_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(s.sites).where(s.sites.c.id == site_id, s.sites.c.tenant_id == tenant_id)
    ).first()


# -- meters ------------------------------------------------------------------------------


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
) -> Row:
    if get_site(conn, site_id, tenant_id) is None:
        raise RegistryError(f"no site {site_id}")
    if gateway_id is not None and get_gateway(conn, gateway_id, tenant_id) is None:
        raise RegistryError(f"no gateway {gateway_id}")
    if link == "udp" and not udp_host:
        raise RegistryError("a meter on UDP needs udp_host")
    if link == "wisun" and not (broute_id and broute_password):
        raise RegistryError("a meter on Wi-SUN needs broute_id and broute_password")
    key = conn.execute(
        insert(s.meters).values(
            tenant_id=tenant_id,
            site_id=site_id,
            gateway_id=gateway_id,
            serial=serial,
            link=link,
            udp_host=udp_host if link == "udp" else None,
            udp_port=udp_port if link == "udp" else None,
            device=device if link == "wisun" else None,
        )
    ).inserted_primary_key
    meter_id = key[0]
    if broute_id and broute_password:
        set_broute_credentials(conn, box, meter_id, broute_id, broute_password)
    audit(conn, actor, "meter.create", target=f"meter:{meter_id}", tenant_id=tenant_id)
    return get_meter(conn, meter_id, tenant_id)


def set_broute_credentials(
    conn: Connection, box: CredentialBox, meter_id: int, broute_id: str, password: str
) -> None:
    """Seal both, each bound to this meter and column (a copied ciphertext won't open)."""
    conn.execute(
        update(s.meters)
        .where(s.meters.c.id == meter_id)
        .values(
            broute_id_enc=box.seal(broute_id, meter_credential_ad(meter_id, "broute_id")),
            broute_password_enc=box.seal(
                password, meter_credential_ad(meter_id, "broute_password")
            ),
        )
    )


def get_meter(conn: Connection, meter_id: int, tenant_id: int) -> Row | None:
    return conn.execute(
        select(s.meters).where(s.meters.c.id == meter_id, s.meters.c.tenant_id == tenant_id)
    ).first()


def meters_of_gateway(conn: Connection, gateway_id: int) -> list[Row]:
    return list(conn.execute(select(s.meters).where(s.meters.c.gateway_id == gateway_id)))


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
