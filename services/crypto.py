"""Keys kept outside the database (FAC-7): encryption of TOTP secrets, keyed hashes of codes.

Keys come from the environment (``MFA_ENCRYPTION_KEYS``: Fernet keys, newest first, comma
separated; ``MFA_HASH_KEY``) or from a key file in instance/ generated on first use. Workers
re-read the file when it changes, so ``flask keys rotate`` takes effect without a restart and
without locking anyone out: the new key encrypts, every listed key still decrypts.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

__all__ = ["InvalidToken", "decrypt", "encrypt", "keyed_hash", "keys_file"]


@dataclass(frozen=True)
class Keyring:
    keys: tuple[str, ...]
    hash_key: bytes
    fernet: MultiFernet
    source: str
    stamp: float


def keys_file() -> Path:
    return Path(
        current_app.config["MFA_KEYS_FILE"] or Path(current_app.instance_path) / "mfa_keys.json"
    )


def new_fernet_key() -> str:
    return Fernet.generate_key().decode()


def write_keys_file(path: Path, keys: list[str], hash_key: str) -> None:
    """Write atomically with mode 0600: readers see the old file or the new one, never half."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"encryption_keys": keys, "hash_key": hash_key}, handle, indent=2)
    os.replace(tmp, path)


def _load() -> Keyring:
    cfg = current_app.config
    env_keys = cfg.get("MFA_ENCRYPTION_KEYS")
    if env_keys:
        keys = tuple(k.strip() for k in env_keys.split(",") if k.strip())
        hash_key = cfg.get("MFA_HASH_KEY") or ""
        if not hash_key:
            raise RuntimeError("MFA_HASH_KEY must be set together with MFA_ENCRYPTION_KEYS.")
        return _keyring(keys, hash_key, "environment", 0.0)
    path = keys_file()
    if not path.exists():
        # Another worker may make it first; then we read theirs.
        with contextlib.suppress(FileExistsError):
            write_keys_file_exclusive(path)
    data = json.loads(path.read_text())
    return _keyring(
        tuple(data["encryption_keys"]), data["hash_key"], str(path), path.stat().st_mtime
    )


def write_keys_file_exclusive(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump(
            {"encryption_keys": [new_fernet_key()], "hash_key": secrets.token_urlsafe(32)},
            handle,
            indent=2,
        )


def _keyring(keys: tuple[str, ...], hash_key: str, source: str, stamp: float) -> Keyring:
    if not keys:
        raise RuntimeError("No encryption key configured.")
    return Keyring(
        keys=keys,
        hash_key=base64.urlsafe_b64decode(hash_key + "=" * (-len(hash_key) % 4)),
        fernet=MultiFernet([Fernet(k.encode()) for k in keys]),
        source=source,
        stamp=stamp,
    )


def keyring() -> Keyring:
    """The current keys, re-read when the key file changes (a stat per call)."""
    cached: Keyring | None = current_app.extensions.get("mfa_keyring")
    if cached is not None:
        if cached.source == "environment":
            return cached
        try:
            if os.stat(cached.source).st_mtime == cached.stamp:
                return cached
        except FileNotFoundError:
            pass
    ring = _load()
    current_app.extensions["mfa_keyring"] = ring
    return ring


def encrypt(plaintext: str) -> str:
    return keyring().fernet.encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    return keyring().fernet.decrypt(token.encode()).decode()


def reencrypt(token: str) -> str:
    """The same plaintext under the newest key."""
    return keyring().fernet.rotate(token.encode()).decode()


def keyed_hash(value: str) -> bytes:
    """HMAC-SHA256 under the hash key: a database copy alone cannot test guesses."""
    return hmac.new(keyring().hash_key, value.encode(), hashlib.sha256).digest()


def _file_data(path: Path) -> dict[str, object]:
    return json.loads(path.read_text())


def add_primary_key() -> None:
    """Put a new key first in the key file; every older key stays readable."""
    path = keys_file()
    data = _file_data(path)
    write_keys_file(path, [new_fernet_key(), *data["encryption_keys"]], str(data["hash_key"]))


def retire_old_keys() -> None:
    """Keep only the newest key. Run only after every secret has been re-encrypted."""
    path = keys_file()
    data = _file_data(path)
    write_keys_file(path, list(data["encryption_keys"])[:1], str(data["hash_key"]))
