from __future__ import annotations

import os
import secrets
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from kehu.accounts.demo import demo_organisation_create
from kehu.core.errors import DomainError


class Command(BaseCommand):
    help = (
        "Fill the database with demonstration data: a chain of stores (departments), the usual roles "
        "and their staff. Safe to run again: only what is missing is added. Staff passwords come from "
        "--password, else KEHU_DEMO_PASSWORD, else one is generated and printed."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--password", default=None, help="password for every demo staff account")

    def handle(self, *args: Any, **options: Any) -> None:
        password = options["password"] or os.environ.get("KEHU_DEMO_PASSWORD") or secrets.token_urlsafe(9)
        try:
            report = demo_organisation_create(password=password)
        except DomainError as error:
            raise CommandError(f"{error.message} {error.fields or ''}".strip()) from error
        self.stdout.write(
            self.style.SUCCESS(
                f"demo data: {report.departments} departments, {report.roles} roles, {report.users} users added"
            )
        )
        if report.usernames:
            self.stdout.write(f"staff accounts: {', '.join(report.usernames)}; password: {password}")
