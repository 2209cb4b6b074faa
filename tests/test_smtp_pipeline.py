"""Pipelined SMTP (RFC 2920) against real aiosmtpd peers, one that advertises PIPELINING and one
that does not: the same outcomes either way, refusals included, over fewer connections."""

# ruff: noqa: F811

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdswatch.channels import ChannelPausedError, EmailChannel, SendResult
from crdswatch.channels.email import SmtpSettings
from crdswatch.channels.smtp_pipeline import DataBody, PipelinedSession, SmtpPool, _wire_body
from crdswatch.errors import DeliveryError, PermanentDeliveryError, TransientDeliveryError
from tests.support.fixtures_channels import smtp_pki  # noqa: F401
from tests.support.smtp_server import DROP, PipeliningHandler, Pki, SmtpTestServer, running_smtp_server

SENDER = "notices@example.org"


def raw(n: int, extra: bytes = b"") -> bytes:
    return (f"From: {SENDER}\r\nTo: someone@example.org\r\nSubject: notice {n}\r\n"
            f"Message-ID: <n{n}@example.org>\r\n\r\nbody {n}\r\n").encode() + extra


@pytest.fixture(params=[True, False], ids=["pipelining", "one-at-a-time"])
def server(request: pytest.FixtureRequest, smtp_pki: Pki) -> Iterator[SmtpTestServer]:
    """STARTTLS and AUTH, as in production; with and without PIPELINING advertised."""
    with running_smtp_server(smtp_pki, security="starttls", pipelining=request.param) as peer:
        yield peer


async def send_all(session: PipelinedSession | SmtpPool, jobs: list[tuple[list[str], bytes | DataBody]]
                   ) -> list[SendResult | DeliveryError]:
    async def one(recipients: list[str], data: bytes | DataBody) -> SendResult | DeliveryError:
        try:
            return await session.send_raw(SENDER, recipients, data)
        except DeliveryError as exc:
            return exc

    return list(await asyncio.gather(*(one(r, d) for r, d in jobs)))


async def test_concurrent_messages_share_one_connection_in_order(server: SmtpTestServer) -> None:
    session = PipelinedSession(EmailChannel(server.settings()))
    # A line starting with a dot must arrive as it was (dot-stuffing), and a body without a final
    # line end gets one.
    jobs = [([f"r{i}@example.org"], raw(i, b".leading dot\r\n..two\r\n" if i == 3 else b"")) for i in range(12)]
    jobs.append((["last@example.org"], raw(12).rstrip(b"\r\n")))
    try:
        results = await send_all(session, jobs)
    finally:
        await session.close()
    assert all(isinstance(r, SendResult) and not r.refused for r in results), results
    assert session.pipelining is isinstance(server.handler, PipeliningHandler)
    assert session.connections == 1 and server.sessions_used == {1}
    received = server.messages
    assert [m.rcpt_tos for m in received] == [tuple(r) for r, _ in jobs]  # wire order = call order
    assert received[3].data.endswith(b"body 3\r\n.leading dot\r\n..two\r\n")
    assert received[12].data.endswith(b"body 12\r\n")
    assert received[0].mail_from == SENDER


async def test_refusals_map_to_the_same_outcomes(server: SmtpTestServer) -> None:
    server.reject_address("gone@example.org", 550)
    server.reject_address("busy@example.org", 451)
    session = PipelinedSession(EmailChannel(server.settings()))
    jobs = [
        (["a@example.org"], raw(0)),
        (["gone@example.org"], raw(1)),  # every recipient refused, permanently
        (["busy@example.org"], raw(2)),  # every recipient refused, for now
        (["b@example.org", "gone@example.org", "busy@example.org"], raw(3)),  # some refused
        (["c@example.org"], raw(4)),  # the connection is still in step after the refusals
    ]
    try:
        ok, gone, busy, partial, after = await send_all(session, jobs)
    finally:
        await session.close()
    assert isinstance(ok, SendResult) and isinstance(after, SendResult)
    assert isinstance(gone, PermanentDeliveryError) and "550" in str(gone)
    assert isinstance(busy, TransientDeliveryError) and not isinstance(busy, ChannelPausedError)
    assert "451" in str(busy)
    assert isinstance(partial, SendResult)
    assert partial.accepted == ("b@example.org",)
    assert partial.permanent_refused == ("gone@example.org",) and partial.transient_refused == ("busy@example.org",)
    assert [m.rcpt_tos for m in server.messages] == [("a@example.org",), ("b@example.org",), ("c@example.org",)]
    assert session.connections == 1


