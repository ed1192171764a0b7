"""CreateKeyPair, ImportKeyPair, DescribeKeyPairs, DeleteKeyPair."""
from __future__ import annotations

import base64
import binascii
from typing import Any

from ivfarm import ids
from ivfarm.ec2.context import RequestContext
from ivfarm.ec2.errors import Ec2Error, echo, malformed, not_found
from ivfarm.ec2.filter_table import documented
from ivfarm.ec2.filters import parse_filters
from ivfarm.ec2.handlers.common import id_list, tag_specifications
from ivfarm.ec2.params import Params
from ivfarm.ec2.queries import tags_of
from ivfarm.ec2.registry import action
from ivfarm.ec2.views.common import tag_set
from ivfarm.ec2.views.resources import key_pair_item
from ivfarm.errors import AlreadyExists, InvalidInput
from ivfarm.services.tenancy import keypairs

KEY_FILTERS = documented("DescribeKeyPairs", {
    "key-name": lambda k: (k.name,),
    "key-pair-id": lambda k: (k.id,),
    "fingerprint": lambda k: (k.fingerprint,),
    "key-type": lambda k: (keypairs.key_type(k.public_key),),
})


def _name(p: Params) -> str:
    name = p.required("KeyName", max_length=keypairs.MAX_NAME)
    try:
        keypairs.validate_name(name)
    except InvalidInput as exc:
        raise Ec2Error("InvalidParameterValue", str(exc)) from exc
    return name


def _duplicate(name: str) -> Ec2Error:
    return Ec2Error("InvalidKeyPair.Duplicate", f"The keypair '{echo(name)}' already exists.")


@action("CreateKeyPair")
def create_key_pair(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Generate a key pair; the private key is in this answer only."""
    name = _name(p)
    kind = p.choice("KeyType", keypairs.KEY_TYPES, default="rsa")
    p.choice("KeyFormat", ("pem",))
    tags = tag_specifications(p, "key-pair")
    p.done()
    if name in {k.name for k in keypairs.list_key_pairs(ctx.cloud, ctx.farm_id)}:
        raise _duplicate(name)
    ctx.proceed()
    try:
        created = keypairs.create_key_pair(ctx.cloud, ctx.farm_id, name, kind or "rsa", tags)
    except AlreadyExists as exc:
        raise _duplicate(name) from exc
    pair = created.pair
    return {"keyName": pair.name, "keyFingerprint": pair.fingerprint, "keyMaterial": created.private_key,
            "keyPairId": pair.id, "tagSet": tag_set(tags)}


@action("ImportKeyPair")
def import_key_pair(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Register the user's own public key (OpenSSH format, base64 on the wire)."""
    name = _name(p)
    raw = p.required("PublicKeyMaterial", max_length=64 * 1024)
    tags = tag_specifications(p, "key-pair")
    p.done()
    try:
        material = base64.b64decode("".join(raw.split()), validate=True)
        keypairs.parse_public_key(material)
    except (binascii.Error, ValueError, keypairs.InvalidKeyFormat) as exc:
        raise Ec2Error("InvalidKey.Format", "Key is not in valid OpenSSH public key format") from exc
    if name in {k.name for k in keypairs.list_key_pairs(ctx.cloud, ctx.farm_id)}:
        raise _duplicate(name)
    ctx.proceed()
    try:
        pair = keypairs.import_key_pair(ctx.cloud, ctx.farm_id, name, material, tags)
    except AlreadyExists as exc:
        raise _duplicate(name) from exc
    return {"keyName": pair.name, "keyFingerprint": pair.fingerprint, "keyPairId": pair.id, "tagSet": tag_set(tags)}


@action("DescribeKeyPairs")
def describe_key_pairs(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """The farm's key pairs, by name, id or filters."""
    names = p.strings("KeyName", max_length=keypairs.MAX_NAME)
    key_ids = id_list(p, "KeyPairId")
    include_public = p.boolean("IncludePublicKey")
    filters = parse_filters(p, KEY_FILTERS)
    p.done()
    for key_id in key_ids:
        if not ids.is_valid(key_id, "keypair"):
            raise malformed("keypair", key_id)
    pairs = keypairs.list_key_pairs(ctx.cloud, ctx.farm_id)
    by_name = {k.name for k in pairs}
    by_id = {k.id for k in pairs}
    absent = [n for n in names if n not in by_name] + [i for i in key_ids if i not in by_id]
    if absent:
        raise not_found("keypair", absent)
    ctx.proceed()
    with ctx.cloud.store.read() as session:
        tags = tags_of(session, ctx.farm_id, "key-pair")
    chosen = [k for k in pairs if (not names or k.name in names) and (not key_ids or k.id in key_ids)
              and filters.match(k, tags.get(k.id))]
    return {"keySet": [key_pair_item(k, keypairs.key_type(k.public_key), tags.get(k.id), include_public)
                       for k in chosen]}


@action("DeleteKeyPair")
def delete_key_pair(ctx: RequestContext, p: Params) -> dict[str, Any]:
    """Delete by name (a missing name is fine, as on EC2) or by id (which must exist)."""
    name = p.string("KeyName", max_length=keypairs.MAX_NAME)
    key_id = p.string("KeyPairId", max_length=64)
    p.done()
    if not name and not key_id:
        raise Ec2Error("MissingParameter", "The request must contain the parameter KeyName or KeyPairId")
    if key_id is not None:
        if not ids.is_valid(key_id, "keypair"):
            raise malformed("keypair", key_id)
        if key_id not in {k.id for k in keypairs.list_key_pairs(ctx.cloud, ctx.farm_id)}:
            raise not_found("keypair", [key_id])
    ctx.proceed()
    deleted = keypairs.delete_key_pair(ctx.cloud, ctx.farm_id, name=None if key_id else name, key_id=key_id)
    return {"return": True, "keyPairId": deleted}
