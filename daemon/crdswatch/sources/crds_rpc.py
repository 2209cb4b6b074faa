"""Async client for the CRDS server's JSON-RPC API and its unchecked mapping downloads."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import html
import itertools
import json
import logging
import re
import ssl
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import httpcore
import httpx

from crdswatch.contexts.history import HistoryFormatError, activations_from_history, crds_decode
from crdswatch.contexts.names import MAPPING_NAME_RE, is_mapping_name
from crdswatch.errors import ReplyTooLarge, RpcError, ServerError, UnknownMappingError
from crdswatch.limits import DEFAULT_LIMITS, Limits
from crdswatch.model import Activation
from crdswatch.sources.netbackend import AsyncioBackend

__all__ = ["MAPPING_NAME_RE", "CrdsRpcClient", "Reply", "ReplyTooLarge", "check_mapping_name"]

log = logging.getLogger(__name__)
_T = TypeVar("_T")

_OBSERVATORY_RE = re.compile(r"^[a-z][a-z0-9_]*$")
_RETRY_STATUS = frozenset({429, 500, 502, 503, 504})
_DECODE_OFF_LOOP = 256 * 1024  # bytes of JSON worth a worker thread
# What an httpcore failure of a lane is, as httpx would have raised it (its transport maps the same).
_LANE_ERRORS: tuple[tuple[type[Exception], type[httpx.TransportError]], ...] = (
    (httpcore.ConnectTimeout, httpx.ConnectTimeout), (httpcore.ReadTimeout, httpx.ReadTimeout),
    (httpcore.WriteTimeout, httpx.WriteTimeout), (httpcore.PoolTimeout, httpx.PoolTimeout),
    (httpcore.ConnectError, httpx.ConnectError), (httpcore.ReadError, httpx.ReadError),
    (httpcore.WriteError, httpx.WriteError), (httpcore.RemoteProtocolError, httpx.RemoteProtocolError),
    (httpcore.LocalProtocolError, httpx.LocalProtocolError), (httpcore.UnsupportedProtocol, httpx.UnsupportedProtocol),
    (httpcore.ProtocolError, httpx.ProtocolError), (httpcore.NetworkError, httpx.NetworkError),
    (httpcore.TimeoutException, httpx.TimeoutException),
)
_LANE_FAILURES = tuple(core for core, _ in _LANE_ERRORS)
_Lane = httpx.AsyncClient | httpcore.AsyncConnectionPool


def check_mapping_name(observatory: str, name: str) -> None:
    """Reject anything that is not a plain mapping basename (keeps URLs and paths safe)."""
    if not _OBSERVATORY_RE.match(observatory):
        raise UnknownMappingError(f"not an observatory name: {observatory!r}")
    if not is_mapping_name(name):  # names go into URLs and cache paths
        raise UnknownMappingError(f"not a CRDS mapping name: {name!r}")


class _Retryable(ServerError):
    """A ServerError worth another attempt (timeouts, resets, 5xx); internal marker."""


@dataclass(frozen=True, slots=True)
class Reply:
    """One HTTP exchange, body read under its cap."""

    status_code: int
    content: bytes


class CrdsRpcClient:
    """One CRDS server. All calls are reads, so transport failures are retried with backoff.

    Each exchange is bounded by `limits.request_deadline` in all (a reply trickled one byte at a
    time cannot outlive it) and its body by a size cap, streamed and aborted past it.
    `requests` and `bytes_received` count every HTTP exchange (retries included) so the
    watcher can report what an idle poll costs.
    """

    def __init__(
        self,
        server_url: str,
        *,
        timeout: float = 30.0,
        connect_timeout: float | None = None,
        retries: int = 3,
        backoff: float = 0.5,
        max_backoff: float = 8.0,
        annotate_url: bool = True,
        client: httpx.AsyncClient | None = None,
        user_agent: str = "crdswatch",
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.server_url = server_url.rstrip("/")
        self.limits = limits
        self.retries = max(0, retries)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.annotate_url = annotate_url
        self.requests = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self._ids = itertools.count(1)
        self._prefix = f"crdswatch-{uuid.uuid4().hex[:8]}"
        self._own_client = client is None
        self._timeout = httpx.Timeout(timeout, connect=connect_timeout or timeout)
        self._headers = {"User-Agent": user_agent}
        self._client = client or httpx.AsyncClient(timeout=self._timeout, headers=self._headers, follow_redirects=False,
                                                   verify=_default_tls())
        # Downloads each take a lane: a connection pool of one, up to limits.download_concurrency of
        # them. httpcore's pool does work proportional to its connections on every request and
        # response (keep-alive checks, a poll() per idle socket): one pool of 8 busy connections cost
        # 1.4 ms of CPU per download on loopback, 8 pools of one 0.9 ms, and a backfill downloads
        # ~1,300 mappings. A lane is an httpcore pool on asyncio streams (sources.netbackend), sent
        # to directly: 0.35 ms, where httpx's transport over anyio cost 0.55-0.7 ms (no cookie jar,
        # auth, redirect or URL merging applies to a download). If the environment names a proxy,
        # which only a client applies, a lane is a client of its own. A client given to us is used
        # for everything.
        self._lanes: list[_Lane] = []
        self._idle_lanes: list[_Lane] = []
        self._lane_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in self._client.headers.items()]
        self._lane_extensions: dict[str, Any] = {"timeout": self._timeout.as_dict()}

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()
        lanes, self._lanes, self._idle_lanes = self._lanes, [], []
        for lane in lanes:
            await lane.aclose()

    def _take_lane(self) -> _Lane:
        if self._idle_lanes:
            return self._idle_lanes.pop()  # the most recently used: its connection is the warmest
        if not self._own_client or len(self._lanes) >= self.limits.download_concurrency:
            return self._client
        lane: _Lane
        if urllib.request.getproxies():
            lane = httpx.AsyncClient(timeout=self._timeout, headers=self._headers, follow_redirects=False,
                                     verify=_default_tls(), limits=httpx.Limits(max_connections=1))
        else:
            # httpx's own keep-alive expiry: a connection idle between polls is not reused days later
            lane = httpcore.AsyncConnectionPool(ssl_context=_default_tls(), max_connections=1,
                                                keepalive_expiry=httpx.Limits().keepalive_expiry,
                                                network_backend=AsyncioBackend())
        self._lanes.append(lane)
        return lane

    def _return_lane(self, lane: _Lane) -> None:
        if lane is not self._client and lane in self._lanes:  # not one closed by aclose meanwhile
            self._idle_lanes.append(lane)

    @contextlib.asynccontextmanager
    async def _open(self, via: _Lane, method: str, url: str, **kwargs: Any) -> AsyncIterator[_Body]:
        """A streamed response from a client, or from a lane's pool with the client's headers."""
        if isinstance(via, httpx.AsyncClient):
            async with via.stream(method, url, **kwargs) as response:
                yield _Body(response.status_code, response.headers.get("content-length", ""), response.aiter_bytes())
            return
        assert not kwargs, "lanes only download"
        try:
            async with via.stream(method, url, headers=self._lane_headers, extensions=self._lane_extensions) as raw:
                length = next((v.decode("latin-1") for k, v in raw.headers if k.lower() == b"content-length"), "")
                yield _Body(raw.status, length, raw.aiter_stream())
        except _LANE_FAILURES as exc:  # raised here too while the caller reads the body: it is our yield
            raise _as_httpx(exc) from exc

    def reset_counters(self) -> None:
        self.requests = self.bytes_received = self.bytes_sent = 0

    # -- transport ---------------------------------------------------------------------------

    async def _with_retries(self, what: str, attempt_once: Callable[[], Awaitable[_T]]) -> _T:
        for attempt in range(self.retries + 1):
            try:
                return await attempt_once()
            except _Retryable as exc:
                if attempt >= self.retries:
                    raise ServerError(f"{what}: giving up after {attempt + 1} attempts: {exc}") from exc
                delay = min(self.max_backoff, self.backoff * (2**attempt))
                log.warning("%s failed (%s); retry %d in %.2fs", what, exc, attempt + 1, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def _send(self, method: str, url: str, max_bytes: int | None = None, *,
                    via: _Lane | None = None, **kwargs: Any) -> Reply:
        self.requests += 1
        deadline = self.limits.request_deadline
        try:
            async with asyncio.timeout(deadline):
                response = await self._exchange(via or self._client, method, url,
                                                max_bytes or self.limits.crds_reply_max_bytes, **kwargs)
        except TimeoutError as exc:
            raise _Retryable(f"{url}: no complete reply within request_deadline ({deadline:g} s)") from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timeout talking to {url}: {type(exc).__name__}") from exc
        except httpx.InvalidURL as exc:  # never retried: the same URL is as bad next time
            raise ServerError(f"not a valid URL: {url!r}: {exc}") from exc
        except httpx.TransportError as exc:
            # Connection refused/reset, truncated bodies (RemoteProtocolError), etc.
            raise _Retryable(f"transport error talking to {url}: {type(exc).__name__}: {exc}") from exc
        if response.status_code in _RETRY_STATUS:
            raise _Retryable(f"HTTP {response.status_code} from {url}")
        return response

    async def _exchange(self, via: _Lane, method: str, url: str, max_bytes: int, **kwargs: Any) -> Reply:
        """Stream the body, giving up as soon as it (or its announced length) passes `max_bytes`."""
        async with self._open(via, method, url, **kwargs) as response:
            announced = response.length
            if announced.isdigit() and int(announced) > max_bytes:
                raise ReplyTooLarge(f"{url}: reply of {announced} bytes is over the cap of {max_bytes} bytes")
            chunks: list[bytes] = []
            size = 0
            async for chunk in response.chunks:
                size += len(chunk)
                self.bytes_received += len(chunk)
                if size > max_bytes:
                    raise ReplyTooLarge(f"{url}: reply larger than the cap of {max_bytes} bytes; aborted")
                chunks.append(chunk)
            return Reply(response.status_code, b"".join(chunks))

    async def call(self, method: str, *params: Any) -> Any:
        """Invoke one JSON-RPC method and return its (decoded) result."""
        return await self._with_retries(f"CRDS {method}", lambda: self._call_once(method, list(params)))

    async def _call_once(self, method: str, params: list[Any]) -> Any:
        msg_id = f"{self._prefix}-{next(self._ids):08x}"
        body = json.dumps({"jsonrpc": "1.0", "method": method, "params": params, "id": msg_id}).encode()
        # Like the crds client, put method and id in the path: ignored by the server, visible in logs.
        url = f"{self.server_url}/json/" + (f"{method}/{msg_id}/" if self.annotate_url else "")
        self.bytes_sent += len(body)
        response = await self._send("POST", url, content=body, headers={"Content-Type": "application/json"})
        if response.status_code != 200:
            raise ServerError(f"CRDS {method}: HTTP {response.status_code} from {url}")
        try:
            # A reply of several MB takes a while to decode: off the loop, so /healthz still answers.
            big = len(response.content) > _DECODE_OFF_LOOP
            envelope = await asyncio.to_thread(json.loads, response.content) if big else json.loads(response.content)
        except (ValueError, UnicodeDecodeError, RecursionError) as exc:
            snippet = response.content[:80].decode("utf-8", "replace")
            raise _Retryable(f"CRDS {method}: response is not JSON: {snippet!r}") from exc
        if _ESCAPED_SURROGATE.search(response.content):  # '\ud800' in JSON decodes to a lone surrogate
            envelope = _without_lone_surrogates(envelope)
        if not isinstance(envelope, dict) or not ("result" in envelope or "error" in envelope):
            raise ServerError(f"CRDS {method}: response is not a JSON-RPC envelope")
        error = envelope.get("error")
        if error:
            if not isinstance(error, dict):
                raise RpcError(method, "Error", html.unescape(str(error)))
            code = error.get("code")
            return_code = code if isinstance(code, int) else None
            message = html.unescape(str(error.get("message", "")))
            raise RpcError(method, str(error.get("name", "Error")), message, return_code)
        try:
            return crds_decode(envelope.get("result"), self.limits.crds_reply_max_bytes)
        except ValueError as exc:
            raise ServerError(f"CRDS {method}: {exc}") from exc

    # -- API ---------------------------------------------------------------------------------

    async def get_default_context(self, observatory: str, state: str | None = "latest") -> str:
        """The context in `state` (latest/build/edit); older servers are asked the old way."""
        attempts: list[tuple[Any, ...]] = [(observatory, state)] if state else []
        if state in (None, "latest", "operational"):
            # crds_server < 13 knows "operational" rather than "latest", or takes no state at all.
            attempts += [(observatory, "operational"), (observatory,)]
        last: RpcError | None = None
        for params in dict.fromkeys(attempts):
            try:
                result = await self.call("get_default_context", *params)
            except RpcError as exc:
                last = exc
                continue
            return _expect_pmap("get_default_context", result)
        if state == "edit":
            info = await self.get_server_info()
            return _expect_pmap("get_server_info edit_context", info.get("edit_context"))
        assert last is not None
        raise last

    async def get_context_history(self, observatory: str) -> list[Activation]:
        rows = await self.call("get_context_history", observatory)
        try:
            return activations_from_history(rows)
        except HistoryFormatError as exc:
            raise ServerError(f"CRDS get_context_history: {exc}") from exc

    async def get_server_info(self) -> dict[str, Any]:
        info = await self.call("get_server_info")
        if not isinstance(info, dict):
            raise ServerError("CRDS get_server_info: result is not an object")
        return info

    async def get_file_info_map(
        self,
        observatory: str,
        files: Sequence[str] | None = None,
        fields: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """{file: {field: str}}; the server says "NOT FOUND ..." (a string) for unknown files."""
        result = await self.call(
            "get_file_info_map",
            observatory,
            sorted(files) if files is not None else None,
            sorted(fields) if fields is not None else None,
        )
        if not isinstance(result, dict):
            raise ServerError("CRDS get_file_info_map: result is not an object")
        return result

    async def get_affected_datasets(self, observatory: str, old_context: str | None, new_context: str | None) -> Any:
        """The server's precomputed datasets whose best references the switch changes (a Struct:
        affected_ids, bestrefs_status, old_context, new_context, ...); see notices.programs.

        Not computed yet is an RpcError whose message says "No precomputed affected datasets
        results exist"; it is not retried here (the caller waits minutes, not seconds).
        """
        return await self.call("get_affected_datasets", observatory, old_context, new_context)

    async def fetch_mapping(self, observatory: str, name: str) -> str:
        """Download one mapping's text, unverified (see mapcache.MappingFetcher for checks)."""
        check_mapping_name(observatory, name)
        url = f"{self.server_url}/unchecked_get/mappings/{observatory}/{name}"

        async def once() -> str:
            lane = self._take_lane()
            try:
                response = await self._send("GET", url, max_bytes=self.limits.mapping_max_bytes, via=lane)
            finally:
                self._return_lane(lane)
            if response.status_code == 404:
                raise UnknownMappingError(f"server has no mapping {name!r} for {observatory}")
            if response.status_code != 200:
                raise ServerError(f"GET {url}: HTTP {response.status_code}")
            try:
                return response.content.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ServerError(f"GET {url}: body is not UTF-8 text") from exc

        return await self._with_retries(f"GET {name}", once)


