"""Device management: the registry, enrollment, settings, status, commands (`api` is
its HTTP face; `kenshin.server.runtime` its MQTT side)."""
