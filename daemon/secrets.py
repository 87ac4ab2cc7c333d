"""Secrets: where they come from (``env:NAME``, ``file:PATH``) and how they are kept out of logs.

Settings name a secret by reference so that settings files can be shared and committed; the value
is read once at load time. Every resolved value is registered with the process-wide
:data:`SECRETS` registry, which the logger's redaction processor consults, so a secret that slips
into an exception text or a payload dump still never reaches a log line.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path

ENV_PREFIX = "env:"
FILE_PREFIX = "file:"
CREDENTIALS_VAR = "CREDENTIALS_DIRECTORY"
REDACTED = "***"

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


class SecretError(ValueError):
    """A secret reference that cannot be resolved; the message names the source, never the value."""


def is_reference(value: str) -> bool:
    """True when ``value`` points at a secret instead of being one."""
    return value.startswith((ENV_PREFIX, FILE_PREFIX))


def resolve_secret(
    value: str, *, environ: Mapping[str, str] | None = None, base_dir: Path | None = None
) -> str:
    """The secret a settings value stands for: ``env:NAME``, ``file:PATH`` or the literal itself.

    ``file:`` paths may start with ``$CREDENTIALS_DIRECTORY`` (systemd ``LoadCredential``) and are
    otherwise relative to ``base_dir`` (the settings file's folder). One trailing newline is stripped
    because ``echo secret > file`` is how people write these files.
    """
    env = os.environ if environ is None else environ
    if value.startswith(ENV_PREFIX):
        name = value[len(ENV_PREFIX) :].strip()
        if not _ENV_NAME.fullmatch(name):
            raise SecretError('expected "env:NAME" with a valid environment variable name')
        secret = env.get(name)
        if secret is None:
            raise SecretError(f"environment variable {name} is not set")
        if not secret:
            raise SecretError(f"environment variable {name} is empty")
        return secret
    if value.startswith(FILE_PREFIX):
        path = _secret_path(value[len(FILE_PREFIX) :].strip(), env, base_dir)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise SecretError(f"secret file {path} is not UTF-8 text") from None
        except OSError as exc:
            raise SecretError(
                f"cannot read secret file {path}: {exc.strerror or type(exc).__name__}"
            ) from None
        secret = text.removesuffix("\n").removesuffix("\r")
        if not secret:
            raise SecretError(f"secret file {path} is empty")
        return secret
    if not value:
        raise SecretError("is empty")
    return value


def _secret_path(raw: str, environ: Mapping[str, str], base_dir: Path | None) -> Path:
    if not raw:
        raise SecretError('expected "file:PATH" with a path')
    for token in ("${" + CREDENTIALS_VAR + "}", "$" + CREDENTIALS_VAR):
        if raw.startswith(token):
            folder = environ.get(CREDENTIALS_VAR)
            if not folder:
                raise SecretError(
                    f"{CREDENTIALS_VAR} is not set (is there a LoadCredential= line in the unit?)"
                )
            raw = folder + raw[len(token) :]
            break
    path = Path(raw)
    if not path.is_absolute():
        path = (base_dir or Path.cwd()) / path
    return path


class SecretRegistry:
    """Known secret values, so log output can be scrubbed of them.

    Values shorter than ``min_length`` are not registered: redacting every "abc" would scramble the
    logs while protecting nothing worth the name.
    """

    def __init__(self, *, min_length: int = 4) -> None:
        self._min_length = min_length
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self._lock = threading.Lock()

    def register(self, value: str) -> None:
        if len(value) < self._min_length:
            return
        with self._lock:
            if value not in self._values:
                self._values.add(value)
                self._pattern = None  # rebuilt on the next redact, not once per registration

    def register_all(self, values: Iterable[str]) -> None:
        for value in values:
            self.register(value)

    def redact(self, text: str) -> str:
        pattern = self._pattern
        if pattern is None:
            if not self._values:
                return text
            pattern = self._compile()
        return pattern.sub(REDACTED, text)

    def _compile(self) -> re.Pattern[str]:
        with self._lock:
            if self._pattern is None:
                # Longest first, so a secret that contains another is replaced whole.
                ordered = sorted(self._values, key=len, reverse=True)
                alternatives = "|".join(re.escape(v) for v in ordered)
                self._pattern = re.compile(alternatives or r"(?!)")  # (?!) never matches
            return self._pattern

    def values(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._values)

    def __contains__(self, value: object) -> bool:
        return value in self._values

    def __len__(self) -> int:
        return len(self._values)

    def clear(self) -> None:
        """Forget every value (tests only; a running daemon never forgets a secret it has seen)."""
        with self._lock:
            self._values.clear()
            self._pattern = None


SECRETS = SecretRegistry()
"""The process-wide registry: the settings loader fills it, the log redaction processor reads it."""