@dataclass(frozen=True, slots=True)
class _Body:
    """What _exchange reads of a streamed response, from httpx or from an httpcore lane."""

    status_code: int
    length: str  # the Content-Length header as sent, "" if none
    chunks: AsyncIterator[bytes]


def _as_httpx(exc: Exception) -> httpx.TransportError:
    for core, ours in _LANE_ERRORS:
        if isinstance(exc, core):
            return ours(str(exc) or type(exc).__name__)
    return httpx.TransportError(str(exc) or type(exc).__name__)


@functools.cache
def _default_tls() -> ssl.SSLContext:
    """httpx's default TLS settings (the CA bundle, SSL_CERT_FILE/SSL_CERT_DIR as at the first call),
    loaded once per process for every client and lane: loading the bundle takes ~30-50 ms, and
    each CrdsRpcClient loaded it twice (its client, then its lanes). A context is safe to share."""
    return httpx.create_ssl_context()


def _expect_pmap(what: str, value: object) -> str:
    if not isinstance(value, str) or not value.endswith(".pmap"):
        raise ServerError(f"CRDS {what}: expected a .pmap name, got {value!r}")
    return value


# A JSON \\uD800-\\uDFFF escape; a valid pair decodes to one character, a lone one stays a
# surrogate, which no database, renderer or channel can encode (every poll would fail on it).
_ESCAPED_SURROGATE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")


def _without_lone_surrogates(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, list):
        return [_without_lone_surrogates(v) for v in value]
    if isinstance(value, dict):
        return {_without_lone_surrogates(k): _without_lone_surrogates(v) for k, v in value.items()}
    return value
