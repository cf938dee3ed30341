"""Secrets at rest: a model field on MultiFernet, with keys separate from SECRET_KEY.

It lives in `tenants` because every app may import `tenants` (providers' keys, tenants'
webhook secrets). A loaded value is a `SealedSecret`: it renders as a mask, so a template or
admin page that prints the field shows neither the plaintext nor the ciphertext.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

MASK = "••••"


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


def _dev_key() -> str:
    """The development key under var/, created on first use (never committed)."""
    path = settings.SWITCHYARD_DEV_KEY_FILE
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(Fernet.generate_key().decode())
    return path.read_text().strip()


def configured_keys() -> list[str]:
    """Encryption keys, newest first; the dev key file when none are configured."""
    return list(settings.SWITCHYARD_ENCRYPTION_KEYS) or [_dev_key()]


@functools.lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    try:
        return MultiFernet([Fernet(k.encode()) for k in keys])
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(
            "SWITCHYARD_ENCRYPTION_KEYS holds a malformed key: each must be 32 url-safe "
            "base64-encoded bytes (Fernet.generate_key())."
        ) from exc


def fernet(keys: Sequence[str] | None = None) -> MultiFernet:
    return _fernet(tuple(keys if keys is not None else configured_keys()))


def encrypt(plaintext: str) -> str:
    return fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    """The plaintext of `token`; DecryptionError (never the ciphertext) when no key fits."""
    try:
        return fernet().decrypt(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError(
            "A stored secret cannot be decrypted with the configured SWITCHYARD_ENCRYPTION_KEYS "
            "(was a key removed before rotation finished?)."
        ) from None


def rotate(token: str) -> str:
    """`token` re-encrypted with the first (newest) key."""
    try:
        return fernet().rotate(token.encode()).decode()
    except InvalidToken:
        raise DecryptionError("A stored secret cannot be decrypted for rotation.") from None


class SealedSecret:
    """A stored secret: decrypt with `reveal()`; prints as a mask."""

    __slots__ = ("ciphertext",)

    def __init__(self, ciphertext: str) -> None:
        self.ciphertext = ciphertext

    def reveal(self) -> str:
        return decrypt(self.ciphertext)

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"<SealedSecret {MASK}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, SealedSecret) and other.ciphertext == self.ciphertext

    def __hash__(self) -> int:
        return hash(self.ciphertext)


class EncryptedTextField(models.TextField):
    """Stores Fernet ciphertext; assign plaintext, read a SealedSecret."""

    def from_db_value(self, value, expression, connection):
        return None if value is None else SealedSecret(value)

    def to_python(self, value):
        if value is None or isinstance(value, SealedSecret):
            return value
        return str(value)

    def get_prep_value(self, value):
        if value is None or value == "":
            return value
        if isinstance(value, SealedSecret):
            return value.ciphertext
        return encrypt(str(value))

    def value_to_string(self, obj) -> str:
        # Serialisation (dumpdata) carries the ciphertext, never the plaintext.
        value = self.value_from_object(obj)
        return value.ciphertext if isinstance(value, SealedSecret) else ""


def encrypted_fields() -> list[tuple[type[models.Model], str]]:
    """Every (model, field name) that holds an encrypted secret, across all apps."""
    from django.apps import apps

    return [
        (model, field.name)
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if isinstance(field, EncryptedTextField)
    ]
