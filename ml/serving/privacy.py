"""What the serving file may reveal about a customer, and the settings that limit it.

Threat model and choices: docs/privacy.md. Here:

* the serving file's mode (``Config.serving_file_mode``, default 0600: owner only);
* pseudonymous user ids: with the mode on, every ``user_id`` written to the serving file is
  ``HMAC-SHA256(key, user_id)`` as hex, cut to 32 characters. The key (32 random bytes, kept as
  hex in ``<home>/secrets/pseudonym.key``, 0600) is never written to the serving file; whoever
  holds it (the API, the marketplace's backend) maps a raw id, whoever does not (analysts)
  sees unlinkable ids. The serving file's macro ``pseudonym(uid, key_hex)`` computes the same
  value in SQL from a key the reader passes in.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
from collections.abc import Iterable
from pathlib import Path

from ml.config import Config, ConfigError

KEY_BYTES = 32
PSEUDONYM_CHARS = 32  # 128 bits: no collision in practice, half the bytes of full hex

# HMAC-SHA256 (RFC 2104) in DuckDB SQL: the key, zero-padded to SHA-256's 64-byte block, xor-ed
# with the inner (0x36) and outer (0x5c) pads. The key is an argument, never part of the file.
PSEUDONYM_MACRO = f"""
create macro pseudonym(uid, key_hex) as left(sha256(
    xor(unhex(rpad(key_hex, 128, '0'))::BIT, repeat(unhex('5c'), 64)::BIT)::BLOB
    || unhex(sha256(xor(unhex(rpad(key_hex, 128, '0'))::BIT, repeat(unhex('36'), 64)::BIT)::BLOB
                    || encode(cast(uid as varchar))))), {PSEUDONYM_CHARS})
"""


class PseudonymKeyError(RuntimeError):
    """The serving file's user ids are pseudonyms and this reader lacks their key."""


def serving_file_mode() -> int:
    """The serving file's mode as configured (``RECSYS_SERVING_FILE_MODE``, checked by
    ``ml.config.Config``): what ``ml.serving.publish`` uses when it is given none."""
    return Config().file_mode


def key_path(home: Path) -> Path:
    return Path(home) / "secrets" / "pseudonym.key"


def load_key(home: Path) -> bytes | None:
    """The home's pseudonym key, or None when the mode was never turned on there."""
    path = key_path(home)
    try:
        text = path.read_text().strip()
    except FileNotFoundError:
        return None
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise PseudonymKeyError(f"{path} is not a pseudonym key ({2 * KEY_BYTES} hex characters)")
    return key


def publish_key(home: Path, pseudonymize: bool | None) -> bytes | None:
    """The key a publication in ``home`` pseudonymises with, or None for raw ids.

    ``pseudonymize`` (``Config.pseudonymize``, ``RECSYS_PSEUDONYMIZE``) True turns the mode on
    (the key is made on first use). Once a key exists the mode stays on when the setting is
    unset, so a run from an environment that forgot it cannot quietly publish raw ids again;
    False with a key is refused: to turn the mode off, delete the key.
    """
    key = load_key(home)
    if pseudonymize is False and key is not None:
        raise ConfigError(
            f"pseudonymize is off (RECSYS_PSEUDONYMIZE=0) but this home has a pseudonym key "
            f"({key_path(home)}): delete it to publish raw user ids again"
        )
    if key is None and pseudonymize:
        key = _create_key(home)
    return key


def _create_key(home: Path) -> bytes:
    """32 random bytes as hex in a new 0600 file in a 0700 directory. Written aside and linked
    into place, so no reader ever sees a half-written key; if another process made the key
    first, that one."""
    path = key_path(home)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path.parent, 0o700)
    aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_bytes(KEY_BYTES).hex() + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(aside, path)
    finally:
        aside.unlink()
    return load_key(home)


def key_id(key: bytes) -> str:
    """A public fingerprint of the key (it reveals nothing of it): the publication records it,
    so a reader can tell it holds the key the ids were made with."""
    return hmac.new(key, b"recsys pseudonym key id", hashlib.sha256).hexdigest()[:16]


def pseudonym(key: bytes, user_id: str) -> str:
    return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()[:PSEUDONYM_CHARS]


def pseudonyms(key: bytes, user_ids: Iterable[str]) -> list[str]:
    """:func:`pseudonym` of many ids (the key's pads are computed once)."""
    inner = hmac.new(key, digestmod=hashlib.sha256)
    out = []
    for user_id in user_ids:
        mac = inner.copy()
        mac.update(str(user_id).encode())
        out.append(mac.hexdigest()[:PSEUDONYM_CHARS])
    return out


def reader_key(published_key_id: str | None, key: bytes | None, where: str) -> bytes | None:
    """The key a reader must map raw ids with for a file published with ``published_key_id``
    (None: the file has raw ids, nothing to map). Raises when the file's ids are pseudonyms
    and ``key`` (the reader's, found at ``where``) is missing or another one: answering with
    unmapped ids would quietly serve every customer the fallback list."""
    if published_key_id is None:
        return None
    if key is None:
        raise PseudonymKeyError(
            f"the serving file's user ids are pseudonyms but no key was found ({where}); "
            "it is secrets/pseudonym.key in the home that published the file"
        )
    if key_id(key) != published_key_id:
        raise PseudonymKeyError(
            f"the serving file's user ids are pseudonyms made with another key "
            f"(id {published_key_id}) than the one found ({where}, id {key_id(key)})"
        )
    return key
