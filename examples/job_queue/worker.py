"""job_queue worker: ask the master for jobs until there are none, report each result."""

from __future__ import annotations

import anyio

from drover_py import MessageBus


def work(job: int) -> int:
    """Stand in for real work: a sum of squares."""
    return sum(i * i for i in range(100_000 + job * 1000))


async def main() -> None:
    done = {"jobs": 0}
    async with MessageBus() as mb:
        mb.handle("stats", lambda payload: {"jobs": done["jobs"], "slot": mb.slot})
        await mb.send_started()
        while (job := await mb.request("next-job")) is not None:
            assert isinstance(job, int)
            result = work(job)
            print(f"job {job} -> {result}", flush=True)  # captured and prefixed by the master
            await mb.send({"job": job, "result": result})
            done["jobs"] += 1
        await anyio.sleep_forever()  # idle until the master's stop and quit (the bus's defaults answer)


if __name__ == "__main__":
    anyio.run(main)
