"""The `redis` session store: many servers share sessions through one Redis (redis-py).

A session is one Redis list, `eterna:session:{<id>}`, one JSON exchange per element; the list's order is the
session's total order. Redis runs one command (or script) at a time, so:
- an append is one Lua script, atomic: the exchange is pushed whole or not at all. It carries a fresh token, kept in
  the session's `...:ids` set by the same script, so a retry after a lost reply (the connection dropped after Redis
  ran the script) pushes nothing twice;
- a read is one transaction (MULTI: LLEN, LRANGE from the position on, EXEC), a consistent snapshot of the
  session: every append before it, none after, never half of one. A position is a list index; a list shorter than
  the position (Redis restarted without its data, or flushed) sends the reader back to its start.
Any server can take any turn of any session (no sticky routing): each reads what the others appended before it
builds the prompt. Durability is Redis's own: run it with `appendonly yes` (`appendfsync always` to lose no
acknowledged turn if it crashes). An unreachable Redis raises StoreUnavailableError naming the URL (its password
masked): at start the server refuses to start, mid-run the turn fails (503) with nothing written.
"""

from __future__ import annotations

import json
import uuid
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from app.memory import StoreUnavailableError

# KEYS: the session's list, its set of appended tokens; ARGV: the token, the record. Returns the new length, or 0
# when this token was appended already (a retried call).
_APPEND = """
if redis.call('SADD', KEYS[2], ARGV[1]) == 0 then return 0 end
return redis.call('RPUSH', KEYS[1], ARGV[2])
"""


def masked(url: str) -> str:
    """The URL with its password (if any) replaced by ***, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


class RedisStore:
    name = "redis"

    def __init__(self, url: str, timeout_s: float = 5.0, retries: int = 2, prefix: str = "eterna:session:"):
        """`timeout_s`: connect and command time limit; `retries`: reconnections per call before the call fails (a
        stale pooled connection after a Redis restart costs one)."""
        self.url, self.prefix = url, prefix
        self.client = redis.Redis.from_url(
            url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries))  # on connection errors and timeouts
        self._append = self.client.register_script(_APPEND)
        with self._guard("connect"):
            self.client.ping()

    @classmethod
    def configured(cls, memory, sessions: Path | None) -> RedisStore:
        return cls(memory.url)

    def key(self, session: str) -> str:
        return f"{self.prefix}{{{session}}}"  # {...}: a session's keys share one Redis Cluster slot

    @contextmanager
    def _guard(self, what: str):
        try:
            yield
        except redis.RedisError as e:
            raise StoreUnavailableError(f"session store redis at {masked(self.url)}: {what} failed ({e}); is Redis "
                                        f"running there? (memory.url)") from e

    def append(self, session: str, record: dict) -> None:
        self._push(session, record, uuid.uuid4().hex)

    def _push(self, session: str, record: dict, token: str) -> int:
        key = self.key(session)
        with self._guard("append"):
            return self._append(keys=[key, key + ":ids"], args=[token, json.dumps(record, ensure_ascii=False)])

    def read(self, session: str, position: int) -> tuple[list[dict], int]:
        key = self.key(session)
        with self._guard("read"):
            length, raw = self.client.pipeline(transaction=True).llen(key).lrange(key, position, -1).execute()
        if 0 < length < position:  # shorter than what was read before: Redis lost or flushed it; read it afresh
            return [], 0
        records = []
        for item in raw:
            try:
                records.append(json.loads(item))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue  # a malformed record is skipped, never fatal
        return records, position + len(raw)

    def close(self) -> None:
        self.client.close()
