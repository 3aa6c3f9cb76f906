"""Signed software updates for the gateway fleet, on python-tuf (issue 19, first slice).

- `repository`: the operator's TUF repository on disk (roles, keys, targets, rotation);
- `deltas`: binary deltas between release archives, each its own signed target;
- `client`: the gateway's side, `tuf.ngclient.Updater` over the server's HTTP;
- `names`: the target names both sides agree on (versions, releases, deltas, recipes);
- `keys`: where the private keys live (offline and online directories);
- `states`: the `update` command and the `update_state` events, for both sides;
- `install`: the gateway's install root (versions side by side, `current` switched
  atomically); `watchdog`: when a new version passed or must be rolled back, sans I/O.

This package never imports `kenshin.server` nor `kenshin.gateway` (a contract in
pyproject.toml): the server only serves the repository's files, and the gateway's
`updater` and `supervisor` call the client, the installer and the watchdog.
"""
