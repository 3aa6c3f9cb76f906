"""Webhooks: each closed 30-minute slot and each event, POSTed to the tenant's own server,
signed, retried, logged. See docs/webhooks.md for the receiving side."""
