"""Bearer tokens: random secrets shown once, stored as SHA-256 hashes.

The registry keeps every token's hash and grants in memory so that a request
costs no database read. Every change goes to storage first and to memory
after the commit, in this process, so a revocation takes effect on the next
request.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from eventlog import EventLog
from eventlog.storage import AuditRecord, TokenRecord
from feeds.grants import Principal

logger = logging.getLogger(__name__)

TOKEN_PREFIX = "elt_"
ADMIN_TOKEN_FILE = "admin.token"
ADMIN_TOKEN_NAME = "admin"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


class InvalidTokenName(ValueError):
    """A token name is empty, too long, or has characters outside A-Z a-z 0-9 . _ -."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token as its creator receives it, once: the name, the secret and the grants."""

    name: str
    token: str
    grants: tuple[str, ...]


def hash_token(token: str) -> bytes:
    """Return the SHA-256 hash under which a token is stored.

    Tokens carry 256 random bits, so a fast hash is enough: there is no
    password to guess.
    """
    return hashlib.sha256(token.encode()).digest()


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise InvalidTokenName(
            f"The token name {name!r} is invalid: use 1 to 64 letters, digits, '.', '_' "
            "or '-', starting with a letter or digit."
        )
    return name


class TokenRegistry:
    """Every token of one log, by hash, with the principal it authenticates."""

    def __init__(self, log: EventLog) -> None:
        self._log = log
        self._principals: dict[bytes, Principal] = {}
        self._records: dict[str, TokenRecord] = {}

    async def load(self) -> None:
        records = await self._log.run_in_reader(self._log.storage.load_tokens)
        for record in records:
            self._remember(record)

    def __len__(self) -> int:
        return len(self._records)

    def authenticate(self, token: str) -> Principal | None:
        """Return the principal of a token, or None when no token matches."""
        digest = hash_token(token)
        principal = self._principals.get(digest)
        if principal is None:
            return None
        stored = self._records[principal.name].token_hash
        return principal if hmac.compare_digest(stored, digest) else None

    def records(self) -> list[TokenRecord]:
        return sorted(self._records.values(), key=lambda record: record.name)

    async def create(self, name: str, grants: tuple[str, ...], audit: AuditRecord) -> IssuedToken:
        """Create a token; raises `InvalidTokenName`, `InvalidGrant` or `TokenExists`."""
        check_name(name)
        Principal.with_grants(name, grants)  # Raises InvalidGrant before anything is stored.
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        record = TokenRecord(name, hash_token(token), grants, datetime.now(UTC))
        await self._log.run_in_reader(self._log.storage.save_token, record, audit)
        self._remember(record)
        logger.info("Created the token %r with grants %s", name, list(grants))
        return IssuedToken(name, token, grants)

    async def revoke(self, name: str, audit: AuditRecord) -> bool:
        """Revoke a token by name; return False when there is none."""
        deleted: bool = await self._log.run_in_reader(self._log.storage.delete_token, name, audit)
        record = self._records.pop(name, None)
        if record is not None:
            self._principals.pop(record.token_hash, None)
        if deleted:
            logger.info("Revoked the token %r", name)
        return deleted

    async def ensure_admin_token(self, data_dir: Path) -> None:
        """With no tokens yet, create an admin token and write it to `admin.token` (mode 0600)."""
        if self._records:
            return
        audit = AuditRecord(
            time=datetime.now(UTC),
            principal="eventlog serve",
            action="token.create",
            outcome="ok",
            status=201,
            detail={"name": ADMIN_TOKEN_NAME, "grants": ["admin"]},
        )
        issued = await self.create(ADMIN_TOKEN_NAME, ("admin",), audit)
        path = data_dir / ADMIN_TOKEN_FILE
        write_secret(path, issued.token)
        logger.warning("Created the first admin token; it is in %s", path)

    def _remember(self, record: TokenRecord) -> None:
        principal = Principal.with_grants(record.name, record.grants)
        self._records[record.name] = record
        self._principals[record.token_hash] = principal


def write_secret(path: Path, secret: str) -> None:
    """Write a secret to a file that only its owner can read or write (mode 0600)."""
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(secret + "\n")
    os.chmod(path, 0o600)  # The mode argument does not apply to an existing file.
