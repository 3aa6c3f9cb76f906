"""Migration scripts, one per revision, named `NNNN_what.py`."""