@pytest.mark.parametrize(("command", "code", "error"), [
    ("MAIL", 451, TransientDeliveryError),
    ("MAIL", 550, PermanentDeliveryError),
    ("DATA", 451, TransientDeliveryError),
    ("DATA", 554, PermanentDeliveryError),
])
async def test_sender_and_body_refusals(server: SmtpTestServer, command: str, code: int,
                                        error: type[DeliveryError]) -> None:
    session = PipelinedSession(EmailChannel(server.settings()))
    server.fail_next(command, code)  # type: ignore[arg-type]
    try:
        first, second = await send_all(session, [(["a@example.org"], raw(0)), (["b@example.org"], raw(1))])
    finally:
        await session.close()
    assert isinstance(first, error) and not isinstance(first, ChannelPausedError), first
    assert str(code) in str(first)
    assert isinstance(second, SendResult)
    assert [m.rcpt_tos for m in server.messages] == [("b@example.org",)]


async def test_a_dropped_connection_fails_what_is_in_flight_and_reconnects(server: SmtpTestServer) -> None:
    session = PipelinedSession(EmailChannel(server.settings()))
    server.fail_next("DATA", DROP)
    try:
        first = await send_all(session, [([f"r{i}@example.org"], raw(i)) for i in range(4)])
        later = await send_all(session, [(["later@example.org"], raw(9))])
    finally:
        await session.close()
    assert isinstance(first[0], TransientDeliveryError), first
    assert all(isinstance(r, TransientDeliveryError | SendResult) for r in first)
    assert isinstance(later[0], SendResult)
    assert session.connections == 2
    delivered = [m.rcpt_tos for m in server.messages]
    assert ("later@example.org",) in delivered and ("r0@example.org",) not in delivered


async def test_a_body_already_as_data_carries_it_arrives_as_it_was(server: SmtpTestServer) -> None:
    # A rendered notice comes dot-stuffed (EmailTemplate.render_data); on a server without
    # PIPELINING aiosmtplib stuffs it itself, so the session must hand it the message unstuffed.
    message = b".starts with a dot\r\n" + raw(1, b".leading dot\r\n..two\r\nend\r\n")
    size, stuffed = _wire_body(message)
    body = DataBody(stuffed, size)
    assert body.message() == message and size == len(message)
    session = PipelinedSession(EmailChannel(server.settings()))
    try:
        [result] = await send_all(session, [(["r@example.org"], body)])
    finally:
        await session.close()
    assert isinstance(result, SendResult), result
    [received] = server.messages
    assert received.data.endswith(b"body 1\r\n.leading dot\r\n..two\r\nend\r\n")
    assert b".starts with a dot\r\n" in received.data


async def test_pool_spreads_messages_over_its_connections(server: SmtpTestServer) -> None:
    pool = SmtpPool(EmailChannel(server.settings()), 3)
    try:
        results = await send_all(pool, [([f"r{i}@example.org"], raw(i)) for i in range(30)])
    finally:
        await pool.close()
    assert all(isinstance(r, SendResult) for r in results)
    assert server.sessions_used == {1, 2, 3} and len(server.messages) == 30


async def test_stdlib_message_goes_through_the_same_path(server: SmtpTestServer) -> None:
    from email.message import EmailMessage

    msg = EmailMessage()
    msg["From"], msg["To"], msg["Bcc"], msg["Subject"] = SENDER, "to@example.org", "hidden@example.org", "hi"
    msg.set_content("héllo\n.dot\n")
    session = PipelinedSession(EmailChannel(server.settings()))
    try:
        result = await session.send(msg)
    finally:
        await session.close()
    assert result.accepted == ("to@example.org", "hidden@example.org")
    [received] = server.messages
    assert b"hidden@example.org" not in received.data  # Bcc is never transmitted
    assert received.parsed().get_content().replace("\r\n", "\n") == "héllo\n.dot\n"


async def test_implicit_tls_and_pipelining(smtp_pki: Pki) -> None:
    with running_smtp_server(smtp_pki, security="tls", pipelining=True) as peer:
        session = PipelinedSession(EmailChannel(peer.settings()))
        try:
            results = await send_all(session, [([f"r{i}@example.org"], raw(i)) for i in range(5)])
        finally:
            await session.close()
        assert session.pipelining and all(isinstance(r, SendResult) for r in results)
        assert len(peer.messages) == 5


