"""The gateway agent: reads one smart meter through `kenshin.meter`, keeps readings in a
durable queue until the cloud has them, and takes its settings from the cloud only."""
