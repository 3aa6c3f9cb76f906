"""The OpenADR 3.0.1 objects as the specification's OpenAPI document defines them
(components/schemas: program, event, report, subscription, ven, resource and their parts),
with the spec's camelCase names. What the VTN provisions (id, createdDateTime,
modificationDateTime, objectType) may come in a request and is ignored there; it is always
in an answer."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

__all__ = [
    "MODELS",
    "Event",
    "Notification",
    "ObjectId",
    "Program",
    "Report",
    "Resource",
    "Subscription",
    "Ven",
]

# The spec's duration pattern, written without its look-ahead (which JSON Schema's
# regular expressions need not support): a date part, a time part, or both, never "P".
_DATE = r"(?:\d+Y(?:\d+M)?(?:\d+[DW])?|\d+M(?:\d+[DW])?|\d+[DW])"
_TIME = r"T(?:\d+H(?:\d+M)?(?:\d+(?:\.\d+)?S)?|\d+M(?:\d+(?:\.\d+)?S)?|\d+(?:\.\d+)?S)"
_DURATION = rf"^-?P(?:{_DATE}(?:{_TIME})?|{_TIME})$"
ObjectId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z0-9_-]*$")]
Duration = Annotated[str, Field(max_length=64, pattern=_DURATION, examples=["PT1H"])]
Name = Annotated[str, Field(min_length=1, max_length=128)]
Text = Annotated[str, Field(max_length=4096)]
Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
Float = Annotated[float, Field(allow_inf_nan=False)]
ObjectType = Literal["PROGRAM", "EVENT", "REPORT", "SUBSCRIPTION", "VEN", "RESOURCE"]


class _Spec(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class Point(_Spec):
    x: Float
    y: Float


class ValuesMap(_Spec):
    type: Name = Field(examples=["PRICE"])
    values: list[bool | Int32 | Float | Text | Point] = Field(max_length=10_000)


class IntervalPeriod(_Spec):
    start: AwareDatetime
    duration: Duration | None = None
    randomize_start: Duration | None = Field(None, alias="randomizeStart")


class Interval(_Spec):
    id: Int32
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    payloads: list[ValuesMap] = Field(max_length=1000)


class EventPayloadDescriptor(_Spec):
    object_type: Literal["EVENT_PAYLOAD_DESCRIPTOR"] | None = Field(None, alias="objectType")
    payload_type: Name = Field(alias="payloadType")
    units: Text | None = None
    currency: Text | None = None


class ReportPayloadDescriptor(_Spec):
    object_type: Literal["REPORT_PAYLOAD_DESCRIPTOR"] | None = Field(None, alias="objectType")
    payload_type: Name = Field(alias="payloadType")
    reading_type: Text | None = Field(None, alias="readingType")
    units: Text | None = None
    accuracy: Float | None = None
    confidence: Annotated[int, Field(ge=0, le=100)] | None = None


class ReportDescriptor(_Spec):
    payload_type: Name = Field(alias="payloadType")
    reading_type: Text | None = Field(None, alias="readingType")
    units: Text | None = None
    targets: list[ValuesMap] | None = None
    aggregate: bool = False
    start_interval: Int32 = Field(-1, alias="startInterval")
    num_intervals: Int32 = Field(-1, alias="numIntervals")
    historical: bool = True
    frequency: Int32 = -1
    repeat: Int32 = 1


class ProgramDescription(_Spec):
    url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(alias="URL")


class _Object(_Spec):
    """The fields the VTN provisions: read-only."""

    id: ObjectId | None = None
    created_date_time: datetime | None = Field(None, alias="createdDateTime")
    modification_date_time: datetime | None = Field(None, alias="modificationDateTime")


class Program(_Object):
    object_type: Literal["PROGRAM"] | None = Field(None, alias="objectType")
    program_name: Name = Field(alias="programName", examples=["ResTOU"])
    program_long_name: Text | None = Field(None, alias="programLongName")
    retailer_name: Text | None = Field(None, alias="retailerName")
    retailer_long_name: Text | None = Field(None, alias="retailerLongName")
    program_type: Text | None = Field(None, alias="programType")
    country: Text | None = None
    principal_subdivision: Text | None = Field(None, alias="principalSubdivision")
    time_zone_offset: Duration | None = Field(None, alias="timeZoneOffset")
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    program_descriptions: list[ProgramDescription] | None = Field(None, alias="programDescriptions")
    binding_events: bool | None = Field(None, alias="bindingEvents")
    local_price: bool | None = Field(None, alias="localPrice")
    payload_descriptors: list[EventPayloadDescriptor | ReportPayloadDescriptor] | None = Field(
        None, alias="payloadDescriptors"
    )
    targets: list[ValuesMap] | None = None


class Event(_Object):
    object_type: Literal["EVENT"] | None = Field(None, alias="objectType")
    program_id: ObjectId = Field(alias="programID")
    event_name: Text | None = Field(None, alias="eventName")
    priority: Annotated[int, Field(ge=0, le=2**31 - 1)] | None = None
    targets: list[ValuesMap] | None = None
    report_descriptors: list[ReportDescriptor] | None = Field(None, alias="reportDescriptors")
    payload_descriptors: list[EventPayloadDescriptor] | None = Field(
        None, alias="payloadDescriptors"
    )
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    intervals: list[Interval] = Field(max_length=10_000)


class ReportResource(_Spec):
    resource_name: Name = Field(alias="resourceName")
    interval_period: IntervalPeriod | None = Field(None, alias="intervalPeriod")
    intervals: list[Interval] = Field(max_length=10_000)


class Report(_Object):
    object_type: Literal["REPORT"] | None = Field(None, alias="objectType")
    program_id: ObjectId = Field(alias="programID")
    event_id: ObjectId = Field(alias="eventID")
    client_name: Name = Field(alias="clientName")
    report_name: Text | None = Field(None, alias="reportName")
    payload_descriptors: list[ReportPayloadDescriptor] | None = Field(
        None, alias="payloadDescriptors"
    )
    resources: list[ReportResource] = Field(max_length=10_000)


# The operations a subscription names are the spec's HTTP methods (3.0.1's
# objectOperations: GET, POST, PUT, DELETE), as a notification's `operation` is. READ,
# CREATE and UPDATE, the names this VTN took at first, are still taken for GET, POST and
# PUT, so subscriptions made with them keep being notified.
Operation = Literal["GET", "POST", "PUT", "DELETE", "READ", "CREATE", "UPDATE"]


class ObjectOperation(_Spec):
    objects: list[ObjectType] = Field(max_length=6)
    operations: list[Operation] = Field(max_length=7)
    callback_url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(alias="callbackUrl")
    bearer_token: Text | None = Field(None, alias="bearerToken")


class Subscription(_Object):
    object_type: Literal["SUBSCRIPTION"] | None = Field(None, alias="objectType")
    client_name: Name = Field(alias="clientName")
    program_id: ObjectId = Field(alias="programID")
    object_operations: list[ObjectOperation] = Field(alias="objectOperations", max_length=100)
    targets: list[ValuesMap] | None = None


class Resource(_Object):
    object_type: Literal["RESOURCE"] | None = Field(None, alias="objectType")
    resource_name: Name = Field(alias="resourceName")
    ven_id: ObjectId | None = Field(None, alias="venID")
    attributes: list[ValuesMap] | None = None
    targets: list[ValuesMap] | None = None


class Ven(_Object):
    object_type: Literal["VEN"] | None = Field(None, alias="objectType")
    ven_name: Name = Field(alias="venName")
    attributes: list[ValuesMap] | None = None
    targets: list[ValuesMap] | None = None
    resources: list[Resource] | None = None


class Notification(_Spec):
    """What the VTN POSTs to a subscription's callbackUrl."""

    object_type: ObjectType = Field(alias="objectType")
    operation: Literal["GET", "POST", "PUT", "DELETE"]
    object: dict[str, Any]
    targets: list[ValuesMap] | None = None


MODELS: dict[str, type[_Object]] = {
    "PROGRAM": Program,
    "EVENT": Event,
    "REPORT": Report,
    "SUBSCRIPTION": Subscription,
    "VEN": Ven,
    "RESOURCE": Resource,
}
PROVISIONED = {"id", "created_date_time", "modification_date_time", "object_type"}


def stored_body(obj: _Object) -> dict[str, Any]:
    """The object as kept: the spec's JSON, less what the VTN provisions."""
    return obj.model_dump(mode="json", by_alias=True, exclude=PROVISIONED)
