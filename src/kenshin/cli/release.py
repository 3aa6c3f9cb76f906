"""`kenshin release ...`: the operator's signed update repository for the gateways.

Each command is given only the key directories it needs (docs/updates.md): the offline
one (root and targets keys) for releases and rotations, the online one (snapshot and
timestamp) for every change, the recipes one for recipes. Options may come from the
environment instead (`KENSHIN_RELEASE_REPO`, `KENSHIN_RELEASE_OFFLINE_KEYS`, ...).

Exit codes: 0 done; 1 the repository refused (no repository, a key not at hand, a version
published already, ...); 2 the command line is wrong (a bad version, a missing file).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    no_args_is_help=True,
    help="The gateways' signed software updates (TUF): releases, deltas, recipes, keys.",
)

Repo = Annotated[
    Path,
    typer.Option(
        "--repo",
        envvar="KENSHIN_RELEASE_REPO",
        help="The repository directory (what the server serves).",
    ),
]
Offline = Annotated[
    Path | None,
    typer.Option(
        envvar="KENSHIN_RELEASE_OFFLINE_KEYS",
        help="The offline key directory: root.pem and targets.pem (keep it off the server).",
    ),
]
Online = Annotated[
    Path | None,
    typer.Option(
        envvar="KENSHIN_RELEASE_ONLINE_KEYS",
        help="The online key directory: snapshot.pem and timestamp.pem (the server's).",
    ),
]
RecipeKeys = Annotated[
    Path | None,
    typer.Option(
        envvar="KENSHIN_RELEASE_RECIPE_KEYS", help="The recipe authors' key directory: recipes.pem."
    ),
]


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def _repository(repo: Path, offline=None, online=None, recipes=None, *, create=False):
    from kenshin.updates.keys import KeyDirs
    from kenshin.updates.repository import Repository

    repository = Repository(repo, KeyDirs(offline, online, recipes))
    if not create and not repository.exists():
        raise _fail(f"no repository at {repo}: run `kenshin release init` or pass --repo", 1)
    return repository


def _run(action):
    """`action()`, with the repository's refusals as exit code 1, bad input as 2."""
    from kenshin.updates.names import TargetNameError
    from kenshin.updates.repository import ReleaseError

    try:
        return action()
    except ReleaseError as err:
        raise _fail(str(err), 1) from None
    except TargetNameError as err:
        raise _fail(str(err), 2) from None
    except FileNotFoundError as err:
        raise _fail(f"{err.filename}: no such file", 2) from None


@app.command()
def init(repo: Repo, offline_keys: Offline = None, online_keys: Online = None,
         recipe_keys: RecipeKeys = None) -> None:  # fmt: skip
    """Create the repository and a key for each role: root and targets into the offline
    directory, snapshot and timestamp into the online one, recipes into its own."""
    from kenshin.updates.keys import KeyDirs
    from kenshin.updates.repository import Repository

    missing = [
        option
        for option, value in (
            ("--offline-keys", offline_keys),
            ("--online-keys", online_keys),
            ("--recipe-keys", recipe_keys),
        )
        if value is None
    ]
    if missing:
        raise _fail(f"init writes every role's key: pass {', '.join(missing)}", 2)
    keys = KeyDirs(offline_keys, online_keys, recipe_keys)
    repository = _run(lambda: Repository.init(repo, keys))
    typer.echo(f"repository made at {repository.path}")
    typer.echo(f"the gateways' initial root: {repository.metadata_dir / '1.root.json'}")
    typer.echo(f"move {offline_keys} off this machine once you have a copy of it")


@app.command()
def add(
    file: Annotated[Path, typer.Argument(help="The release archive (an uncompressed tar).")],
    version: Annotated[str, typer.Option(help="Its version, e.g. 1.4.2.")],
    repo: Repo,
    offline_keys: Offline = None,
    online_keys: Online = None,
) -> None:
    """Publish a release, signed with the targets key (then `kenshin release delta`)."""
    repository = _repository(repo, offline_keys, online_keys)
    target = _run(lambda: repository.add_release(file, version))
    typer.echo(
        f"published {target.path}: {target.length:,} bytes, sha256 {target.hashes['sha256']}"
    )


@app.command()
def delta(
    version: Annotated[str, typer.Argument(help="The release the deltas lead to.")],
    repo: Repo,
    base: Annotated[
        list[str] | None,
        typer.Option("--from", help="A release to make a delta from (repeat it); default: --last."),
    ] = None,
    last: Annotated[int, typer.Option(min=1, help="Deltas from this many earlier releases.")] = 3,
    offline_keys: Offline = None,
    online_keys: Online = None,
) -> None:
    """Publish binary deltas to VERSION from earlier releases, each a signed target."""
    from kenshin.updates.deltas import publish_deltas

    repository = _repository(repo, offline_keys, online_keys)
    for target in _run(lambda: publish_deltas(repository, version, base or None, last=last)):
        typer.echo(f"published {target.path}: {target.length:,} bytes")


