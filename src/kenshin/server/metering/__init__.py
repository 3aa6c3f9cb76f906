"""The metering room: 30-minute truth from the raw readings (`slots`), and later rollups,
series, exports and webhooks."""
