"""The dr room: what demand response measures. `baseline.py` computes a home's standard
baseline by the ERAB guideline (High 4 of 5 with the same-day adjustment), `reduction.py`
the measured reduction per home, event and tenant; both pure, fed the metering room's slot
energy (docs/dr.md, "Baseline and measured reduction"). It owns no table yet."""
