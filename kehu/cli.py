"""The ``kehu`` command: one entry point for people and scripts.

Each verb is a Django management command underneath, so ``kehu VERB --help`` documents it and
errors exit non-zero (1 for a refused command, 2 for bad arguments). ``kehu manage ...`` reaches
any Django command.
"""

from __future__ import annotations

import os
import sys

VERBS = {
    "serve": "serve the web UI and API with gunicorn, plus one job consumer",
    "worker": "run a job consumer (Huey) on its own",
    "migrate": "create or upgrade the database tables",
    "createadmin": "create the first administrator",
    "tokens": "create, list and revoke API tokens",
    "audit": "verify the audit log's hash chain",
    "keys": "encryption keys: status, rotate",
    "demo": "fill the database with demonstration data",
    "customers": "customer records: add, show, search, edit",
    "cards": "membership cards: issue, show, freeze, unfreeze, replace, top-up",
    "ledger": "the books: reconcile balances with their entries, liability report",
    "orders": "orders: add, show, refund",
    "import": "import customers, cards, orders or interactions from CSV or XLSX; undo an import",
    "export": "export customers, cards or orders to CSV or XLSX",
    "dedup": "duplicate customers: scan, list, merge, undo",
    "quality": "data-quality report: completeness, invalid values, stale records",
    "metrics": "customer metrics (RFM, activity, lifecycle): refresh",
    "clv": "customer lifetime value: fit BG/NBD + Gamma-Gamma and score customers",
    "churn": "churn risk: train the classifier and score customers",
    "recommendations": "product recommendations: build and evaluate",
    "segments": "customer segments: list, count, export",
    "dashboards": "dashboard figures: rebuild the precomputed daily and cohort tables",
    "check": "check settings, database, queue and keys",
    "manage": "run any Django management command",
}


# Verbs whose management command has another name (Django already owns "check").
COMMAND_FOR_VERB = {"check": "health"}


def _usage() -> str:
    width = max(len(verb) for verb in VERBS)
    lines = ["usage: kehu VERB [options]   (kehu VERB --help for a verb's options)", "", "verbs:"]
    lines += [f"  {verb.ljust(width)}  {summary}" for verb, summary in VERBS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if not arguments or arguments[0] in {"-h", "--help", "help"}:
        print(_usage())  # noqa: T201 -- the CLI's own help text
        sys.exit(0 if arguments else 2)
    if arguments[0] in {"--version", "version"}:
        from kehu import __version__

        print(__version__)  # noqa: T201
        sys.exit(0)
    verb, rest = arguments[0], arguments[1:]
    if verb not in VERBS:
        print(f"kehu: unknown verb {verb!r}\n\n{_usage()}", file=sys.stderr)  # noqa: T201
        sys.exit(2)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "kehu.settings")
    from django.core.management import execute_from_command_line

    from kehu.core.context import RequestContext, set_context

    # Audit events written from here say they came from the command line (or a worker).
    set_context(RequestContext(channel="worker" if verb == "worker" else "cli"))

    if verb == "manage":
        if not rest:
            rest = ["help"]
        execute_from_command_line(["kehu manage", *rest])
    else:
        command = COMMAND_FOR_VERB.get(verb, verb)
        # Django's usage line reads "<argv[0]> <command>": "kehu serve", not "kehu serve serve";
        # a renamed verb keeps its own name in front ("kehu check health").
        execute_from_command_line(["kehu" if command == verb else f"kehu {verb}", command, *rest])
    sys.exit(0)


if __name__ == "__main__":
    main()
