"""What an idle poll costs: requests, bytes and time per poll against a replay CRDS server on loopback.

Run: .venv/bin/python bench/idle_poll.py [--polls N]
Bodies are counted by the client; headers are added from the actual request/response objects.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx

from crdswatch.app.poll import Watch, poll_once
from crdswatch.devtools.bundled import extract_bundled
from crdswatch.devtools.replay import ReplayServer
from crdswatch.sources.crds import CrdsSource
from crdswatch.sources.crds_rpc import CrdsRpcClient
from crdswatch.store import Store


async def main(polls: int) -> None:
    wire = {"sent": 0, "received": 0}

    async def on_response(response: httpx.Response) -> None:
        request = response.request
        wire["sent"] += len(request.method) + len(str(request.url.raw_path)) + 12 + sum(
            len(k) + len(v) + 4 for k, v in request.headers.raw) + len(request.content)
        await response.aread()
        wire["received"] += 17 + sum(len(k) + len(v) + 4 for k, v in response.headers.raw) + len(response.content)

    with tempfile.TemporaryDirectory() as tmp:
        data = extract_bundled(Path(tmp) / "b")
        with ReplayServer(data / "mappings", data / "config" / "server_config", upto="jwst_0541.pmap") as srv:
            http = httpx.AsyncClient(timeout=10, event_hooks={"response": [on_response]})
            client = CrdsRpcClient(srv.url, client=http)
            source = CrdsSource(srv.url, "jwst", Path(tmp) / "cache", client=client)
            store = Store.open(f"sqlite:///{tmp}/state.db")
            watch = Watch(source)
            await poll_once(watch, store, datetime.now(UTC))  # baseline: reads the history once
            client.reset_counters()
            wire.update(sent=0, received=0)
            times = []
            for _ in range(polls):
                start = time.perf_counter()
                report = await poll_once(watch, store, datetime.now(UTC))
                times.append(time.perf_counter() - start)
                assert not report.processed
            print(f"idle polls:               {polls}")
            print(f"requests per idle poll:   {client.requests / polls:.2f}")
            print(f"body bytes per poll:      sent {client.bytes_sent / polls:.0f}, received {client.bytes_received / polls:.0f}")
            print(f"wire bytes per poll:      sent {wire['sent'] / polls:.0f}, received {wire['received'] / polls:.0f}"
                  " (HTTP/1.1 request + status line and headers + body)")
            print(f"time per poll (loopback): median {statistics.median(times) * 1000:.1f} ms "
                  f"(incl. the state database read)")
            await source.aclose()
            store.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--polls", type=int, default=200)
    asyncio.run(main(parser.parse_args().polls))
