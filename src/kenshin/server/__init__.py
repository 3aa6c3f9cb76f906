"""The Kenshin server: device management, metering, REST API and control panel."""
