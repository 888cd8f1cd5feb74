from __future__ import annotations

import os
import secrets
import sys
from getpass import getpass
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kehu.accounts.models import User
from kehu.accounts.services import admin_create
from kehu.core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Create an administrator. The password comes from KEHU_ADMIN_PASSWORD, else a prompt; with "
        "--no-input and no KEHU_ADMIN_PASSWORD a strong password is generated and printed once. "
        "--if-none does nothing when an administrator already exists (for `make run`)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default="admin")
        parser.add_argument("--no-input", action="store_true", help="never prompt")
        parser.add_argument("--if-none", action="store_true", help="skip quietly when any superuser exists")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_none"] and User.objects.filter(is_superuser=True, is_active=True).exists():
            self.stdout.write("an administrator already exists; nothing to do")
            return
        username: str = options["username"]
        if User.objects.filter(username__iexact=username).exists():
            raise CommandError(f"user {username!r} already exists")
        password = os.environ.get("KEHU_ADMIN_PASSWORD", "")
        generated = False
        if not password:
            if options["no_input"] or not sys.stdin.isatty():
                password, generated = secrets.token_urlsafe(12), True
            else:
                password = getpass(f"Password for {username}: ")
                if password != getpass("Again: "):
                    raise CommandError("the passwords differ")
        try:
            admin_create(username=username, password=password)
        except DomainError as error:
            raise CommandError(f"{error.message} {error.fields or ''}".strip()) from error
        self.stdout.write(self.style.SUCCESS(f"administrator {username!r} created"))
        if generated:
            self.stdout.write(f"password (shown once, store it now): {password}")
