"""Encryption at rest of tenants' secret plugin settings: AES-GCM under the hub's secret key.

The key comes from `HUB_SECRET_KEY` (32 bytes, base64). On an SQLite file
database with no such variable, a key file is made beside the database
(`<database>.key`, mode 0600) the first time a secret is written, so the
embedded default needs no set-up. Elsewhere a missing key is an error, raised
only when a secret must be read or written.

Each stored secret is a token `aesgcm1:<key id>:<base64 nonce+ciphertext>`;
the key id lets a rotation be interrupted safely (every token says which key
opens it) and the additional data binds a token to its tenant, plugin and key,
so a token copied to another row does not decrypt.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import secrets
from collections.abc import Mapping
from pathlib import Path

from sqlalchemy.engine import make_url

from hub.errors import StartupError

KEY_ENV = "HUB_SECRET_KEY"
OLD_KEYS_ENV = "HUB_SECRET_KEY_OLD"
TOKEN_PREFIX = "aesgcm1"
KEY_BYTES = 32
NONCE_BYTES = 12


class SecretKeyError(StartupError):
    """No usable key for a secret that must be read or written."""


def generate_key() -> str:
    """A new random key, as `HUB_SECRET_KEY` holds it."""
    return base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode()


def parse_key(text: str, where: str) -> bytes:
    """A key from its base64 text (standard or URL-safe alphabet); raises SecretKeyError naming `where`."""
    cleaned = text.strip()
    try:
        raw = base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), altchars=b"-_" if ("-" in cleaned or "_" in cleaned) else None, validate=True)
    except (binascii.Error, ValueError):
        raise SecretKeyError(f"{where} is not base64 (make one with `openssl rand -base64 32`)") from None
    if len(raw) != KEY_BYTES:
        raise SecretKeyError(f"{where} must be {KEY_BYTES} bytes of base64 (it has {len(raw)}; make one with `openssl rand -base64 32`)")
    return raw


def key_id(key: bytes) -> str:
    """A short public fingerprint naming a key (never the key itself)."""
    return hashlib.sha256(b"hub-secret-key:" + key).hexdigest()[:12]


def key_file_for(database_url: str) -> Path | None:
    """Where the key file of an SQLite file database lives; None for in-memory SQLite and other databases."""
    url = make_url(database_url)
    if url.get_backend_name() != "sqlite" or not url.database or url.database == ":memory:":
        return None
    database = Path(url.database)
    return database.with_name(database.name + ".key")


def _read_key_file(path: Path) -> bytes | None:
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    return parse_key(text, f"key file {path}")


def _create_key_file(path: Path) -> bytes:
    """Write a new key file readable by its owner only; if another process made it first, use theirs.

    The key is written to a private temporary file and hard-linked into place,
    so no process ever reads a half-written key file.
    """
    text = generate_key()
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            os.fchmod(fh.fileno(), 0o600)  # the umask may only remove bits; say exactly what we mean
            fh.write(text + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(temporary, path)
        except FileExistsError:
            existing = _read_key_file(path)
            assert existing is not None
            return existing
    finally:
        temporary.unlink(missing_ok=True)
    return parse_key(text, f"key file {path}")


class Keyring:
    """The current key (encrypts) and every key it knows (decrypt, chosen by key id)."""

    def __init__(self, environ: Mapping[str, str], key_file: Path | None) -> None:
        self._environ = environ
        self.key_file = None if environ.get(KEY_ENV) else key_file
        self._current: bytes | None = None
        self._known: dict[str, bytes] = {}

    @property
    def source(self) -> str:
        """Where the current key comes from, for messages and docs."""
        if self._environ.get(KEY_ENV):
            return KEY_ENV
        if self.key_file is not None:
            return f"key file {self.key_file}"
        return "nowhere"

    def _load(self, *, create: bool) -> None:
        if self._environ.get(KEY_ENV):
            if self._current is None:
                self._current = parse_key(self._environ[KEY_ENV], KEY_ENV)
                self._remember(self._current)
                for index, old in enumerate(t for t in self._environ.get(OLD_KEYS_ENV, "").split(",") if t.strip()):
                    self._remember(parse_key(old, f"{OLD_KEYS_ENV} (entry {index + 1})"))
            return
        if self.key_file is None:
            return
        # Re-read each time a key is missing: a rotation in another process may have replaced the file.
        current = _read_key_file(self.key_file)
        if current is None and create:
            current = _create_key_file(self.key_file)
        if current is not None:
            self._current = current
            self._remember(current)
        pending = _read_key_file(pending_key_file(self.key_file))
        if pending is not None:
            self._remember(pending)

    def _remember(self, key: bytes) -> None:
        self._known[key_id(key)] = key

    def _missing(self, what: str) -> SecretKeyError:
        if self.key_file is None:
            return SecretKeyError(
                f"{KEY_ENV} is not set: {what} (set it to 32 random bytes in base64, e.g. from `openssl rand -base64 32`, "
                "the same value in every hub process)"
            )
        return SecretKeyError(f"{what}, but the key file {self.key_file} is missing (restore it or set {KEY_ENV})")

    def current(self, what: str) -> bytes:
        """The key new secrets are encrypted with (made on first use for a key file); raises SecretKeyError."""
        if self._current is None:
            self._load(create=True)
        if self._current is None:
            raise self._missing(what)
        return self._current

    def adopt(self, key: bytes) -> None:
        """Make `key` the current key (after a rotation finished)."""
        self._current = key
        self._remember(key)

    def encrypt(self, plaintext: str, context: str, *, key: bytes | None = None) -> str:
        """A token for `plaintext`, bound to `context` (tenant, plugin and setting)."""
        # cryptography (8 MB resident) loads with the first secret, not with every hub process.
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        key = key if key is not None else self.current(f"the secret setting {context} must be encrypted")
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = AESGCM(key).encrypt(nonce, plaintext.encode(), context.encode())
        return f"{TOKEN_PREFIX}:{key_id(key)}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"

    def decrypt(self, token: str, context: str) -> str:
        """The plaintext of a token made by `encrypt` for the same context; raises SecretKeyError."""
        prefix, kid, body = _split(token, context)
        del prefix
        if kid not in self._known:
            self._load(create=False)
        key = self._known.get(kid)
        if key is None:
            if not self._known:
                raise self._missing(f"the secret setting {context} is encrypted")
            raise SecretKeyError(
                f"the secret setting {context} was encrypted with key {kid}, which is not among the known keys "
                f"({', '.join(sorted(self._known))}): set {KEY_ENV} (or add the old key to {OLD_KEYS_ENV})"
            )
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        raw = base64.urlsafe_b64decode(body)
        try:
            return AESGCM(key).decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], context.encode()).decode()
        except InvalidTag:
            raise SecretKeyError(f"the secret setting {context} does not decrypt (the stored value was altered or moved)") from None

    def token_key_id(self, token: str, context: str) -> str:
        """Which key a token was made with."""
        return _split(token, context)[1]


def _split(token: str, context: str) -> tuple[str, str, str]:
    parts = token.split(":", 2)
    if len(parts) != 3 or parts[0] != TOKEN_PREFIX:
        raise SecretKeyError(f"the secret setting {context} is not an encrypted value")
    return parts[0], parts[1], parts[2]


def pending_key_file(key_file: Path) -> Path:
    """Where a rotation keeps the new key until every secret is re-encrypted under it."""
    return key_file.with_name(key_file.name + ".new")


def begin_file_rotation(key_file: Path) -> bytes:
    """The new key of a key-file rotation (reused if an interrupted rotation left one)."""
    pending = pending_key_file(key_file)
    existing = _read_key_file(pending)
    return existing if existing is not None else _create_key_file(pending)


def finish_file_rotation(key_file: Path) -> None:
    """Make the pending key the key file's key, once the database holds no token of the old one."""
    os.replace(pending_key_file(key_file), key_file)
