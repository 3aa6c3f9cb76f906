"""A Wi-SUN SKSTACK IP dongle (ROHM BP35A1 or BP35C2 dialect) on a real pseudo-terminal.

The emulator opens a pty pair, and a host program opens `.path` exactly as it would open
`/dev/ttyUSB0`: 115200 8N1, text commands ending in CRLF, binary SKSENDTO payloads and
ERXUDP data read byte-exactly. Behind the radio sits a `SimulatedMeter`: the ECHONET Lite
frames inside SKSENDTO go to `meter.node.handle`, its answers and its half-hourly INF
come back as ERXUDP. docs/skstack.md is the contract for every line format.

Written sans-I/O, as `kenshin.wisun` is on the host's side: `core.DongleCore` is the
dongle as a state machine fed bytes and time (no pty, no event loop, no real clock), with
its commands in `commands.py` and its input framing in `framing.py`; `pty.DongleEmulator`
is the thin asyncio adapter that owns the pty and sleeps until the core's deadlines.
`defs.py` holds what they share. What follows is the behaviour, wherever it is coded.

Choices made where the vendors' references are silent or vague (each can be relied on):

- Echo (register SFE, on by default) is the command line as received plus CRLF, written
  before the answer. For SKSENDTO the echo is the text up to and including the space
  after the length field, then CRLF; the binary payload is never echoed. A host need not
  end the payload with CRLF; a stray CRLF after it is taken as an empty line, and empty
  lines are ignored (no echo, no answer).
- FAIL codes as the vendors number them: ER04 unknown command (or ROPT when
  `has_ropt` is off), ER05 wrong number of arguments, ER06 an argument of the wrong form
  or range (bad hex, bad address, channel outside 21..3C), ER09 an input line longer than
  `MAX_LINE` bytes, ER10 accepted but could not be done (SKJOIN while joining or joined,
  SKSCAN while scanning, SKTERM without a session, WOPT past `wopt_limit`, SKLOAD with
  nothing saved).
- SKRESET (and a power cycle, `unplug()` + `plug()`) puts the stack back to its power-on
  state: the PANA session ends without any EVENT, scans and joins under way are
  abandoned, every register returns to its default (S2 21, S3 FFFF, SFE 1, SA2 0) and the
  B-route ID and password are forgotten, so a host must send SKSETRBID / SKSETPWD / SKSREG
  again. What `WOPT` and `SKSAVE` wrote to flash survives both.
- `silent` models a hung firmware: input is read and thrown away (SKRESET cannot be heard)
  and nothing is written, not even events. Internal timers keep running. It ends when a
  test clears `faults.silent` (the dongle goes on from wherever it is) or by a power cycle
  (`unplug()` then `plug()` clears `silent` and resets the stack).
- SKSENDTO is always answered `EVENT 21 <ip6> [side] <param>` then `OK`: 00 when the frame
  went on air (it may still be lost: `drop_rate` losses are silent, as real radio losses
  are), 01 when there is no PANA session, while the dongle re-authenticates after EVENT 29,
  and while the ARIB transmit limit is in force; 02 when the destination is neither the
  meter nor ff02::1 (neighbour solicitation goes unanswered). Frames sent with `<sec>` 0
  reach the meter but are ignored by it: a B-route meter only talks encrypted.
- SKJOIN: `OK`, then `EVENT 21 … 02`, `EVENT 02`, (with `pana_noise`) ERXUDP PANA frames
  on port 02CC interleaved with `EVENT 21 … 00`, then after `join_delay_s` `EVENT 25`
  (joined) or `EVENT 24`. It succeeds only for the meter's link-local address, S2 = the
  meter's channel, S3 = its PAN ID, the right ID and password, a meter that is not
  silent, and no pending `join_failures`.
- After EVENT 25 the meter announces its instance list (INF of 0xD5, as the AIF start-up
  sequence has it) when `announce_instance_list` is on, and every half hour its EA/EB INF.
  Announcements are sent to ff02::1 (the dst field of their ERXUDP); answers to the
  dongle's own link-local address.
- PANA lifetime counts on the meter's clock. At expiry: `EVENT 29`, `reauth_delay_s` real
  seconds during which frames are refused (EVENT 21 … 01) and answers in flight are lost,
  then `EVENT 25`, or `EVENT 24` (session gone) if the dongle's credentials no longer match
  `route_b_id`/`password` or the meter has gone silent.
- SKTERM with a session: `OK`, then `EVENT 27` (or `EVENT 28`, termination timed out, if the
  meter is silent). `EVENT 28` is the vendors' "no answer to the termination request"; a
  SKTERM with no session is `FAIL ER10`.
- SKSCAN: `OK`, then per PAN found `EVENT 20` + the EPANDESC block, then `EVENT 22` with the
  dongle's own address. The scan takes `scan_seconds(duration)` real seconds (0.05 s at
  duration 3, doubling per step, capped at `scan_cap_s`) and finds the meter only when
  duration >= `scan_threshold`, its channel is in the mask, and neither `hidden_from_scan`
  nor `scan_misses` says otherwise. Mode 2 blocks carry PairID (the last 8 characters of
  the B-route ID, as the meter's beacon IE does), mode 3 blocks do not; mode 0 is an energy
  scan (`EEDSCAN` + channel/RSSI pairs, then `EVENT 1F`).
- ERXUDP on the BP35C2 carries the LQI field only while register SA2 is 1 (it is 0 at
  power-on and after SKRESET), as the real one does; `erxudp_lqi` True or False forces
  either form. `sa2_supported=False` models firmware without SA2: `SKSREG SA2 ...` is
  `FAIL ER06` and ERXUDP stays without LQI.
- The B-route ID and password are never logged: command and echo lines are logged with
  them replaced by asterisks, and `repr()` shows neither.
"""

from .core import DongleCore
from .defs import DongleFaults, DongleModel
from .pty import DongleEmulator

__all__ = ["DongleCore", "DongleEmulator", "DongleFaults", "DongleModel"]
