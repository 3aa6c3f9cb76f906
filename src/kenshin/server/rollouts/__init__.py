"""The rollouts room: staged rollouts of a gateway software release over a tenant's fleet
(issue 19). `tables.py` its tables, `service.py` its writes (creating, moving, the job's
step, the gateways' `update_state` reports), `queries.py` its reads, `api.py` its HTTP
face under /api/v1/rollouts. How to use it: docs/updates.md, "Rolling out".
"""
