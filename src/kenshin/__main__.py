"""`python -m kenshin` is the `kenshin` command."""

from kenshin.cli import main

main()
