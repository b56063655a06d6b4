"""Ed25519 keys of the sealer: key ids, signing, and the public-keys document for auditors.

A key id is derived from the public key (`ed25519:` + the first 16 hex digits of SHA-256 of
its 32 raw bytes), so it cannot disagree with the key. Rotation: a new signing key signs
new checkpoints under its own id; the public-keys document keeps every key that ever signed,
so old checkpoints keep verifying (docs/integrity.md, "Key rotation").

Document (JSON):
    {"type": "audit-ingest.seal-keys", "version": 1,
     "keys": [{"key_id": "ed25519:...", "algorithm": "Ed25519", "public_key": "<64 hex>"}]}
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from audit_ingest.domain.seal_errors import SealError

KEYS_TYPE = "audit-ingest.seal-keys"


def key_id(public: Ed25519PublicKey) -> str:
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return "ed25519:" + hashlib.sha256(raw).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class SigningKey:
    """The sealer's private key and its id."""

    private: Ed25519PrivateKey
    key_id: str

    @classmethod
    def from_pem(cls, pem: bytes, *, field: str = "seal_signing_key_file") -> SigningKey:
        try:
            private = serialization.load_pem_private_key(pem, password=None)
        except (ValueError, TypeError) as exc:
            raise SealError(field, f"not an unencrypted PEM private key ({exc})") from None
        if not isinstance(private, Ed25519PrivateKey):
            raise SealError(field, f"an Ed25519 key is needed, not {type(private).__name__}")
        return cls(private, key_id(private.public_key()))

    @classmethod
    def generate(cls) -> SigningKey:
        private = Ed25519PrivateKey.generate()
        return cls(private, key_id(private.public_key()))

    def sign(self, message: bytes) -> bytes:
        return self.private.sign(message)

    def public(self) -> Ed25519PublicKey:
        return self.private.public_key()

    def pem(self) -> bytes:
        return self.private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


class KeyRing:
    """Public keys by key id: what a verifier trusts."""

    def __init__(self, keys: Iterable[Ed25519PublicKey] = ()) -> None:
        self._keys: dict[str, Ed25519PublicKey] = {key_id(k): k for k in keys}

    def __contains__(self, kid: object) -> bool:
        return kid in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def ids(self) -> list[str]:
        return sorted(self._keys)

    def verify(self, kid: str, signature: bytes, message: bytes) -> str | None:
        """None when `signature` is `kid`'s over `message`; else why not."""
        key = self._keys.get(kid)
        if key is None:
            return f"key id {kid} is not among the trusted public keys"
        try:
            key.verify(signature, message)
        except InvalidSignature:
            return f"the signature does not verify under {kid}"
        return None

    def merged(self, other: KeyRing) -> KeyRing:
        ring = KeyRing()
        ring._keys = {**self._keys, **other._keys}
        return ring

    def document(self) -> dict[str, Any]:
        """The public-keys document (keys sorted by id)."""
        return {
            "type": KEYS_TYPE,
            "version": 1,
            "keys": [
                {
                    "key_id": kid,
                    "algorithm": "Ed25519",
                    "public_key": self._keys[kid]
                    .public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
                    .hex(),
                }
                for kid in sorted(self._keys)
            ],
        }

    @classmethod
    def from_document(cls, document: Any) -> KeyRing:
        """Parse a public-keys document; each entry's key id must match its key."""
        if not isinstance(document, Mapping) or document.get("type") != KEYS_TYPE:
            raise SealError("type", f"not a public-keys document (type {KEYS_TYPE!r})")
        entries = document.get("keys")
        if not isinstance(entries, list):
            raise SealError("keys", "must be a list")
        keys: list[Ed25519PublicKey] = []
        for index, entry in enumerate(entries):
            where = f"keys[{index}]"
            if not isinstance(entry, Mapping) or entry.get("algorithm") != "Ed25519":
                raise SealError(where, "needs algorithm Ed25519")
            try:
                raw = bytes.fromhex(str(entry.get("public_key")))
                public = Ed25519PublicKey.from_public_bytes(raw)
            except ValueError:
                raise SealError(f"{where}.public_key", "not 32 bytes of hex") from None
            if entry.get("key_id") != key_id(public):
                raise SealError(f"{where}.key_id", f"does not match its key ({key_id(public)})")
            keys.append(public)
        return cls(keys)

    @classmethod
    def from_pem(cls, pem: bytes, *, field: str) -> KeyRing:
        """A ring of one key, from a PEM public key or private key (its public half)."""
        try:
            loaded: object = serialization.load_pem_public_key(pem)
        except ValueError:
            try:
                loaded = serialization.load_pem_private_key(pem, password=None).public_key()
            except (ValueError, TypeError) as exc:
                raise SealError(field, f"not a PEM key ({exc})") from None
        if not isinstance(loaded, Ed25519PublicKey):
            raise SealError(field, f"an Ed25519 key is needed, not {type(loaded).__name__}")
        return cls([loaded])