async def test_replies_are_cut_as_aiosmtplib_reads_them_whatever_the_chunks() -> None:
    # One-line replies take the short cut; a multi-line reply, one split across reads and a
    # malformed line go through aiosmtplib's own parser, with its outcome.
    from aiosmtplib import SMTPResponseException
    from aiosmtplib.response import SMTPResponse

    from crdswatch.channels.smtp_pipeline import _PipelineProtocol

    class Owner:
        def __init__(self) -> None:
            self.replies: list[SMTPResponse] = []
            self.aborted: BaseException | None = None
            self._protocol: object = None
            self._replying = self._flush_pending = False

        def _on_reply(self, response: SMTPResponse) -> None:
            self.replies.append(response)

        def _abort(self, exc: BaseException) -> None:
            self.aborted, self._protocol = exc, None

    class Transport(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return default

    stream = b"250 2.1.0 ok\r\n250-first\r\n250-second\r\n250 last\r\n354 go ahead\r\n250 2.0.0 queued as X\r\n"
    for size in (1, 3, 7, len(stream)):
        owner = Owner()
        protocol = _PipelineProtocol(Transport(), owner)  # type: ignore[arg-type]
        owner._protocol = protocol
        for start in range(0, len(stream), size):
            protocol.data_received(stream[start:start + size])
        assert [(r.code, r.message) for r in owner.replies] == [
            (250, "2.1.0 ok"), (250, "first\nsecond\nlast"), (354, "go ahead"), (250, "2.0.0 queued as X")], size
        assert owner.aborted is None and not protocol._buffer
    owner = Owner()
    protocol = _PipelineProtocol(Transport(), owner)  # type: ignore[arg-type]
    owner._protocol = protocol
    protocol.data_received(b"250 ok\r\nxyz broken\r\n250 never\r\n")
    assert [r.code for r in owner.replies] == [250] and isinstance(owner.aborted, SMTPResponseException)


# -- the short cuts: the same bytes and errors as the full path --------------------------------------

_ADDRESS = st.one_of(
    st.from_regex(r"[a-z0-9.+_-]{1,8}@[a-z0-9.-]{1,8}", fullmatch=True),  # plain: the short cut
    st.text(st.sampled_from("aZ.@<> \"\r\n\x00\x7fé,"), min_size=1, max_size=12),  # anything else
)


class _Extensions:
    def __init__(self, names: frozenset[str]) -> None:
        self.names = names

    def supports_extension(self, name: str) -> bool:
        return name in self.names


def _outcome(call: Callable[[], tuple[bytes, bytes]]) -> object:
    try:
        return call()
    except Exception as exc:  # noqa: BLE001 - the error is the outcome compared
        return type(exc), str(exc)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sender=_ADDRESS, recipients=st.lists(_ADDRESS, min_size=1, max_size=3),
       options=st.lists(st.sampled_from(["BODY=8BITMIME", "SMTPUTF8", "X-BAD\r\nRSET"]), max_size=2, unique=True),
       extensions=st.frozensets(st.sampled_from(["size", "smtputf8"])),
       body=st.sampled_from([b"a\r\n", b".dot\r\nb", DataBody(b"x\r\n..y\r\n", 7)]))
def test_envelope_short_cut_gives_the_full_paths_bytes_and_errors(
    sender: str, recipients: list[str], options: list[str], extensions: frozenset[str], body: bytes | DataBody,
) -> None:
    session = PipelinedSession(EmailChannel(SmtpSettings(host="127.0.0.1", port=25, security="none")))
    smtp: Any = _Extensions(extensions)
    full = _outcome(lambda: session._envelope_checked(smtp, sender, recipients, body, options))
    assert _outcome(lambda: session._envelope(smtp, sender, recipients, body, options)) == full  # fills the cache
    assert _outcome(lambda: session._envelope(smtp, sender, recipients, body, tuple(options))) == full  # uses it
    plain = ["plain@example.org", "other@example.org"]
    assert (_outcome(lambda: session._envelope(smtp, sender, plain, body, options))
            == _outcome(lambda: session._envelope_checked(smtp, sender, plain, body, options)))
    other: Any = _Extensions(frozenset(extensions ^ {"size"}))  # a reconnect: the server's extensions decide
    assert (_outcome(lambda: session._envelope(other, sender, recipients, body, options))
            == _outcome(lambda: session._envelope_checked(other, sender, recipients, body, options)))


_MESSAGE = st.text(st.sampled_from("az09 .:-"), min_size=1, max_size=10).map(str.strip).filter(bool)


@settings(max_examples=200, deadline=None)
@given(replies=st.lists(st.tuples(st.sampled_from([250, 251, 354, 451, 550]), st.lists(_MESSAGE, min_size=1, max_size=3)),
                        min_size=1, max_size=8),
       cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=6))
