"""The worker of the metrics benchmark (bench_metrics.py): a paced load of increments.

The master asks "load" {"rate", "seconds", "mode"}: the worker makes ``rate`` increments
per second for ``seconds`` seconds, in ticks of 10 ms, spread over four label values of a
counter, each one also observed by a histogram ("drover" mode: ``mb.counter`` and
``mb.histogram``), or into a plain dict ("floor" mode: the same loop without metrics).
It answers [increments made, CPU seconds the process used meanwhile], after a
``flush_metrics()`` so that the master has every increment when the answer arrives.
"""

from __future__ import annotations

import time

import anyio

from drover_py import MessageBus

LABELS = ("a", "b", "c", "d")


async def main() -> None:
    async with MessageBus() as mb:
        jobs = mb.counter("jobs_total", "Jobs done", labels=("queue",))
        seconds = mb.histogram("job_seconds", "Job duration", labels=("queue",), buckets=(0.01, 0.1, 1))
        series = [(jobs.labels(queue), seconds.labels(queue)) for queue in LABELS]
        plain: dict[str, float] = {}

        async def load(payload: dict[str, object]) -> list[float]:
            rate, duration, mode = payload["rate"], payload["seconds"], payload["mode"]
            assert isinstance(rate, int) and isinstance(duration, (int, float)) and isinstance(mode, str)
            per_tick = rate // 100
            made = 0
            cpu = time.process_time()
            start = anyio.current_time()
            tick = 0
            while anyio.current_time() - start < duration:
                for i in range(per_tick):
                    if mode == "drover":
                        counter, histogram = series[i % 4]
                        counter.inc()
                        histogram.observe(0.05)
                    else:
                        key = LABELS[i % 4]
                        plain[key] = plain.get(key, 0) + 1
                        plain[key + "_h"] = plain.get(key + "_h", 0) + 0.05
                made += per_tick
                tick += 1
                await anyio.sleep_until(start + tick / 100)
            cpu = time.process_time() - cpu
            await mb.flush_metrics()
            return [made, cpu]

        mb.handle("load", load)
        await mb.send_started()
        await anyio.sleep_forever()


if __name__ == "__main__":
    anyio.run(main)
