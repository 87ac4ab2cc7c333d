"""Secret references resolve without their values ever showing up in an error; the registry redacts."""

from __future__ import annotations

import os
import re
import threading
from pathlib import Path

import pytest

from daemon.secrets import SecretError, SecretRegistry, is_reference, resolve_secret


def test_env_reference() -> None:
    assert resolve_secret("env:API", environ={"API": "value-1"}) == "value-1"
    with pytest.raises(SecretError, match=r"^environment variable API is not set$"):
        resolve_secret("env:API", environ={})
    with pytest.raises(SecretError, match=r"^environment variable API is empty$"):
        resolve_secret("env:API", environ={"API": ""})
    with pytest.raises(SecretError, match="valid environment variable name"):
        resolve_secret("env:1-bad", environ={})


def test_file_reference_strips_one_newline_and_resolves_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "k").write_text("line-one\n\n", encoding="utf-8")
    assert resolve_secret("file:k", base_dir=tmp_path) == "line-one\n"
    (tmp_path / "k").write_text("crlf-secret\r\n", encoding="utf-8")
    assert resolve_secret(f"file:{tmp_path / 'k'}") == "crlf-secret"


def test_unreadable_or_empty_file_names_the_path_not_the_content(tmp_path: Path) -> None:
    with pytest.raises(
        SecretError, match="^" + re.escape(f"cannot read secret file {tmp_path}/missing: No such file")
    ):
        resolve_secret("file:missing", base_dir=tmp_path)
    with pytest.raises(SecretError, match=r"(?i)is a directory"):
        resolve_secret(f"file:{tmp_path}")
    (tmp_path / "empty").write_text("\n", encoding="utf-8")
    with pytest.raises(SecretError, match="^" + re.escape(f"secret file {tmp_path}/empty is empty") + "$"):
        resolve_secret("file:empty", base_dir=tmp_path)
    if os.geteuid() != 0:  # root reads anything
        locked = tmp_path / "locked"
        locked.write_text("top-secret-content", encoding="utf-8")
        locked.chmod(0)
        with pytest.raises(SecretError) as info:
            resolve_secret(f"file:{locked}")
        assert "top-secret-content" not in str(info.value)


def test_credentials_directory(tmp_path: Path) -> None:
    (tmp_path / "tok").write_text("cred-secret", encoding="utf-8")
    env = {"CREDENTIALS_DIRECTORY": str(tmp_path)}
    assert resolve_secret("file:$CREDENTIALS_DIRECTORY/tok", environ=env) == "cred-secret"
    assert resolve_secret("file:${CREDENTIALS_DIRECTORY}/tok", environ=env) == "cred-secret"


def test_literal_is_the_secret_itself() -> None:
    assert resolve_secret("plain-literal") == "plain-literal"
    assert not is_reference("plain-literal")
    assert is_reference("env:X") and is_reference("file:/x")


def test_registry_redacts_longest_first_and_ignores_tiny_values() -> None:
    registry = SecretRegistry()
    registry.register("abcd1234")
    registry.register("abcd1234-and-more")
    registry.register("abc")  # too short to redact safely
    assert registry.values() == {"abcd1234", "abcd1234-and-more"}
    assert "abcd1234" in registry and len(registry) == 2
    text = "key=abcd1234-and-more other=abcd1234 short=abc"
    assert registry.redact(text) == "key=*** other=*** short=abc"
    assert registry.redact("a.b+c(d)") == "a.b+c(d)"
    registry.register("a.b+c(d)")  # regex metacharacters are literal
    assert registry.redact("x a.b+c(d) y") == "x *** y"
    registry.clear()
    assert registry.redact(text) == text


def test_registry_is_safe_across_threads() -> None:
    registry = SecretRegistry()
    barrier = threading.Barrier(4)

    def add(offset: int) -> None:
        barrier.wait(timeout=5)
        for i in range(200):
            registry.register(f"secret-{offset}-{i:04d}")

    threads = [threading.Thread(target=add, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert len(registry) == 800
    assert registry.redact("secret-3-0199 secret-0-0000") == "*** ***"
