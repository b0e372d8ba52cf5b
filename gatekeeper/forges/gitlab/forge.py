"""Opening a GitLab forge for one job.

GitLab has no App installations: agentgate acts with one token (`AGENTGATE_GITLAB_TOKEN`, a group or
project access token, or a service account's, with the `api` scope and at least the Developer role
so it may post commit statuses and notes, and Maintainer where it must remove labels on protected
work), against one GitLab (`AGENTGATE_GITLAB_URL`). A token cannot be narrowed per job, so
`capabilities` only say what the job will do; the token's scope and role are the limit."""

from __future__ import annotations

import redis

from gatekeeper.forges.gitlab.client import HTTP_TIMEOUT, GitLabForge
from gatekeeper.forges.gitlab.credentials import current_token
from gatekeeper.forges.port import Capability, ForgeError
from gatekeeper.settings import Settings


def open_gitlab(settings: Settings, conn: redis.Redis, project: str,
                capabilities: frozenset[Capability]) -> GitLabForge:
    """A forge for one project (its `path_with_namespace`, as a GitLab event's `repo`), and a sibling
    for reading the organisation's policy from another project of the same GitLab."""
    if not settings.gitlab_url or not settings.gitlab_token:
        raise ForgeError("AGENTGATE_GITLAB_URL and AGENTGATE_GITLAB_TOKEN are not configured")
    if not project:
        raise ForgeError("the delivery names no project")
    url, token = settings.gitlab_url, current_token(conn, settings)  # rotated on a schedule, when configured
    timeout = int(getattr(settings, "gitlab_timeout", 0) or HTTP_TIMEOUT)

    def sibling(other: str) -> GitLabForge:
        return GitLabForge(other, url, token, conn, timeout=timeout)

    return GitLabForge(project, url, token, conn, timeout=timeout, sibling=sibling)
