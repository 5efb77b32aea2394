"""Open-loop load through the data plane: streamed completions, TTFT at the first streamed token.

Arrivals are fixed before a round starts (Poisson, or the Azure conv trace's arrival times and token
sizes, scaled), so every contender gets exactly the same requests at the same offsets. Each request is
one HTTP/1.1 connection (`Connection: close`), so the data plane's connection count is the number of
requests in flight, as LTM counts them for ratio-least-connections.

A request that fails (refused, reset, a non-200 status, no token before its patience ran out, or still
running when the round's drain time ends) is an error and counts as a miss in goodput.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import random
import time
from collections.abc import Sequence

from bench.real.model import FIRST_BYTE_TOKEN, VOCAB_SIZE


@dataclasses.dataclass(frozen=True)
class Arrival:
    t: float  # seconds from the round's start
    prompt_tokens: int
    output_tokens: int
    seed: int


@dataclasses.dataclass
class Outcome:
    arrival: Arrival
    ttft: float | None = None  # seconds to the first streamed token
    e2e: float | None = None
    error: str | None = None


def prompt_ids(n: int, seed: int) -> list[int]:
    """`n` random token ids (no special tokens): an exact prompt length, and no two prompts share a
    prefix, so the engine's prompt cache cannot make one contender's requests cheaper than another's."""
    rng = random.Random(seed)
    return [rng.randrange(FIRST_BYTE_TOKEN, VOCAB_SIZE) for _ in range(n)]


def poisson(rate: float, duration: float, prompt_tokens: int, output_tokens: int, seed: int) -> list[Arrival]:
    rng = random.Random(seed)
    out, t = [], rng.expovariate(rate)
    while t < duration:
        out.append(Arrival(t, prompt_tokens, output_tokens, seed * 1_000_003 + len(out)))
        t += rng.expovariate(rate)
    return out


def trace_replay(trace: Sequence, rate: float, duration: float, token_scale: float, max_prompt: int,
                 max_output: int, start: float = 0.0, seed: int = 0) -> list[Arrival]:
    """The trace's arrival times (from `start` seconds into it) compressed to a mean of `rate` requests/s,
    and its prompt and output lengths multiplied by `token_scale` (at least 1 token; capped)."""
    if len(trace) < 2:
        return []
    mean_rate = (len(trace) - 1) / max(1e-9, trace[-1].t - trace[0].t)
    factor = rate / mean_rate
    out = []
    for r in trace:
        if r.t < start:
            continue
        t = (r.t - start) / factor
        if t >= duration:
            break
        out.append(Arrival(t, max(1, min(max_prompt, round(r.prompt_tokens * token_scale))),
                           max(1, min(max_output, round(r.output_tokens * token_scale))), seed * 1_000_003 + len(out)))
    return out


async def _request(host: str, port: int, a: Arrival, patience: float) -> Outcome:
    body = json.dumps({"prompt": prompt_ids(a.prompt_tokens, a.seed), "n_predict": a.output_tokens,
                       "ignore_eos": True, "stream": True, "cache_prompt": False, "temperature": 0.0}).encode()
    head = (f"POST /completion HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\nAccept: text/event-stream\r\n\r\n").encode()
    sent = time.monotonic()
    out = Outcome(a)
    writer = None
    try:
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(head + body)
        await writer.drain()
        status = await asyncio.wait_for(reader.readline(), patience)
        parts = status.split()
        if len(parts) < 2 or parts[1] != b"200":
            out.error = "http-" + (parts[1].decode(errors="replace") if len(parts) > 1 else "none")
            return out
        chunked = False
        while True:
            line = await asyncio.wait_for(reader.readline(), patience)
            if line in (b"\r\n", b"\n", b""):
                break
            if line.lower().startswith(b"transfer-encoding:") and b"chunked" in line.lower():
                chunked = True
        buf = b""
        async for piece in _body(reader, chunked, patience):
            if out.ttft is None:
                buf += piece
                if b"data: " in buf:
                    out.ttft = time.monotonic() - sent
                    buf = b""
        if out.ttft is None:
            out.error = "no-token"
            return out
        out.e2e = time.monotonic() - sent
    except asyncio.TimeoutError:
        out.error = "timeout"
    except (ConnectionError, OSError, asyncio.IncompleteReadError) as e:
        out.error = "reset" if isinstance(e, (ConnectionResetError, asyncio.IncompleteReadError)) else "refused"
    finally:
        if writer is not None:
            writer.close()
    return out


async def _body(reader: asyncio.StreamReader, chunked: bool, patience: float):
    if not chunked:
        while piece := await asyncio.wait_for(reader.read(65536), patience):
            yield piece
        return
    while True:
        size_line = await asyncio.wait_for(reader.readline(), patience)
        if not size_line:
            raise asyncio.IncompleteReadError(b"", None)
        size = int(size_line.split(b";")[0].strip() or b"0", 16)
        if size == 0:
            await reader.readline()
            return
        yield await asyncio.wait_for(reader.readexactly(size), patience)
        await reader.readline()


async def _run(host: str, port: int, arrivals: Sequence[Arrival], patience: float, drain: float) -> list[Outcome]:
    start = time.monotonic()
    tasks: list[asyncio.Task] = []
    for a in arrivals:
        delay = start + a.t - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(_request(host, port, a, patience)))
    last = start + (arrivals[-1].t if arrivals else 0.0)
    done, pending = await asyncio.wait(tasks, timeout=max(0.0, last + drain - time.monotonic())) if tasks else (set(), set())
    for t in pending:
        t.cancel()
    results = []
    for a, t in zip(arrivals, tasks, strict=True):
        if t in done and not t.cancelled() and t.exception() is None:
            results.append(t.result())
        else:
            results.append(Outcome(a, error="unfinished"))
    return results


def run(host: str, port: int, arrivals: Sequence[Arrival], patience: float = 60.0, drain: float = 60.0) -> list[Outcome]:
    """Send every arrival at its offset; return one Outcome per arrival, in order."""
    return asyncio.run(_run(host, port, list(arrivals), patience, drain))


def summarise(outcomes: Sequence[Outcome], slo: float = 2.0) -> dict:
    """n, TTFT p50/p90/p99 over all requests sent (an error counts as an infinitely late first token, so
    a percentile that falls on errors is reported as null), goodput (TTFT <= slo, errors are misses),
    and the error count."""
    n = len(outcomes)
    ttfts = sorted(o.ttft if o.error is None and o.ttft is not None else float("inf") for o in outcomes)

    def pct(q: float) -> float | None:
        if not ttfts:
            return None
        v = ttfts[min(len(ttfts) - 1, max(0, int(round(q * len(ttfts) + 0.5)) - 1))]
        return None if v == float("inf") else round(v, 4)

    good = sum(1 for v in ttfts if v <= slo)
    return {"n": n, "p50": pct(0.50), "p90": pct(0.90), "p99": pct(0.99),
            "goodput_2s": round(good / n, 4) if n else None,
            "errors": sum(1 for o in outcomes if o.error is not None)}
