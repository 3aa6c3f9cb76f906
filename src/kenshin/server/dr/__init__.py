"""The dr room: a tenant's demand-response events, its homes' part in them and what they
achieved. `baseline.py` computes a home's standard baseline by the ERAB guideline (High 4
of 5 with the same-day adjustment), `reduction.py` the measured reduction per home, event
and tenant (both pure, fed the metering room's slot energy); `service.py` makes and moves
events, `dispatch.py` is the MQTT side's door, `results.py` the live view and the final
results, `rules.py` the imbalance rules, `job.py` the `dr` job, `api.py` /api/v1/dr
(docs/dr.md). Its tables are in `tables.py`."""
