"""The openadr room: an OpenADR 3.0.1 VTN (programs, events, reports, subscriptions, VENs
and resources) for each tenant, its OAuth2 client-credentials clients and tokens, and the
subscriptions' webhook notifications (issue 20, its first slice; docs/dr.md)."""
