"""Reads a home solar inverter (ECHONET Lite class 0x0279) on the home LAN and publishes
its instantaneous generation (EPC 0xE0, W) and cumulative generation (EPC 0xE1, in
0.001 kWh, that is Wh) as the series "pv", every `interval_s` seconds.

Options (the gateway settings' recipes section): `host` (the inverter's address, required),
`port` (default 3610), `instance` (default 1), `interval_s` (default 60, at least 1).
A missed answer is logged and tried at the next tick; nothing is queued.
"""

import asyncio

GENERATION_W, CUMULATIVE_WH = 0xE0, 0xE1


async def run(ctx):
    host = str(ctx.options["host"])
    port = int(ctx.options.get("port", 3610))
    eoj = 0x027900 | int(ctx.options.get("instance", 1))
    interval_s = max(float(ctx.options.get("interval_s", 60)), 1.0)
    while True:
        try:
            values = await ctx.get(host, eoj, [GENERATION_W, CUMULATIVE_WH], port=port)
        except TimeoutError as err:
            ctx.log.warning("the inverter at %s did not answer: %s", host, err)
        else:
            if GENERATION_W in values and CUMULATIVE_WH in values:
                ctx.publish(
                    "pv",
                    {
                        "generation_w": values[GENERATION_W],
                        "cumulative_wh": values[CUMULATIVE_WH],
                    },
                )
        await asyncio.sleep(interval_s)
