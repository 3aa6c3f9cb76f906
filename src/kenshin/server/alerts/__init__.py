"""Alerts: anomaly findings turned into alerts with open / acknowledged / resolved states,
deduplicated (one unresolved alert per rule and subject), each change recorded as an
event and delivered to the tenant's subscribers by e-mail and by webhook."""