def test_replies_are_cut_the_same_in_any_chunks(replies: list[tuple[int, list[str]]], cuts: list[int]) -> None:
    from aiosmtplib.response import SMTPResponse

    from crdswatch.channels.smtp_pipeline import _PipelineProtocol

    class Owner:
        def __init__(self) -> None:
            self.replies: list[SMTPResponse] = []
            self._protocol: object = None
            self._replying = self._flush_pending = False

        def _on_reply(self, response: SMTPResponse) -> None:
            self.replies.append(response)

        def _abort(self, exc: BaseException) -> None:
            raise AssertionError(exc)

    class Transport(asyncio.Transport):
        def get_extra_info(self, name: str, default: object = None) -> object:
            return default

    async def run() -> None:
        stream = b"".join(
            b"".join(f"{code}{'-' if i < len(lines) - 1 else ' '}{line}\r\n".encode() for i, line in enumerate(lines))
            for code, lines in replies)
        owner = Owner()
        protocol = _PipelineProtocol(Transport(), owner)  # type: ignore[arg-type]
        owner._protocol = protocol
        points = sorted({min(c, len(stream)) for c in cuts} | {0, len(stream)})
        for start, end in itertools.pairwise(points):
            protocol.data_received(stream[start:end])
        assert [(r.code, r.message) for r in owner.replies] == [(code, "\n".join(lines)) for code, lines in replies]
        assert not protocol._buffer

    asyncio.run(run())


async def test_what_replies_put_on_the_wire_goes_out_at_the_end_of_the_read() -> None:
    # The 354's body is written before data_received returns (no loop callback of its own), in
    # one write; the commands of a send wait for the loop's next turn, to share a write.
    from crdswatch.channels.smtp_pipeline import _PipelineProtocol

    class Transport(asyncio.Transport):
        def __init__(self) -> None:
            super().__init__()
            self.writes: list[bytes] = []

        def get_extra_info(self, name: str, default: object = None) -> object:
            return default

        def is_closing(self) -> bool:
            return False

        def write(self, data: bytes | bytearray | memoryview) -> None:
            self.writes.append(bytes(data))

    class Smtp:
        is_connected = True

        def supports_extension(self, name: str) -> bool:
            return name == "8bitmime"

        def close(self) -> None:
            pass

    session = PipelinedSession(EmailChannel(SmtpSettings(host="127.0.0.1", port=25, security="none")))
    transport = Transport()
    protocol = _PipelineProtocol(transport, session)
    session._smtp, session._protocol = Smtp(), protocol  # type: ignore[assignment]
    sends = [asyncio.create_task(session.send_raw(SENDER, [f"r{i}@example.org"], DataBody(b"hi %d\r\n" % i, 6)))
             for i in range(2)]
    for _ in range(3):
        await asyncio.sleep(0)
    assert transport.writes == [b"MAIL FROM:<notices@example.org> BODY=8BITMIME\r\nRCPT TO:<r0@example.org>\r\nDATA\r\n"]
    protocol.data_received(b"250 ok\r\n250 ok\r\n354 go\r\n")
    assert transport.writes[1:] == [(b"hi 0\r\n.\r\nMAIL FROM:<notices@example.org> BODY=8BITMIME\r\n"
                                     b"RCPT TO:<r1@example.org>\r\nDATA\r\n")]
    protocol.data_received(b"250 queued 0\r\n250 ok\r\n250 ok\r\n354 go\r\n")
    assert transport.writes[2:] == [b"hi 1\r\n.\r\n"]
    protocol.data_received(b"250 queued 1\r\n")
    results = await asyncio.gather(*sends)
    assert [(r.accepted, r.refused, r.reply) for r in results] == [
        (("r0@example.org",), {}, "queued 0"), (("r1@example.org",), {}, "queued 1")]
    assert not session._expect and session._watchdog is not None
    session._abort(RuntimeError("done"))


@settings(max_examples=200, deadline=None)
@given(busy=st.lists(st.integers(min_value=0, max_value=3), min_size=1, max_size=5), start=st.integers(0, 4),
       picks=st.integers(1, 6))
def test_pick_is_round_robin_among_the_least_busy(busy: list[int], start: int, picks: int) -> None:
    channel = EmailChannel(SmtpSettings(host="127.0.0.1", port=25, security="none"))
    pool = SmtpPool(channel, len(busy))
    for session, n in zip(pool.sessions, busy, strict=True):
        session.in_flight = n
    pool._next = expected_next = start % len(busy)
    for _ in range(picks):
        least = min(s.in_flight for s in pool.sessions)  # the rule, spelled out
        expected = next((expected_next + k) % len(busy) for k in range(len(busy))
                        if pool.sessions[(expected_next + k) % len(busy)].in_flight == least)
        session = pool.pick()
        assert session is pool.sessions[expected]
        expected_next = pool._next
        assert expected_next == (expected + 1) % len(busy)
        session.in_flight += 1
