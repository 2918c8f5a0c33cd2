"""One poller per cluster per triggerer process: every waiting job of that cluster costs one share
of ONE status command per interval over ONE connection.

Why: a triggerer may hold hundreds of deferred Slurm tasks. Polling per task (one SSH connection and
one sacct each) is what the existing integrations do, and it hammers the login node. Here triggers
subscribe their job ids to a module-level `SharedPoller` keyed by the cluster's settings and the
event loop; its single loop asks for the union of all ids in one `status` call and hands each
subscriber its part. Errors (login node down, sshd restarted) back off exponentially; subscribers
are told, and keep waiting.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import weakref
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from dc2tasks.airflow.hooks import SlurmBackend, async_client, make_transport
from dc2tasks.slurm import AsyncSlurmClient, JobInfo, SlurmCommandError
from dc2tasks.slurm.states import UnknownSlurmState
from dc2tasks.slurm.transports import TransportError

log = logging.getLogger(__name__)
MAX_BACKOFF_S = 300.0


@dataclass
class PollResult:
    """What one poll saw of a subscriber's ids (None: Slurm does not know the id (yet))."""

    jobs: dict[str, JobInfo | None]
    poll_number: int


@dataclass
class PollFailed:
    error: str
    consecutive: int
    retry_in_s: float


@dataclass(eq=False)  # identity: each subscription is its own waiting trigger
class Subscription:
    ids: tuple[str, ...]
    interval: float
    _latest: PollResult | PollFailed | None = None
    _ready: asyncio.Event = field(default_factory=asyncio.Event)

    def _deliver(self, item: PollResult | PollFailed) -> None:
        self._latest = item  # a slow reader only ever needs the newest state
        self._ready.set()

    async def next(self) -> PollResult | PollFailed:
        await self._ready.wait()
        self._ready.clear()
        item, self._latest = self._latest, None
        assert item is not None
        return item


class SharedPoller:
    def __init__(self, client: AsyncSlurmClient, name: str = "slurm") -> None:
        self.client = client
        self.name = name
        self.polls = 0
        self._subs: set[Subscription] = set()
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(self, ids: list[str], interval: float) -> AsyncIterator[Subscription]:
        sub = Subscription(tuple(ids), interval)
        self._subs.add(sub)
        if self._task is None or self._task.done():
            # an empty context: a task inherits its creator's, and the triggerer routes a line to a
            # task's log by the `trigger_id` it finds there, so the polls for every subscriber would
            # fill the log of whichever trigger subscribed first
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"dc2-poller-{self.name}", context=contextvars.Context())
        try:
            yield sub
        finally:
            self._subs.discard(sub)
            if not self._subs:
                self._wake.set()  # let the loop notice it has nothing left to do

    @property
    def waiting_ids(self) -> int:
        return len({i for s in self._subs for i in s.ids})

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout=seconds)

    async def _run(self) -> None:
        failures = 0
        while self._subs:
            subs = list(self._subs)
            interval = min(s.interval for s in subs)
            await self._sleep(interval if failures == 0 else min(interval * 2**failures, MAX_BACKOFF_S))
            subs = list(self._subs)
            if not subs:
                break
            ids = sorted({i for s in subs for i in s.ids})
            try:
                found = await self.client.status(ids)
            except (TransportError, SlurmCommandError, UnknownSlurmState, ValueError) as e:
                failures += 1
                retry_in = min(interval * 2**failures, MAX_BACKOFF_S)
                log.warning("%s: status poll failed (%d in a row), next in %.0f s: %s",
                            self.name, failures, retry_in, e)
                for s in subs:
                    s._deliver(PollFailed(str(e), failures, retry_in))
                continue
            failures = 0
            self.polls += 1
            for s in subs:
                s._deliver(PollResult({i: found.get(i) for i in s.ids}, self.polls))


_TRANSPORTS: dict[SlurmBackend, object] = {}
_POLLERS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[SlurmBackend, SharedPoller]] = (
    weakref.WeakKeyDictionary()
)


def shared_transport(
    backend: SlurmBackend, factory: Callable[[SlurmBackend], object] = make_transport
) -> object:
    """One transport (one SSH connection) per cluster per process, whatever the event loop."""
    transport = _TRANSPORTS.get(backend)
    if transport is None:
        transport = _TRANSPORTS[backend] = factory(backend)
    return transport


def get_poller(backend: SlurmBackend) -> SharedPoller:
    """The poller of `backend` for the running event loop (created on first use).

    Per loop: an asyncio task belongs to one loop, and `dag.test()` and tests start several loops
    in one process; the transport under it is shared by all of them."""
    per_loop = _POLLERS.setdefault(asyncio.get_running_loop(), {})
    poller = per_loop.get(backend)
    if poller is None:
        name = backend.ssh.host if backend.ssh else "local"
        client = async_client(shared_transport(backend), backend)  # type: ignore[arg-type]
        poller = per_loop[backend] = SharedPoller(client, name=name)
    return poller
