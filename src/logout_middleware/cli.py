"""The operator's command line: revoke, read the audit stream, check the revocation state.

Installed as ``logout-middleware`` (also ``python -m logout_middleware``) and configured
by the same ``LOGOUT_*`` variables as the middleware, above all ``LOGOUT_REDIS_URL``::

    export LOGOUT_REDIS_URL=redis://localhost:6379/0

    # Log user 42 out everywhere: every session in its index, every JWT issued so far.
    logout-middleware revoke --subject 42

    # End one session or one bearer token. The secret is read from stdin (one line),
    # so it never lands in the shell history or in ``ps``.
    logout-middleware revoke --token < token.txt
    printf '%s\\n' "$SID" | logout-middleware revoke --session --json
    # --session and --token together read two lines: the session id, then the token.

    # The audit stream: the last 20 entries, oldest first; filters; JSON lines.
    logout-middleware events
    logout-middleware events --subject 42 --type session_end --count 100
    logout-middleware events --json | jq .subject
    logout-middleware events -f            # keep printing new entries until Ctrl-C

    # Is Redis reachable, and how much revocation state does it hold?
    logout-middleware status
    logout-middleware status --json

Secrets are never printed: sessions and tokens appear as the SHA-256 hex digests that
the denylist keys and the audit stream use. Output goes to stdout, errors to stderr.

Exit codes: ``0`` done; ``1`` Redis unreachable or it refused the work; ``2`` a usage
error or a bad configuration (the message names the ``LOGOUT_*`` variable).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timezone
from typing import Any, get_args

import click
import redis

from . import __version__
from .admin import RevocationFailed, revoke
from .config import ConfigError, LogoutConfig
from .core.revocation import RevocationKeys
from .events import EventType, LogoutEvent
from .topology import REDIS_ERRORS, close_client, make_client, probe, redact_url

__all__ = ["cli", "main"]

#: How long one ``XREAD BLOCK`` of ``events --follow`` waits, seconds; the socket's read
#: timeout is longer, so a quiet stream is not mistaken for a dead server.
FOLLOW_BLOCK = 5.0
#: The name the command line's Redis connections carry in ``CLIENT LIST``.
CLIENT_NAME = "logout-middleware-cli"
#: ``SCAN COUNT`` hint used by ``status``.
SCAN_COUNT = 1000

#: One audit stream entry: its stream id and its fields, as text.
Entry = tuple[str, dict[str, str]]


class ConfigurationError(click.ClickException):
    """A bad or missing ``LOGOUT_*`` setting: printed to stderr, exit code 2."""

    exit_code = 2


class Failed(click.ClickException):
    """Redis unreachable or refusing: printed to stderr, exit code 1."""

    exit_code = 1


def _config() -> tuple[LogoutConfig, str]:
    """``LogoutConfig.from_env()`` and its Redis URL; a :class:`ConfigError` or no
    ``LOGOUT_REDIS_URL`` becomes exit code 2."""
    try:
        config = LogoutConfig.from_env()
    except ConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    if not config.redis_url:
        raise ConfigurationError(
            "LOGOUT_REDIS_URL: set it to the Redis that holds the revocation state"
        )
    return config, config.redis_url


def _client(config: LogoutConfig, url: str, *, read_timeout: float | None = None) -> Any:
    """A sync client for ``LOGOUT_REDIS_URL`` (one Redis, a Sentinel's primary or a
    Cluster: :func:`.topology.make_client`) with ``LOGOUT_REDIS_TIMEOUT`` (or
    ``read_timeout`` for reads that block). ``url`` is the same URL, for messages."""
    return make_client(
        config.redis_target(),
        asyncio=False,
        timeout=config.redis_timeout,
        read_timeout=read_timeout,
        client_name=CLIENT_NAME,
    )


def redact(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for messages and ``status``): in
    the user part and in a ``password=`` query parameter."""
    return redact_url(url)


