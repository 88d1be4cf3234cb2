"""Talk between a master and its workers: messages and requests, in both directions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio

from .._exceptions import PeerGoneError
from .._wire import protocol as proto
from .._wire.conversation import NoHandler, set_request_handler
from .events import EventRegistry
from .table import WorkerTable
from .worker import Worker

#: Answers a worker's request: ``handler(worker_id, payload)``, sync or async.
RequestHandler = Callable[..., object]


class Talk:
    """Route workers' messages and requests to the master's handlers, and the master's to workers."""

    def __init__(self, table: WorkerTable, events: EventRegistry) -> None:
        self._table = table
        self._events = events
        self._handlers: dict[str, RequestHandler] = {}

    def handle(self, name: str, handler: RequestHandler | None) -> None:
        """Answer workers' requests ``name`` with ``handler``; None removes it."""
        set_request_handler(self._handlers, name, handler)

    def from_worker(self, worker: Worker, payload: object) -> Awaitable[None] | None:
        """Give a worker's message to the "message" handlers, in turn."""
        return self._events.call_in_turn("message", worker.id, payload)

    def request_from_worker(self, worker: Worker, name: str, payload: object) -> object:
        """Return the handler's result, or its awaitable (a coroutine function's)."""
        handler = self._handlers.get(name)
        if handler is None:
            raise NoHandler(f"the master has no handler for request {name!r}")
        return handler(worker.id, payload)

    def send(self, worker_id: int, payload: object) -> Awaitable[None]:
        # The conversation's own coroutine, not one of ours around it: this runs per message.
        return self._table.find(worker_id).send_message(payload)

    async def broadcast(self, payload: object) -> list[int]:
        proto.encode_message(payload)  # a bad payload fails here, before anything is sent
        targets = self._table.started()
        reached: list[int] = []
        if not targets:
            await anyio.lowlevel.checkpoint()  # a loop of broadcasts must not starve the others
            return reached

        async def send_one(worker: Worker) -> None:
            try:
                await worker.send_message(payload)
            except PeerGoneError:
                return
            reached.append(worker.id)

        async with anyio.create_task_group() as tg:
            for worker in targets:
                tg.start_soon(send_one, worker)
        return sorted(reached)

    async def request(self, worker_id: int, name: str, payload: object, timeout: float) -> object:
        return await self._table.find(worker_id).request(name, payload, timeout)
