"""``pampero keys ...``' arguments (what each does is in ``commands.py``).

Every ``pampero`` command builds the whole parser, ``serve`` included; this module imports no
database code, so a server without accounts never loads SQLAlchemy.
"""

from __future__ import annotations

import argparse
from typing import Any

from pampero.accounts.periods import RESETS


def add_parser(commands: Any) -> None:
    """Add ``keys`` and its subcommands to the ``pampero`` parser's ``commands``."""
    keys = commands.add_parser("keys", help="manage API keys in the accounts database")
    keys.add_argument("--database-url", default=argparse.SUPPRESS, help="as for serve")
    keys.add_argument("--home", default=argparse.SUPPRESS, help="PAMPERO_HOME")
    keys.add_argument("--config", default=argparse.SUPPRESS, help="a config file")
    actions = keys.add_subparsers(dest="keys_command", required=True)

    create = actions.add_parser("create", help="create a key; its secret is printed once")
    create.add_argument("--name", default="", help="a label")
    create.add_argument(
        "--models", action="append", default=[], help="allowed model globs (repeat or comma list)"
    )
    create.add_argument("--rpm", type=int, help="requests per minute")
    create.add_argument("--tpm", type=int, help="tokens per minute")
    create.add_argument("--parallel", type=int, help="requests in flight at once")
    create.add_argument("--budget", type=float, help="USD per budget period")
    create.add_argument("--budget-reset", choices=RESETS, default="none")
    create.add_argument("--expires", help="ISO date or time, or a duration: 30d, 12h")
    create.add_argument("--priority", type=int, help="engine priority tier (lower runs first)")
    create.add_argument("--admin", action="store_true", help="an admin key (no inference)")
    create.add_argument("--metadata", default="{}", help="a JSON object")
    create.add_argument("--json", action="store_true", help="print JSON")

    listing = actions.add_parser("list", help="list keys (prefixes, never secrets)")
    listing.add_argument("--json", action="store_true")
    show = actions.add_parser("show", help="one key by id or prefix")
    show.add_argument("key")
    show.add_argument("--json", action="store_true")
    revoke = actions.add_parser("revoke", help="revoke a key at once")
    revoke.add_argument("key")
    revoke.add_argument("--json", action="store_true")
    for name, text in (("disable", "refuse a key until it is enabled"), ("enable", "re-enable")):
        toggle = actions.add_parser(name, help=text)
        toggle.add_argument("key")
        toggle.add_argument("--json", action="store_true")
    rotate = actions.add_parser("rotate", help="a new secret; the old one works for --overlap")
    rotate.add_argument("key")
    rotate.add_argument("--overlap", default="0s", help="seconds or a duration: 90s, 1h, 1d")
    rotate.add_argument("--json", action="store_true")
    actions.add_parser("reconcile", help="rebuild counters and the daily rollup from the ledger")
