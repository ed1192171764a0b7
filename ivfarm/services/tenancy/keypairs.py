"""A farm's SSH key pairs, as EC2 keeps them: only the public key and its fingerprint are stored.

Created keys are generated here (RSA 2048 or ed25519) and the private key is handed back once.
Fingerprints follow AWS: a created RSA key has the SHA-1 of its PKCS#8 private key, an imported
RSA key the MD5 of its DER public key, ed25519 keys the base64 SHA-256 of the public key blob.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ivfarm import ids
from ivfarm.errors import AlreadyExists, InvalidInput, NotFound
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.tenancy.tags import add_tags, drop_resource_tags
from ivfarm.store.models import KeyPair

KEY_TYPES = ("rsa", "ed25519")
MAX_NAME = 255
RSA_BITS = (1024, 16384)


class InvalidKeyFormat(InvalidInput):
    """Public key material that is not an OpenSSH RSA or ed25519 public key."""


@dataclass(frozen=True)
class CreatedKeyPair:
    """A new key pair and its private key (PEM or OpenSSH), which ivfarm does not keep."""

    pair: KeyPair
    private_key: str


def key_type(public_key: str) -> str:
    """``rsa`` or ``ed25519`` from an OpenSSH public key line."""
    return "ed25519" if public_key.startswith("ssh-ed25519") else "rsa"


def validate_name(name: str) -> None:
    """1-255 printable ASCII characters."""
    if not 1 <= len(name) <= MAX_NAME or not all(" " <= c <= "~" for c in name):
        raise InvalidInput(f"a key pair name is 1 to {MAX_NAME} printable ASCII characters")


def _colon_hex(digest: bytes) -> str:
    return ":".join(f"{b:02x}" for b in digest)


def _openssh_line(public: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> str:
    return public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def _sha256_fingerprint(openssh_line: str) -> str:
    blob = base64.b64decode(openssh_line.split()[1])
    return base64.b64encode(hashlib.sha256(blob).digest()).decode()


def _generate(kind: str) -> tuple[str, str, str]:
    """(public key line, private key text, fingerprint) of a new key."""
    if kind == "ed25519":
        private_ed = ed25519.Ed25519PrivateKey.generate()
        line = _openssh_line(private_ed.public_key())
        text = private_ed.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                        serialization.NoEncryption()).decode()
        return line, text, _sha256_fingerprint(line)
    private_rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pkcs8 = private_rsa.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
    text = private_rsa.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                     serialization.NoEncryption()).decode()
    return _openssh_line(private_rsa.public_key()), text, _colon_hex(hashlib.sha1(pkcs8).digest())


def parse_public_key(material: bytes) -> tuple[str, str]:
    """(normalised OpenSSH line, fingerprint) of imported public key material."""
    try:
        public = serialization.load_ssh_public_key(material.strip())
    except (ValueError, UnsupportedAlgorithm, binascii.Error, IndexError) as exc:
        raise InvalidKeyFormat("Key is not in valid OpenSSH public key format") from exc
    if isinstance(public, ed25519.Ed25519PublicKey):
        line = _openssh_line(public)
        return line, _sha256_fingerprint(line)
    if isinstance(public, rsa.RSAPublicKey):
        if not RSA_BITS[0] <= public.key_size <= RSA_BITS[1]:
            raise InvalidKeyFormat(f"RSA keys of {RSA_BITS[0]} to {RSA_BITS[1]} bits are accepted")
        der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        return _openssh_line(public), _colon_hex(hashlib.md5(der, usedforsecurity=False).digest())
    raise InvalidKeyFormat("only RSA and ed25519 public keys are accepted")


def _store(cloud: CloudContext, farm_id: int, name: str, public_key: str, fingerprint: str,
           tags: Mapping[str, str] | None) -> KeyPair:
    validate_name(name)
    pair = KeyPair(id=ids.new_id("keypair"), farm_id=farm_id, name=name, fingerprint=fingerprint,
                   public_key=public_key)
    try:
        with cloud.store.write() as session:
            if session.scalar(select(KeyPair.id).where(KeyPair.farm_id == farm_id, KeyPair.name == name)):
                raise AlreadyExists(f"The keypair '{name}' already exists.")
            session.add(pair)
            session.flush()
            add_tags(session, farm_id, {pair.id: "key-pair"}, tags or {})
    except IntegrityError as exc:  # a concurrent request took the name first
        raise AlreadyExists(f"The keypair '{name}' already exists.") from exc
    return pair


def create_key_pair(cloud: CloudContext, farm_id: int, name: str, kind: str = "rsa",
                    tags: Mapping[str, str] | None = None) -> CreatedKeyPair:
    """Generate a key pair; the private key is returned here and never stored."""
    validate_name(name)
    if kind not in KEY_TYPES:
        raise InvalidInput(f"key type must be one of {', '.join(KEY_TYPES)}")
    public_key, private_key, fingerprint = _generate(kind)
    return CreatedKeyPair(_store(cloud, farm_id, name, public_key, fingerprint, tags), private_key)


def import_key_pair(cloud: CloudContext, farm_id: int, name: str, material: bytes,
                    tags: Mapping[str, str] | None = None) -> KeyPair:
    """Register a public key the user made."""
    validate_name(name)
    public_key, fingerprint = parse_public_key(material)
    return _store(cloud, farm_id, name, public_key, fingerprint, tags)


def list_key_pairs(cloud: CloudContext, farm_id: int) -> list[KeyPair]:
    """The farm's key pairs by name."""
    with cloud.store.read() as session:
        return list(session.scalars(select(KeyPair).where(KeyPair.farm_id == farm_id).order_by(KeyPair.name)))


def find_key_pair(session: Session, farm_id: int, name: str | None = None, key_id: str | None = None) -> KeyPair:
    """One of the farm's key pairs by name or id, or NotFound."""
    query = select(KeyPair).where(KeyPair.farm_id == farm_id)
    query = query.where(KeyPair.id == key_id) if key_id is not None else query.where(KeyPair.name == name)
    pair = session.scalar(query)
    if pair is None:
        raise NotFound("keypair", key_id if key_id is not None else str(name))
    return pair


def delete_key_pair(cloud: CloudContext, farm_id: int, name: str | None = None, key_id: str | None = None) -> str | None:
    """Delete a key pair with its tags; returns its id. A missing name is fine (as on EC2), a missing id is not."""
    with cloud.store.write() as session:
        try:
            pair = find_key_pair(session, farm_id, name, key_id)
        except NotFound:
            if key_id is not None:
                raise
            return None
        drop_resource_tags(session, farm_id, [pair.id])
        session.delete(pair)
        return pair.id
