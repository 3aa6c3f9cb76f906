"""Kenshin: Japanese smart-meter B-route data from the meter to the businesses that need it."""

__version__ = "0.1.0"
