"""Key pairs: generation, import, AWS fingerprints, names per farm, private keys never stored."""
from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from sqlalchemy import select

from ivfarm.cloud import Cloud
from ivfarm.errors import AlreadyExists, InvalidInput, NotFound
from ivfarm.services.farms.lifecycle import FarmRequest, create_farm
from ivfarm.services.tenancy import keypairs
from ivfarm.store.models import KeyPair, Tag


@pytest.fixture
def farms(cloud: Cloud) -> tuple[int, int]:
    return (create_farm(cloud, FarmRequest(name="alpha")).id, create_farm(cloud, FarmRequest(name="beta")).id)


def test_created_rsa_key_has_the_aws_fingerprint_and_only_the_public_key_is_kept(
        cloud: Cloud, farms: tuple[int, int]) -> None:
    created = keypairs.create_key_pair(cloud, farms[0], "deploy", tags={"team": "cms"})
    private = serialization.load_pem_private_key(created.private_key.encode(), None)
    assert isinstance(private, rsa.RSAPrivateKey) and private.key_size == 2048
    pkcs8 = private.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption())
    assert created.pair.fingerprint == ":".join(f"{b:02x}" for b in hashlib.sha1(pkcs8).digest())
    public = private.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    with cloud.store.read() as session:
        stored = session.scalar(select(KeyPair).where(KeyPair.name == "deploy"))
        assert stored is not None and stored.public_key == public.decode()
        assert "PRIVATE" not in stored.public_key
        assert session.scalar(select(Tag.value).where(Tag.resource_id == stored.id)) == "cms"
    assert keypairs.key_type(stored.public_key) == "rsa"


def test_ed25519_keys(cloud: Cloud, farms: tuple[int, int]) -> None:
    created = keypairs.create_key_pair(cloud, farms[0], "edwards", "ed25519")
    private = serialization.load_ssh_private_key(created.private_key.encode(), None)
    assert isinstance(private, ed25519.Ed25519PrivateKey)
    blob = base64.b64decode(created.pair.public_key.split()[1])
    assert created.pair.fingerprint == base64.b64encode(hashlib.sha256(blob).digest()).decode()
    assert keypairs.key_type(created.pair.public_key) == "ed25519"


def test_import_normalises_and_fingerprints(cloud: Cloud, farms: tuple[int, int]) -> None:
    public = rsa.generate_private_key(public_exponent=65537, key_size=2048).public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    pair = keypairs.import_key_pair(cloud, farms[0], "laptop", line + b" me@laptop\n")
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    assert pair.fingerprint == ":".join(f"{b:02x}" for b in hashlib.md5(der).digest())
    assert pair.public_key == line.decode()
    small = rsa.RSAPublicNumbers(65537, (1 << 767) | 0xF1).public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)  # 768 bits: too weak
    for material in (b"ssh-rsa AAAA", b"not a key", small, b"ssh-dss AAAAB3NzaC1kc3M="):
        with pytest.raises(keypairs.InvalidKeyFormat):
            keypairs.import_key_pair(cloud, farms[0], "bad", material)


def test_names_are_unique_per_farm_and_validated(cloud: Cloud, farms: tuple[int, int]) -> None:
    keypairs.create_key_pair(cloud, farms[0], "same")
    keypairs.create_key_pair(cloud, farms[1], "same")
    with pytest.raises(AlreadyExists):
        keypairs.create_key_pair(cloud, farms[0], "same")
    for name in ("", "x" * 256, "caf\u00e9", "tab\there"):
        with pytest.raises(InvalidInput):
            keypairs.create_key_pair(cloud, farms[0], name)
    with pytest.raises(InvalidInput):
        keypairs.create_key_pair(cloud, farms[0], "dsa", "dsa")
    assert [k.name for k in keypairs.list_key_pairs(cloud, farms[0])] == ["same"]


def test_delete_by_name_is_idempotent_by_id_is_not(cloud: Cloud, farms: tuple[int, int]) -> None:
    pair = keypairs.create_key_pair(cloud, farms[0], "gone", tags={"a": "b"}).pair
    assert keypairs.delete_key_pair(cloud, farms[1], name="gone") is None  # another farm's: not touched
    assert keypairs.delete_key_pair(cloud, farms[0], name="gone") == pair.id
    assert keypairs.delete_key_pair(cloud, farms[0], name="gone") is None
    with pytest.raises(NotFound):
        keypairs.delete_key_pair(cloud, farms[0], key_id=pair.id)
    with cloud.store.read() as session:
        assert session.scalar(select(Tag).where(Tag.resource_id == pair.id)) is None