def printable(text: str) -> str:
    """``text`` with control and other non-printable characters escaped (``\\x1b``), so
    that a hostile subject (a JWT's ``sub``) cannot drive the operator's terminal."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def _plural(count: int, word: str, words: str = "") -> str:
    return f"{count} {word}" if count == 1 else f"{count} {words or word + 's'}"


def _iso(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, tz=timezone.utc).isoformat(timespec="seconds")


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _read_secret(what: str, option: str) -> str:
    """One line from stdin, stripped; a hidden prompt (on stderr) when stdin is a terminal.

    :raises click.UsageError: when the line is empty (exit code 2).
    """
    stdin = sys.stdin
    if stdin.isatty():
        line = str(click.prompt(what, hide_input=True, err=True, default="", show_default=False))
    else:
        line = stdin.readline()
    value = line.strip()
    if not value:
        raise click.UsageError(f"{option}: expected the {what.lower()} on stdin, got an empty line")
    return value


def summary(event: LogoutEvent, *, subject: str | None, session: bool, token: bool) -> str:
    """The one-line human summary of a revocation (hashes only, never a secret), e.g.
    ``revoked subject 42: 3 sessions, 0 tokens; JWTs issued at or before
    2026-01-02T03:04:05+00:00 are refused``."""
    targets = []
    if subject is not None:
        targets.append(f"subject {printable(subject)}")
    if session:
        targets.append(f"session sha256:{event.session_id_hash}")
    if token:
        targets.append(f"token sha256:{event.token_hash}")
    line = (
        f"revoked {', '.join(targets)}: {_plural(event.sessions_ended, 'session')}, "
        f"{_plural(event.tokens_ended, 'token')}"
    )
    if event.not_before is not None:
        line += f"; JWTs issued at or before {_iso(event.not_before)} are refused"
    return line


@click.group(
    name="logout-middleware",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="logout-middleware")
def cli() -> None:
    """Revoke subjects, sessions and tokens; read the audit stream; check Redis.

    Configured by the LOGOUT_* environment variables, as the middleware is (at least
    LOGOUT_REDIS_URL). Exit codes: 0 done, 1 Redis unreachable or refusing, 2 usage or
    configuration error.
    """


@cli.command("revoke")
@click.option("--subject", metavar="ID", help="Log this user id out everywhere.")
@click.option("--session", is_flag=True, help="Read a session id from stdin and end it.")
@click.option("--token", is_flag=True, help="Read a bearer token from stdin and revoke it.")
@click.option("--json", "as_json", is_flag=True, help="Print the audit event as JSON.")
def revoke_command(subject: str | None, session: bool, token: bool, as_json: bool) -> None:
    """Revoke a subject, a session and/or a token, in one transaction (two pipelines
    on a Redis Cluster).

    Session ids and tokens are read from stdin, one line each (session first when both
    are given), so they never appear in the shell history or the process list. Prints
    a one-line summary, or with --json the audit event's fields as one JSON object.
    Exit 1 when Redis fails (the revocation is not in force: run it again), 2 on a usage
    or configuration error.
    """
    if subject is None and not session and not token:
        raise click.UsageError("give --subject ID, --session or --token (or several)")
    config, _ = _config()
    session_id = _read_secret("Session id", "--session") if session else None
    raw_token = _read_secret("Token", "--token") if token else None
    try:
        event = revoke(subject=subject, session_id=session_id, token=raw_token, config=config)
    except ConfigError as exc:
        raise ConfigurationError(str(exc)) from None
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    except (RevocationFailed, *REDIS_ERRORS) as exc:
        raise Failed(f"revocation failed, not in force (run it again): {exc}") from None
    if as_json:
        click.echo(json.dumps({**event.to_fields(), "store": event.store}))
    else:
        click.echo(summary(event, subject=subject, session=session, token=token))


def _entry(entry_id: Any, fields: Any) -> Entry:
    return _text(entry_id), {_text(k): _text(v) for k, v in dict(fields or {}).items()}


def _previous(entry_id: str) -> str:
    """The greatest stream id below ``entry_id`` (``XREVRANGE`` end bound, inclusive;
    the ``(`` exclusive form needs Redis 6.2)."""
    ms, _, seq = entry_id.partition("-")
    if int(seq) > 0:
        return f"{ms}-{int(seq) - 1}"
    return f"{int(ms) - 1}-{2**64 - 1}"


def last_entries(
    client: redis.Redis, stream: str, count: int, keep: Callable[[Entry], bool]
) -> tuple[list[Entry], str]:
    """The last ``count`` entries of ``stream`` that ``keep`` accepts, oldest first,
    and the id of the stream's newest entry (``0-0`` when empty), from where to follow.

    Reads backwards with ``XREVRANGE`` in pages until it has found ``count``.
    """
    newest_page = client.xrevrange(stream, count=1)
    if not newest_page:
        return [], "0-0"
    newest = _text(newest_page[0][0])
    found: list[Entry] = []
    end = newest
    page_size = max(count, 100)
    while len(found) < count:
        page = client.xrevrange(stream, max=end, min="-", count=page_size) or []
        for entry_id, fields in page:
            entry = _entry(entry_id, fields)
            if keep(entry):
                found.append(entry)
                if len(found) == count:
                    break
        if len(page) < page_size:
            break
        end = _previous(_text(page[-1][0]))
    found.reverse()
    return found, newest


def format_entry(entry: Entry) -> str:
    """One human line: time, type, reason, subject, counts, store (control characters
    escaped)."""
    _, fields = entry
    kind = printable(fields.get("type", "")) or "-"
    reason = printable(fields.get("reason", "")) or "-"
    at = fields.get("at", "")
    try:
        at = datetime.fromisoformat(at).astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    except ValueError:
        at = printable(at) or "-"
    subject = printable(fields.get("subject", "")) or "-"
    return (
        f"{at}  {kind:<17} {reason:<11} "
        f"subject={subject} sessions={printable(fields.get('sessions_ended', '0'))} "
        f"tokens={printable(fields.get('tokens_ended', '0'))} "
        f"store={printable(fields.get('store', '-'))}"
    )


def _emit(entries: Iterable[Entry], as_json: bool) -> None:
    for entry in entries:
        entry_id, fields = entry
        click.echo(json.dumps({"entry_id": entry_id, **fields}) if as_json else format_entry(entry))


def _stream_replies(reply: Any) -> Iterable[tuple[Any, Any]]:
    """``XREAD``'s reply as (stream, entries) pairs, in RESP2 (list) or RESP3 (dict)."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return list(reply.items())
    return [(item[0], item[1]) for item in reply]


def follow(
    client: redis.Redis,
    stream: str,
    after: str,
    keep: Callable[[Entry], bool],
    as_json: bool,
) -> None:
    """Print the entries added to ``stream`` after id ``after``, as they come, forever
    (``XREAD BLOCK`` of :data:`FOLLOW_BLOCK` seconds at a time).

    :raises redis.RedisError: when Redis fails.
    """
    last = after
    while True:
        reply = client.xread({stream: last}, count=100, block=int(FOLLOW_BLOCK * 1000))
        for _name, entries in _stream_replies(reply):
            for entry_id, fields in entries:
                entry = _entry(entry_id, fields)
                last = entry[0]
                if keep(entry):
                    _emit([entry], as_json)


@cli.command("events")
@click.option("--follow", "-f", "follow_", is_flag=True, help="Keep printing new entries.")
@click.option("--subject", metavar="ID", help="Only this subject's entries.")
@click.option(
    "--type",
    "type_",
    type=click.Choice(get_args(EventType)),
    help="Only entries of this type.",
)
@click.option(
    "--count",
    "-n",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="How many past entries to print (oldest first).",
)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
def events_command(
    follow_: bool, subject: str | None, type_: str | None, count: int, as_json: bool
) -> None:
    """Print the audit stream (LOGOUT_EVENTS_STREAM), the last --count entries oldest first.

    Human lines show time, type, reason, subject, counts and store; --json prints each
    entry's fields and its "entry_id". With --follow, then waits for new entries until
    Ctrl-C (exit 0). Exit 1 when Redis fails, 2 when no stream is configured.
    """
    config, url = _config()
    stream = config.events_stream
    if not stream:
        raise ConfigurationError("LOGOUT_EVENTS_STREAM: is empty, so no audit stream is written")

    def keep(entry: Entry) -> bool:
        fields = entry[1]
        if subject is not None and fields.get("subject") != subject:
            return False
        return type_ is None or fields.get("type") == type_

    read_timeout = FOLLOW_BLOCK + max(config.redis_timeout, 1.0) if follow_ else None
    client = _client(config, url, read_timeout=read_timeout)
    try:
        entries, newest = last_entries(client, stream, count, keep)
        _emit(entries, as_json)
        if follow_:
            follow(client, stream, newest, keep, as_json)
    except KeyboardInterrupt:
        pass
    except REDIS_ERRORS as exc:
        raise Failed(f"Redis at {redact(url)} failed: {_reason(exc)}") from None
    finally:
        close_client(client)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def state(client: redis.Redis, config: LogoutConfig, url: str) -> dict[str, Any]:
    """The revocation state's size, by ``SCAN`` (never ``KEYS``) and ``XLEN``::

        {"redis": "ok", "url": <redacted URL>, "revoked_tokens": int,
         "session_tombstones": int, "not_before_subjects": int,
         "events_stream": str | None, "events": int | None}

    :raises redis.RedisError: when Redis fails (on a cluster, also redis-py's
        ``RedisClusterException``).
    """
    client.ping()
    tokens, tombstones, not_before = (
        sum(1 for _ in client.scan_iter(match=glob, count=SCAN_COUNT))
        for glob in RevocationKeys(config).globs()
    )
    stream = config.events_stream or None
    return {
        "redis": "ok",
        "url": redact(url),
        "revoked_tokens": tokens,
        "session_tombstones": tombstones,
        "not_before_subjects": not_before,
        "events_stream": stream,
        "events": int(client.xlen(stream)) if stream else None,
    }


@cli.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status_command(as_json: bool) -> None:
    """Check that Redis answers and count the revocation state.

    Counts revoked tokens, session tombstones, subjects with a not-before (by SCAN of
    every primary, on a cluster) and the audit stream's length, and says which topology,
    version and persistence (aof, rdb, aof+rdb, none, unknown) Redis has. --json prints
    {"redis": "ok", "url", "revoked_tokens", "session_tombstones", "not_before_subjects",
    "events_stream", "events", "topology", "version", "persistence"}. Exit 1 (a
    message on stderr; with --json also {"redis": "unreachable", "error"} on stdout)
    when Redis is unreachable, 2 on a configuration error.
    """
    config, url = _config()
    client = _client(config, url)
    try:
        found = state(client, config, url)
    except REDIS_ERRORS as exc:
        message = f"Redis at {redact(url)} unreachable: {_reason(exc)}"
        if as_json:
            click.echo(json.dumps({"redis": "unreachable", "error": message}))
        raise Failed(message) from None
    finally:
        close_client(client)
    target = config.redis_target()
    health = probe(target, timeout=config.redis_timeout)
    found.update(topology=target.kind, version=health.version, persistence=health.persistence)
    if as_json:
        click.echo(json.dumps(found))
        return
    stream = found["events_stream"]
    click.echo(
        f"redis: ok ({found['url']}; {target.kind} Redis {health.version}, "
        f"persistence: {health.persistence})"
    )
    if health.persistence == "none":
        click.echo("warning: neither AOF nor RDB: a restart of Redis un-revokes everything")
    click.echo(f"revoked tokens: {found['revoked_tokens']}")
    click.echo(f"session tombstones: {found['session_tombstones']}")
    click.echo(f"subjects with a not-before: {found['not_before_subjects']}")
    if stream:
        click.echo(
            f"events stream {printable(stream)}: {_plural(found['events'], 'entry', 'entries')}"
        )
    else:
        click.echo("events stream: off (LOGOUT_EVENTS_STREAM is empty)")


def main(argv: Sequence[str] | None = None) -> None:
    """The console script ``logout-middleware`` and ``python -m logout_middleware``.

    :param argv: the arguments; ``sys.argv[1:]`` when None. Exits the process with the
        command's exit code (0, 1 or 2).
    """
    cli.main(args=list(argv) if argv is not None else sys.argv[1:], prog_name="logout-middleware")
