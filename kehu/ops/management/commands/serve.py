from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser
from gunicorn.app.base import BaseApplication


class KehuServer(BaseApplication):  # type: ignore[misc]
    def __init__(self, options: dict[str, Any]) -> None:
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            self.cfg.set(key, value)

    def load(self) -> Any:
        from kehu.wsgi import application

        return application


class Command(BaseCommand):
    help = "Serve the web UI and the API with gunicorn (static files by whitenoise) and one job consumer."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument(
            "--workers", type=int, default=(os.cpu_count() or 1) + 1, help="gunicorn processes"
        )
        parser.add_argument("--threads", type=int, default=2, help="threads per gunicorn process")
        parser.add_argument(
            "--no-worker", action="store_true", help="do not start a job consumer beside the server"
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not settings.DEBUG:
            call_command("collectstatic", interactive=False, verbosity=0)
        consumer = None
        if not options["no_worker"]:
            # The consumer runs as its own process so a long job never stalls a web worker.
            consumer = subprocess.Popen([sys.executable, "-m", "kehu.cli", "worker"])  # noqa: S603 -- our own interpreter and module
        self.stdout.write(f"Kehu serving on http://{options['host']}:{options['port']}/ (Ctrl-C stops)")
        try:
            KehuServer(
                {
                    "bind": f"{options['host']}:{options['port']}",
                    "workers": options["workers"],
                    "threads": options["threads"],
                    "worker_class": "gthread" if options["threads"] > 1 else "sync",
                    "accesslog": "-" if settings.DEBUG else None,
                    "errorlog": "-",
                    "graceful_timeout": 20,
                    "timeout": 120,
                    "keepalive": 5,
                }
            ).run()
        finally:
            if consumer is not None:
                consumer.terminate()
                consumer.wait(timeout=30)
