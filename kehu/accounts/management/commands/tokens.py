from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from rich.console import Console
from rich.table import Table

from kehu.accounts.models import ApiToken, User
from kehu.accounts.services import token_create, token_revoke
from kehu.core.errors import DomainError


class Command(BaseCommand):
    help = "API tokens: `create --user NAME` prints a new token once; `list`; `revoke ID`."

    def add_arguments(self, parser: CommandParser) -> None:
        subcommands = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
        create = subcommands.add_parser("create", help="create a token and print it once")
        create.add_argument("--user", required=True, help="user name the token acts as")
        create.add_argument("--name", default="cli", help="what the token is for")
        create.add_argument("--days", type=int, default=None, help="expire after this many days")
        listing = subcommands.add_parser("list", help="list tokens (never their secrets)")
        listing.add_argument("--user", default=None)
        listing.add_argument("--json", action="store_true", help="print JSON instead of a table")
        revoke = subcommands.add_parser("revoke", help="revoke a token at once")
        revoke.add_argument("token_id", type=int)

    def handle(self, *args: Any, **options: Any) -> None:
        action = options["action"]
        if action == "create":
            user = User.objects.filter(username__iexact=options["user"]).first()
            if user is None:
                raise CommandError(f"no user named {options['user']!r}")
            if options["days"] is not None and options["days"] < 1:
                raise CommandError("--days must be at least 1")
            expires = timezone.now() + timedelta(days=options["days"]) if options["days"] else None
            try:
                token, plaintext = token_create(
                    actor=None, user=user, name=options["name"], expires_at=expires
                )
            except DomainError as error:
                raise CommandError(error.message) from error
            self.stderr.write(f"token {token.pk} for {user.username}; shown once, store it now:")
            self.stdout.write(plaintext)
        elif action == "list":
            tokens = ApiToken.objects.select_related("user").order_by("-created_at", "-id")
            if options["user"]:
                tokens = tokens.filter(user__username__iexact=options["user"])
            rows: list[dict[str, str | int | None]] = [
                {
                    "id": t.pk,
                    "user": t.user.username,
                    "name": t.name,
                    "prefix": t.prefix,
                    "created_at": t.created_at.isoformat(),
                    "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                    "expires_at": t.expires_at.isoformat() if t.expires_at else None,
                    "revoked_at": t.revoked_at.isoformat() if t.revoked_at else None,
                }
                for t in tokens
            ]
            if options["json"]:
                self.stdout.write(json.dumps(rows, ensure_ascii=False, indent=2))
                return
            table = Table("id", "user", "name", "prefix", "created", "last used", "state")
            for row in rows:
                state = "revoked" if row["revoked_at"] else "active"
                table.add_row(
                    *(
                        str(row[key] or "-")[:19]
                        for key in ("id", "user", "name", "prefix", "created_at", "last_used_at")
                    ),
                    state,
                )
            Console().print(table)
        else:
            found = ApiToken.objects.filter(pk=options["token_id"]).first()
            if found is None:
                raise CommandError(f"no token with id {options['token_id']}")
            token_revoke(actor=None, token=found)
            self.stdout.write(self.style.SUCCESS(f"token {found.pk} revoked"))
