"""Image caches on hosts: ``ivfarm image sync`` fills them in waves; a launch fills its host's first.

A host takes part when it has an SSH endpoint (``Host.ssh_target``); its cache is
``Host.cache_dir`` or ``image_cache.dir``, and a cached image keeps the repository file's name.
Hosts without an SSH endpoint read images from the repository's path (the controller itself, or
hosts that mount the repository).
"""
from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import select

from drivers.errors import CacheError
from drivers.storage.base import BaseImage
from drivers.storage.ssh_cache import SshCache, SshTarget
from ivfarm.errors import InvalidInput, NotFound
from ivfarm.services.images import waves
from ivfarm.services.images.catalog import find_image
from ivfarm.services.runtime.context import CloudContext
from ivfarm.services.runtime.driver_errors import driver_calls
from ivfarm.services.runtime.locks import run_lock
from ivfarm.store.models import Host

# (host, event, detail, fraction or None): checking, present, corrupt, missing, copying, progress, retry, copied, failed
SyncEvents = Callable[[str, str, str, float | None], None]


@dataclass(frozen=True)
class CacheHost:
    """A host's cache as the sync sees it."""

    name: str
    target: SshTarget
    path: str  # where the image is (or goes) on that host


@dataclass
class HostCopy:
    """One host's result: ``present`` (verified copy already there), ``copied``, ``replaced`` (a corrupt
    copy was found and replaced) or ``failed``."""

    host: str
    status: str
    source: str | None = None
    round: int = 0
    seconds: float = 0.0
    finished_s: float = 0.0
    attempts: int = 0
    error: str = ""


@dataclass
class SyncReport:
    image: str
    size_bytes: int
    fanout: int
    rounds: int
    seconds: float
    hosts: list[HostCopy] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)


def cache_client(cloud: CloudContext) -> SshCache:
    """The SSH/rsync client configured in ``image_cache``."""
    conf = cloud.config.get("image_cache")
    return SshCache(conf["ssh_options"], conf["ssh_key"], int(conf["bwlimit_kbps"] or 0))


def _cache_host(cloud: CloudContext, host: Host, file_name: str) -> CacheHost:
    if not host.ssh_target:
        raise InvalidInput(f"host {host.name} has no SSH endpoint (host add --ssh-target) for an image cache")
    directory = host.cache_dir or str(cloud.config.get("image_cache.dir"))
    return CacheHost(host.name, SshTarget.parse(host.ssh_target), f"{directory.rstrip('/')}/{file_name}")


def _select_hosts(cloud: CloudContext, names: Sequence[str] | None, file_name: str) -> list[CacheHost]:
    with cloud.store.read() as session:
        if names:
            found = {h.name: h for h in session.scalars(select(Host).where(Host.name.in_(names)))}
            missing = [n for n in names if n not in found]
            if missing:
                raise NotFound("host", ", ".join(missing))
            return [_cache_host(cloud, found[n], file_name) for n in dict.fromkeys(names)]
        rows = session.scalars(select(Host).where(Host.host_class == "worker", Host.enabled.is_(True),
                                                  Host.ssh_target.is_not(None)).order_by(Host.name))
        return [_cache_host(cloud, h, file_name) for h in rows]


def sync_image(cloud: CloudContext, image_ref: str, host_names: Sequence[str] | None = None, fanout: int | None = None,
               on_event: SyncEvents | None = None) -> SyncReport:
    """Bring the image into the cache of the given hosts (default: every enabled worker with an SSH
    endpoint): existing copies are checksummed on their host, missing or corrupt ones copied in waves."""
    emit = on_event or (lambda _h, _e, _d, _f: None)
    with cloud.store.read() as session:
        image = find_image(session, image_ref)
        repository, sha256, size, image_id = Path(image.path), image.sha256, image.size_bytes, image.id
    fanout = int(fanout or cloud.config.get("image_cache.fanout"))
    if fanout < 1:
        raise InvalidInput("--fanout must be at least 1")
    cache = cache_client(cloud)
    hosts = {h.name: h for h in _select_hosts(cloud, host_names, repository.name)}
    started = time.monotonic()

    def check(host: CacheHost) -> tuple[str, str]:
        emit(host.name, "checking", "", None)
        try:
            found = cache.checksum(host.target, host.path)
        except CacheError as exc:
            return host.name, f"error: {exc}"
        state = "missing" if found is None else "present" if found == sha256 else "corrupt"
        emit(host.name, state, "", 1.0 if state == "present" else None)
        return host.name, state

    with ThreadPoolExecutor(max_workers=min(32, max(1, len(hosts)))) as pool:
        states = dict(pool.map(check, hosts.values()))

    def transfer(source: str, target: str) -> None:
        to = hosts[target]

        def progress(fraction: float) -> None:
            emit(target, "progress", source, fraction)

        if source == waves.REPOSITORY:
            cache.copy_from_local(str(repository), to.target, to.path, sha256, progress)
        else:
            sender = hosts[source]
            cache.copy_between(sender.target, sender.path, to.target, to.path, sha256, progress)

    targets = [n for n, s in states.items() if s in ("missing", "corrupt")]
    holders = [n for n, s in states.items() if s == "present"]
    outcomes = waves.spread(targets, holders, transfer, fanout, int(cloud.config.get("image_cache.attempts")),
                            lambda h, e, d: emit(h, e, d, None))
    by_host = {o.host: o for o in outcomes}
    report = SyncReport(image=image_id, size_bytes=size, fanout=fanout, rounds=max((o.round for o in outcomes), default=0),
                        seconds=0.0)
    for name, state in states.items():
        if state == "present":
            report.hosts.append(HostCopy(name, "present"))
        elif state.startswith("error"):
            report.hosts.append(HostCopy(name, "failed", error=state.removeprefix("error: ")))
            emit(name, "failed", report.hosts[-1].error, None)
        else:
            o = by_host[name]
            status = o.status if o.status == "failed" or state == "missing" else "replaced"
            report.hosts.append(HostCopy(name, status, o.source, o.round, round(o.seconds, 3), round(o.finished_s, 3),
                                         o.attempts, o.error))
    report.seconds = round(time.monotonic() - started, 3)
    return report


def ensure_cached(cloud: CloudContext, uri: str, image: BaseImage) -> BaseImage:
    """The image as the host behind ``uri`` reads it: from its cache, copied from the repository
    first if it lacks it; unchanged for hosts without an SSH endpoint."""
    with cloud.store.read() as session:
        host = session.scalar(select(Host).where(Host.uri == uri))
        if host is None or not host.ssh_target:
            return image
        cached = _cache_host(cloud, host, Path(image.path).name)
    cache = cache_client(cloud)
    with run_lock(cloud, f"cache-{cached.name}-{Path(image.path).name}"), driver_calls():
        if not cache.exists(cached.target, cached.path):
            cache.copy_from_local(image.path, cached.target, cached.path, image.sha256)
    return dataclasses.replace(image, path=cached.path)
