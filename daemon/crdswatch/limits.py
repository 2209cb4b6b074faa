"""Every bound on outside input, in one place (pure: no I/O, no imports beyond the standard library).

The `[limits]` table of the configuration (config/models.py `LimitsSettings`) has one key per
field here, with these defaults; `config/crdswatch.example.toml` documents each, and the README's
"Limits and failure behaviour" says what the operator sees when one trips. Inner layers take a
`Limits` (or a single value from it) so they stay free of the configuration layer.

Adding a bound: a field here (with a comment saying why that default), the same key in
`LimitsSettings`, a documented line in the example TOML and a README row; tests/test_limits.py
checks that the four agree.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_LIMITS", "MIB", "Limits", "stale_after"]

MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Limits:
    # -- CRDS server replies (size) ---------------------------------------------------------------
    # One JSON-RPC reply body. The largest real ones (context history, a catalogue lookup of a few
    # thousand files) are a few MB; a bigger body is aborted while streaming, never buffered.
    crds_reply_max_bytes: int = 16 * MIB
    # One mapping download, checked again before parsing. The largest real mapping is 370 KB
    # (hst_synphot_thruput_0004.rmap), a typical one a few KB.
    mapping_max_bytes: int = 1 * MIB
    # Items (counted as commas) in one mapping text, checked before parsing: Python's parser needs
    # ~1 KB of memory per item, so 130k tiny keys in 1 MB would take 4 s and 270 MB. The largest
    # real mapping has 9,082.
    mapping_max_items: int = 30_000
    # The bytes read from a reference file to find its primary FITS header (36 blocks of 2880).
    fits_header_max_bytes: int = 36 * 2880

    # -- time ------------------------------------------------------------------------------------
    # One HTTP exchange with a CRDS server, connect to last byte: a reply trickled a byte at a time
    # cannot outlive it (the source's `timeout` only bounds each gap between reads).
    request_deadline: float = 60.0
    # One whole poll of one source: every request, download, parse and diff of that cycle.
    poll_deadline: float = 900.0
    # An outbox drain that makes no progress (no row claimed, no outcome recorded) this long is cut
    # short and counts as failed. A drain goes on while rows are due, so its length is not bounded
    # by this; each send is (send_deadline), and so is every database call.
    drain_deadline: float = 600.0
    # The longest wait a peer's Retry-After (a 429 or 503 from Slack or a webhook receiver) may
    # impose on an outbox row; a bigger hint (999999999 s, an HTTP date in year 9999, 1e20) is cut
    # to this. An hour is longer than any real rate limit window we have seen.
    retry_after_max: float = 3600.0
    # One whole send of one notice to one peer (an SMTP transaction, a Slack or webhook POST),
    # connect to last byte: a reply trickled a byte at a time cannot outlive it (the SMTP and
    # HTTP timeouts only bound each wait between reads). The row is retried later, with a reason.
    send_deadline: float = 60.0
    # A source whose last successful poll is older than stale_polls x its poll_interval makes
    # /healthz answer 503 and alerts, whatever the failure counters say.
    stale_polls: int = 3
    # A channel kind (email, slack, webhook) with rows waiting for a retry and no successful send
    # for this long makes /healthz answer 503 and alerts once: a peer that times out or 5xx's every
    # send would otherwise stay silent until its rows die, hours of backoff later. Half an hour
    # outlasts a mail host's restart or a receiver's deploy, and is well before the first deaths.
    channel_stale_after: float = 1800.0
    # An idle poll costs one request (the default context); every history_every-th poll also reads
    # the server's context history, so a change that came and went between two polls (A -> B -> A)
    # or a backdated entry is seen within history_every x poll_interval.
    history_every: int = 12

    # -- mapping graphs and CPU ---------------------------------------------------------------------
    # Distinct mappings one diff may read (both contexts together). A real JWST or HST context
    # names a few hundred.
    max_mappings_per_context: int = 5000
    # Mapping downloads in flight at once per source (3,000 changed rmaps wait their turn).
    download_concurrency: int = 8
    # CPU time (seconds) one regular-expression rule key may spend matching one parameter value;
    # a key that runs out is treated as "may match" (a notice too many, never one missed).
    regex_timeout: float = 0.05

    # -- the state database (seconds; 0 = no limit) -------------------------------------------------
    # Opening a connection: a PostgreSQL that is unreachable, or accepts and never answers.
    db_connect_timeout: float = 5.0
    # One PostgreSQL statement (server-side statement_timeout); schema migrations are exempt.
    db_statement_timeout: float = 30.0
    # Waiting for a lock someone else holds: SQLite's busy timeout (another process writing) and
    # PostgreSQL's lock_timeout. The daemon awaits every call off its event loop, and each call
    # also ends after db_connect_timeout + max(db_statement_timeout, db_lock_timeout) + 5 s.
    db_lock_timeout: float = 5.0
    # -- the bridge (upstream archive feeds) -------------------------------------------------------
    # One archive feed body (RSS/Atom). LISTSERV feeds list the last few dozen posts: well under 1 MB.
    feed_max_bytes: int = 4 * MIB
    # One whole feed fetch, connect to last byte.
    feed_deadline: float = 60.0
    # Consecutive failed polls of one archive feed before the operator is alerted (once per run
    # of failures; a good poll starts the count again).
    feed_alert_after: int = 3

    # -- the web pages ---------------------------------------------------------------------------
    # Values offered per match parameter (EXP_TYPE, FILTER, ...) on a list's subscribe form, the
    # ones most rules select on first; the rest are left out (and counted on the page).
    narrowing_values: int = 30
    # Seconds a /lists or /manage request waits for the current context's mappings the first time
    # it needs them; after that the page shows what is at hand and the download goes on.
    narrowing_wait: float = 5.0

    # -- program subscriptions (the server's affected datasets) ------------------------------------
    # Tries at get_affected_datasets per context switch before the program notices say the server
    # has not computed it: the server's reprocessing job runs a while after the context appears.
    affected_attempts: int = 8
    # Seconds before the second try; each later wait doubles up to affected_backoff_max (the
    # defaults: 5, 10, 20, 40 min, then hourly: about 4 h over 8 tries).
    affected_backoff: float = 300.0
    affected_backoff_max: float = 3600.0
    # Dataset ids listed per program in one notice (a switch can affect thousands); the count
    # given is always the full one.
    affected_ids_shown: int = 50


DEFAULT_LIMITS = Limits()


def stale_after(limits: Limits, poll_interval: float) -> float:
    """Seconds without a successful poll after which a source counts as stale (/healthz 503)."""
    return limits.stale_polls * poll_interval
