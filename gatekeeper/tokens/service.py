"""`POST /api/v1/tokens` and `DELETE /api/v1/tokens/<id>`: authenticate the agent, gather the facts the
grant needs (the default branch's `tokens` rules, the task as the platform shows it), decide (a pure
function, `core/grants.py`), then mint, record and audit. Nothing is asked of the platform for a
credential that does not authenticate, and no refusal mints a token."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

import redis
import requests
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from gatekeeper.core import grants
from gatekeeper.core.facts import TaskRef
from gatekeeper.forges.port import Forge, ForgeError, TokenIssuers
from gatekeeper.policy.model import DEFAULT_POLICY, InvalidPolicy, Policy
from gatekeeper.policy.schema import TokenLevel, TokenPermissionName
from gatekeeper.settings import Settings
from gatekeeper.state import keys, metrics
from gatekeeper.state import tokens as store
from gatekeeper.tokens.audit import record_refusal, record_token
from gatekeeper.tokens.authenticate import IssuerUnavailable, Unauthenticated, authenticate, bearer
from gatekeeper.tokens.revoke import revoke
from gatekeeper.worker.gather import forget_issue_events, identities, policy_at, task_ref

log = logging.getLogger(__name__)

MAX_BODY = 16 * 1024
# Identifying claims kept with a token's record (for the audit and `agentgate tokens list`), never all.
KEPT_CLAIMS = ("repository", "job_workflow_ref", "workflow_ref", "run_id", "ref", "environment", "project_path",
               "pipeline_id", "job_id")


def _no_dot_segments(value: str) -> str:
    if any(set(part) == {"."} for part in value.split("/")):
        raise ValueError("a repository path has no `.` or `..` segments")
    return value


class TokenRequest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # OWNER/NAME (GitLab: GROUP/SUBGROUP/PROJECT); no segment of dots alone, so it is never a path trick.
    repository: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)+$", max_length=255),
                          AfterValidator(_no_dot_segments)]
    task: int = Field(ge=1, le=2**31 - 1, strict=True)
    permissions: dict[TokenPermissionName, TokenLevel] | None = Field(default=None, min_length=1)
    platform: Literal["github", "gitlab"] = "github"


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any] | None
    headers: dict[str, str] = field(default_factory=dict)
    platform: str = "-"  # for metrics: the validated request's platform


def refused(status: int, error: str, reason: str) -> Answer:
    return Answer(status, {"error": error, "reason": reason})


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


class TokenService:
    def __init__(self, conn: redis.Redis, settings: Settings, issuers: TokenIssuers,
                 cipher: Callable[[], store.Cipher], *, session: requests.Session | None = None,
                 clock: Callable[[], float] = time.time):
        self.conn, self.settings, self.issuers = conn, settings, issuers
        self._cipher, self._session, self.clock = cipher, session, clock

    def _authenticate(self, authorization: str | None) -> grants.AgentIdentity | Answer:
        try:
            return authenticate(self.conn, self.settings, bearer(authorization), session=self._session,
                                now=self.clock())
        except Unauthenticated as exc:
            return Answer(401, {"error": "unauthenticated", "reason": exc.reason},
                          {"WWW-Authenticate": 'Bearer realm="agentgate"'})
        except IssuerUnavailable as exc:
            return refused(503, "unavailable", str(exc))

    # ---- POST /api/v1/tokens
    def issue(self, authorization: str | None, body: bytes) -> Answer:
        answer = self._answer(authorization, body)
        # The platform label comes from a validated request only ("-" when there was none to read).
        metrics.incr(self.conn, "agentgate_token_requests", answer.platform, str(answer.status))
        return answer

    def _answer(self, authorization: str | None, body: bytes) -> Answer:
        agent = self._authenticate(authorization)
        if isinstance(agent, Answer):
            return agent
        if len(body) > MAX_BODY:
            return refused(400, "malformed", f"the body is over {MAX_BODY} bytes")
        try:
            request = TokenRequest.model_validate(json.loads(body or b"null"))
        except (ValueError, ValidationError) as exc:
            return refused(400, "malformed", _explain(exc))
        try:
            return replace(self._issue(agent, request), platform=request.platform)
        except redis.RedisError:
            log.exception("Redis failed while issuing an agent token")
            return refused(503, "unavailable", "agentgate's store is unavailable; retry later")

    def _issue(self, agent: grants.AgentIdentity, request: TokenRequest) -> Answer:
        # An ID token may ask more than once while it is valid (the interface checks it, not its use count):
        # what bounds a replayed copy is the cap on live tokens per agent and repository, enforced here one
        # request at a time.
        lock = keys.agent_token_lock(request.platform, request.repository, agent.principal)
        if not self.conn.set(lock, "1", nx=True, ex=keys.AGENT_TOKEN_LOCK_TTL):
            return Answer(429, {"error": "busy", "reason": "another request of this agent for this repository is "
                                                          "being served; retry when it is answered"},
                          {"Retry-After": "5"})
        try:
            return self._issue_locked(agent, request)
        finally:
            self.conn.delete(lock)

    def _issue_locked(self, agent: grants.AgentIdentity, request: TokenRequest) -> Answer:
        repo, number, platform = request.repository, request.task, request.platform
        asked = ({str(k): str(v) for k, v in request.permissions.items()}
                 if request.permissions is not None else None)

        def refuse(code: str, reason: str) -> Answer:
            record_refusal(self.conn, platform, repo, number, agent, asked, code, reason)
            log.info("refused an agent token: %s asked for %s #%d: %s", agent.principal, repo, number, reason)
            return refused(403, code, reason)

        issuer = self.issuers(platform)
        if issuer is None:
            return refused(503, "unavailable", f"agentgate is not configured for {platform}")
        try:
            cipher = self._cipher()
            cipher.encrypt("probe")  # a token that could not be stored encrypted is never minted
        except ValueError as exc:
            log.error("agent tokens cannot be stored: %s", exc)
            return refused(503, "unavailable", "agentgate cannot store tokens encrypted (its token keys are "
                                               "missing or invalid); the operator must fix AGENTGATE_TOKEN_KEYS")
        try:
            forge = issuer.reader(repo)
            # Read fresh, not through the branch-head cache: a grant removed from the default branch stops now.
            head = forge.branch_sha(forge.default_branch())
            policy = policy_at(self.conn, forge, head) if head else DEFAULT_POLICY
        except ForgeError as exc:
            if exc.status == 404:
                return refuse("not-installed", f"agentgate is not installed on {repo} (or it does not exist)")
            return refused(503, "unavailable", f"{platform} could not be asked about {repo}: {exc}")
        if isinstance(policy, InvalidPolicy):
            return refuse("policy-invalid", "the default branch's .agentgate.yml is invalid; no token is issued "
                                            "until it is fixed (`agentgate check-config`)")
        # Only a rule that names this agent is worth reading the task for.
        task: TaskRef | None = None
        if not any(grants.matches(m, agent) for rule in policy.tokens for m in rule.agents):
            decision = grants.decide(policy.tokens, agent, asked, None, _approval(policy))
        else:
            try:
                task = self._task(forge, policy, number)
            except ForgeError as exc:
                return refused(503, "unavailable", f"{platform} could not be asked about task #{number}: {exc}")
            decision = grants.decide(policy.tokens, agent, asked, task, _approval(policy))
        if isinstance(decision, grants.Refusal):
            return refuse(decision.code, decision.reason)
        if store.live_count(self.conn, platform, repo, agent.principal) >= self.settings.max_active_tokens:
            reason = (f"this agent already holds {self.settings.max_active_tokens} live tokens for {repo}; give "
                      "one back (DELETE /api/v1/tokens/ID) or wait for one to expire")
            record_refusal(self.conn, platform, repo, number, agent, asked, "too-many", reason)
            return Answer(429, {"error": "too-many", "reason": reason}, {"Retry-After": "60"})

        token_id, now = store.new_id(), self.clock()
        try:
            minted = issuer.mint(repo, decision.permissions, decision.ttl, name=f"agentgate {token_id}")
        except ForgeError as exc:
            if exc.status in (400, 422):  # the platform will not grant these to agentgate itself
                return refuse("platform-refused", f"{platform} refused these permissions for agentgate itself: {exc}")
            return refused(503, "unavailable", f"{platform} could not mint a token: {exc}")
        record = store.TokenRecord(
            id=token_id, platform=platform, repo=repo, task=number, agent=agent.principal,
            requester=decision.approved_by, permissions=dict(decision.permissions),
            issued_at=now, expires_at=min(now + decision.ttl, minted.expires_at), sha256=store.digest(minted.token),
            approved_label=decision.approved_label, handle=minted.handle,
            claims={k: v for k, v in agent.claims.items() if k in KEPT_CLAIMS},
            task_kind="pull_request" if task is not None and task.is_pull_request else "issue")
        try:
            store.save(self.conn, record, cipher.encrypt(minted.token), now)
        except Exception:
            # Unrecorded, the token could not be revoked by agentgate: take it back before answering.
            try:
                issuer.revoke(repo, minted.token, minted.handle)
            except ForgeError:
                log.error("agent token %s could not be recorded nor revoked; it ends at the platform's expiry",
                          token_id)
            raise
        # The task may have closed (or lost its label) while the token was minted, before the record existed
        # for that delivery to find: look once more, now that it does.
        try:
            now_task = self._task(forge, policy, number)
            still = grants.task_approval(now_task, _approval(policy)) if now_task is not None else None
        except ForgeError:
            still = None
        if still is None:
            revoke(self.conn, self.issuers, cipher, token_id, "the task closed or lost its approval while issuing")
            return refuse("task-closed", f"task #{number} closed or lost its approval while the token was issued")
        # The grant as decided (GitHub adds `metadata: read` to every token it mints; docs/tokens.md says so).
        record_token(self.conn, "grant", record, f"ttl={decision.ttl}s")
        log.info("issued agent token %s to %s for %s #%d (%s), approved by %s", token_id, agent.principal, repo,
                 number, ",".join(sorted(record.permissions)), decision.approved_by)
        return Answer(201, {"id": token_id, "token": minted.token, "expires_at": _iso(record.expires_at),
                            "repository": repo, "task": number, "permissions": record.permissions,
                            "platform": platform})

    def _task(self, forge: Forge, policy: Policy, number: int) -> TaskRef | None:
        """The task as the platform shows it now: its label history read fresh, not from the cache an
        evaluation may have filled before a label was taken back."""
        forget_issue_events(self.conn, forge.platform, forge.repo, number)
        return task_ref(self.conn, forge, number, identities(policy), issues_only=False)

    # ---- DELETE /api/v1/tokens/<id>
    def give_back(self, authorization: str | None, token_id: str) -> Answer:
        agent = self._authenticate(authorization)
        if isinstance(agent, Answer):
            return agent
        try:
            record = store.load(self.conn, token_id) if token_id.startswith("tok_") and len(token_id) < 64 else None
            # Someone else's token is as unknown as a made-up id: ids are not secrets, but which exist is none
            # of another agent's business.
            if record is None or record.agent != agent.principal:
                return refused(404, "not-found", "no such token for this agent")
            outcome = revoke(self.conn, self.issuers, self._cipher(), token_id, "given back by the agent")
        except redis.RedisError:
            return refused(503, "unavailable", "agentgate's store is unavailable; retry later")
        if not outcome.done:
            return refused(503, "unavailable", "the platform did not confirm the revocation; agentgate retries it")
        return Answer(204, None)


def _approval(policy: Any) -> grants.TaskApproval:
    return grants.TaskApproval(tuple(policy.task.approved_labels), policy.task.min_permission)


def _explain(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "body"
        return f"{where}: {first.get('msg', 'invalid')}"
    return "the body is not JSON"
