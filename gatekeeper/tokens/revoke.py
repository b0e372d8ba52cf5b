"""Revoking agent tokens: at the platform first, then in the record. One process revokes a token at a
time (a claim in Redis); a revocation the platform refuses or fails stays due and is retried by the
`expire` sweep with backoff, and the record says so."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis

from gatekeeper.forges.port import ForgeError, TokenIssuers
from gatekeeper.settings import Settings
from gatekeeper.state import tokens as store
from gatekeeper.tokens.audit import record_token

log = logging.getLogger(__name__)

SWEEP_BATCH = 100  # tokens one sweep revokes at most; the next sweep takes the rest


def cipher_for(settings: Settings) -> store.Cipher:
    """The keys agent tokens are encrypted with at rest (see `state.tokens.Cipher`)."""
    return store.cipher_for(settings)


@dataclass(frozen=True)
class Revoked:
    record: store.TokenRecord | None
    done: bool  # revoked at the platform (now or before)


def revoke(conn: redis.Redis, issuers: TokenIssuers, cipher: store.Cipher, token_id: str, reason: str,
           now: float | None = None) -> Revoked:
    now = time.time() if now is None else now
    record = store.load(conn, token_id)
    if record is None:
        return Revoked(None, False)
    if not record.live:
        return Revoked(record, True)
    if not store.claim(conn, token_id, now):
        return Revoked(store.load(conn, token_id), False)  # another process is revoking it right now
    blob = store.encrypted(conn, token_id)
    token = cipher.decrypt(blob) if blob is not None else None
    issuer = issuers(record.platform)
    failure = ""
    if token is None:
        failure = "the stored token cannot be decrypted (was AGENTGATE_TOKEN_KEYS rotated without the old key?)"
    elif issuer is None:
        failure = f"agentgate is not configured for {record.platform} here"
    else:
        try:
            issuer.revoke(record.repo, token, record.handle)
        except ForgeError as exc:
            failure = str(exc)
    if failure:
        attempts = store.mark_failed(conn, token_id, f"{reason}: revoking failed: {failure}", now)
        log.warning("revoking agent token %s failed (attempt %d, retried): %s", token_id, attempts, failure)
        record_token(conn, "revoke-failed", record, f"{reason}; {failure}")
        return Revoked(store.load(conn, token_id), False)
    store.mark_revoked(conn, token_id, reason, now)
    log.info("revoked agent token %s (%s, %s #%d): %s", token_id, record.agent, record.repo, record.task, reason)
    record_token(conn, "revoke", record, reason)
    return Revoked(store.load(conn, token_id), True)


def revoke_task(conn: redis.Redis, issuers: TokenIssuers, cipher: store.Cipher, platform: str, repo: str,
                task: int, reason: str, *, label: str | None = None, kind: str | None = None) -> list[str]:
    """Revoke every live token of a task (only those its `label` approved, when one is named; only tasks of
    `kind`, "issue" or "pull_request", when named: where the two are numbered apart, closing merge request
    !12 is not closing issue #12)."""
    done = []
    for token_id in store.of_task(conn, platform, repo, task):
        record = store.load(conn, token_id)
        if record is None or not record.live:
            continue
        if kind is not None and record.task_kind != kind:
            continue  # (where issues and pull requests share numbers, a number is only ever one of them)
        if label is not None and record.approved_label.lower() != label.lower():
            continue
        revoke(conn, issuers, cipher, token_id, reason)
        done.append(token_id)
    return done


def revoke_repo(conn: redis.Redis, issuers: TokenIssuers, cipher: store.Cipher, platform: str, repo: str,
                reason: str) -> list[str]:
    done = []
    for token_id in store.of_repo(conn, platform, repo):
        record = store.load(conn, token_id)
        if record is not None and record.live:
            revoke(conn, issuers, cipher, token_id, reason)
            done.append(token_id)
    return done


def sweep(conn: redis.Redis, issuers: TokenIssuers, cipher: store.Cipher, now: float | None = None) -> dict[str, int]:
    """Revoke the tokens whose ttl passed and retry failed revocations that are due."""
    now = time.time() if now is None else now
    revoked = failed = 0
    for token_id in store.due(conn, now, SWEEP_BATCH):
        record = store.load(conn, token_id)
        if record is None:
            conn.zrem(store.keys.AGENT_TOKENS_ACTIVE, token_id)  # its record expired; nothing left to revoke
            continue
        if record.state == store.REVOKING:
            store.release_stale_claim(conn, token_id)  # the process that claimed it died
        reason = "its ttl passed" if record.state == store.ACTIVE else (record.reason.split(":", 1)[0] or "retry")
        outcome = revoke(conn, issuers, cipher, token_id, reason, now)
        revoked += outcome.done
        failed += not outcome.done
    return {"revoked": revoked, "failed": failed}
