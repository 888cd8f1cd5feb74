"""Who is acting, from where, in which request: read by the audit log without threading it through."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str = ""
    ip: str | None = None
    channel: str = "system"  # "web", "api", "cli", "worker", "system"


_current: ContextVar[RequestContext] = ContextVar("kehu_request_context", default=RequestContext())  # noqa: B039 -- frozen dataclass, immutable


def current_context() -> RequestContext:
    return _current.get()


def set_context(context: RequestContext) -> object:
    return _current.set(context)


def reset_context(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
