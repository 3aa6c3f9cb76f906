"""API models shared by more than one router."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints

from ..times import JstDateTime

__all__ = ["Email", "Password", "Role", "TenantKind", "TenantOut", "UserOut"]

Role = Literal["admin", "operator", "viewer"]
TenantKind = Literal["retailer", "generator", "aggregator"]
# Deliberately loose (local@domain): the address is an identifier, checked by its owner.
Email = Annotated[
    str,
    StringConstraints(
        strip_whitespace=True, to_lower=True, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$"
    ),
]
# Bounded above: scrypt over a megabyte of "password" is a denial of service.
Password = Annotated[str, Field(min_length=8, max_length=1024)]


class _Row(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class TenantOut(_Row):
    id: int
    name: str
    kind: TenantKind
    created_at: JstDateTime
    instant_retention_days: int | None = Field(None, description="null: kept forever")
    energy_retention_days: int | None = Field(None, description="null: kept forever")


class UserOut(_Row):
    id: int
    tenant_id: int | None
    email: str
    role: Role
    disabled: bool
    created_at: JstDateTime
