"""``storesync check``: are the settings' channels reachable with their credentials?

Run before starting the daemon (a new install, a rotated key) or beside it: each enabled channel's
connector is built from the settings exactly as the daemon builds it and asked the cheapest
authenticated question it has (``Channel.check``). No retries, so a wrong key answers in one request;
every message is redacted, run-time tokens included.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from channels.base import AuthError, ChannelError
from channels.http import HttpClient, open_transport
from channels.ratelimit import RateLimiter
from channels.registry import connector_class
from channels.transport import Transport
from daemon import __version__
from daemon.clock import SYSTEM_CLOCK
from daemon.secrets import SECRETS
from daemon.settings import Settings

CHECK_TIMEOUT_SECONDS = 20.0
"""The most a channel's check may take in all, whatever its own timeout says."""


@dataclass(frozen=True)
class CheckResult:
    channel: str
    kind: str
    ok: bool
    detail: str
    auth: bool = False
    """The platform refused the credentials (as opposed to being unreachable or failing)."""


async def check_channels(settings: Settings, names: Sequence[str] | None = None) -> list[CheckResult]:
    """Check ``names`` (default: every enabled channel), all at once; one result each, in order.
    KeyError for a name the settings do not have."""
    chosen = list(names) if names else list(settings.enabled_channels())
    for name in chosen:
        if name not in settings.channels:
            raise KeyError(f"no channel {name!r} in the settings")
    transport = open_transport(settings.daemon.http_client, user_agent=f"storesync/{__version__} check")
    try:
        return list(await asyncio.gather(*(_check_one(settings, name, transport) for name in chosen)))
    finally:
        await transport.aclose()


async def _check_one(settings: Settings, name: str, transport: Transport) -> CheckResult:
    context = settings.channel_context(name).model_copy(update={"max_retries": 0})
    kind = context.kind
    limiter = RateLimiter(context.rate_limit_per_minute, context.rate_limit_burst, SYSTEM_CLOCK)
    http = HttpClient(
        context, clock=SYSTEM_CLOCK, limiter=limiter, transport=transport, on_secret=SECRETS.register
    )
    try:
        connector = connector_class(kind)(context, http)
        async with asyncio.timeout(CHECK_TIMEOUT_SECONDS):
            detail = await connector.check()
        return CheckResult(name, kind, True, detail)
    except AuthError as exc:
        return CheckResult(name, kind, False, SECRETS.redact(str(exc)), auth=True)
    except ChannelError as exc:
        return CheckResult(name, kind, False, SECRETS.redact(str(exc)))
    except TimeoutError:
        return CheckResult(name, kind, False, f"no answer within {CHECK_TIMEOUT_SECONDS:g} s")
    except (NotImplementedError, ValueError) as exc:  # a connector without a check; bad options
        return CheckResult(name, kind, False, SECRETS.redact(str(exc)))
    finally:
        await limiter.aclose()