@app.command()
def sign(
    repo: Repo,
    role: Annotated[
        list[str] | None,
        typer.Option(help="root, targets or recipes (repeat it); default: targets."),
    ] = None,
    offline_keys: Offline = None,
    online_keys: Online = None,
    recipe_keys: RecipeKeys = None,
) -> None:
    """Sign roles afresh: a new version and expiry (before they expire), then a new
    snapshot and timestamp."""
    repository = _repository(repo, offline_keys, online_keys, recipe_keys)
    roles = role or ["targets"]
    _run(lambda: repository.sign(roles))
    typer.echo(f"signed {', '.join(roles)}; snapshot and timestamp follow")


@app.command("rotate-key")
def rotate_key(
    role: Annotated[str, typer.Argument(help="root, targets, snapshot, timestamp or recipes.")],
    repo: Repo,
    offline_keys: Offline = None,
    online_keys: Online = None,
    recipe_keys: RecipeKeys = None,
) -> None:
    """Replace ROLE's key with a new one, announced in a new root signed by the root key
    (root itself: by the old and the new one). A lost key is rotated the same way, except
    the root's (docs/updates.md)."""
    from kenshin.updates.repository import ROLES

    if role not in ROLES:
        raise _fail(f"no role {role!r}: one of {', '.join(ROLES)}", 2)
    repository = _repository(repo, offline_keys, online_keys, recipe_keys)
    keyid = _run(lambda: repository.rotate_key(role))
    typer.echo(f"{role} key rotated: new key id {keyid}; the old key file was moved aside")
    typer.echo("destroy the retired key file once the gateways have taken the new root")


@app.command("refresh-timestamp")
def refresh_timestamp(repo: Repo, online_keys: Online = None) -> None:
    """Renew the timestamp (and the snapshot when it nears its expiry) with the online
    keys: what the server runs, e.g. hourly, so gateways never see it expire."""
    repository = _repository(repo, online=online_keys)
    timestamp = _run(repository.refresh_timestamp)
    typer.echo(
        f"timestamp {timestamp.signed.version}, expires {timestamp.signed.expires:%Y-%m-%d %H:%M}Z"
    )
    for role, state in _run(repository.status)["roles"].items():
        if state["expired"] or state["expires_soon"]:
            typer.echo(
                f"warning: {role} expires {state['expires']}: `kenshin release sign --role {role}` "
                "with the offline keys",
                err=True,
            )


@app.command("add-recipe")
def add_recipe(
    file: Annotated[
        Path,
        typer.Argument(
            help="The recipe: a directory with manifest.json and recipe.py, or "
            "the package built from one."
        ),
    ],
    repo: Repo,
    name: Annotated[
        str | None, typer.Option(help="Its name under recipes/ (default: the manifest's).")
    ] = None,
    recipe_keys: RecipeKeys = None,
    online_keys: Online = None,
) -> None:
    """Publish a recipe, signed with the recipes key (no release key needed). Its manifest
    is checked first: a gateway would refuse a package that does not parse."""
    from kenshin.updates.recipes import CODE, MANIFEST, RecipeError, build_package, read_package

    def package() -> tuple[bytes, str]:
        if file.is_dir():
            data = build_package((file / MANIFEST).read_bytes(), (file / CODE).read_bytes())
        else:
            data = file.read_bytes()
        try:
            return data, read_package(data, name).manifest.name
        except RecipeError as err:
            raise _fail(str(err), 2) from None

    data, published = _run(package)
    repository = _repository(repo, online=online_keys, recipes=recipe_keys)
    built = repo / f".{published}.recipe"  # the repository signs a file
    built.write_bytes(data)
    try:
        target = _run(lambda: repository.add_recipe(built, published))
    finally:
        built.unlink()
    typer.echo(f"published {target.path}: {target.length:,} bytes")


@app.command()
def status(
    repo: Repo,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object.")] = False,
    offline_keys: Offline = None,
    online_keys: Online = None,
    recipe_keys: RecipeKeys = None,
) -> None:
    """Each role's version, expiry and key holder; the releases, deltas and recipes."""
    repository = _repository(repo, offline_keys, online_keys, recipe_keys)
    state = _run(repository.status)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    typer.echo(f"repository {state['repository']}")
    for role, info in state["roles"].items():
        flag = "EXPIRED" if info["expired"] else "expires soon" if info["expires_soon"] else ""
        here = "key here" if info["key_here"] else "key elsewhere"
        typer.echo(
            f"  {role:<10} v{info['version']:<4} expires {info['expires']}  "
            f"{info['holder']:<8} {here:<13} {flag}".rstrip()
        )
    for what in ("releases", "deltas", "recipes"):
        typer.echo(f"{what}: {', '.join(state[what]) or 'none'}")
