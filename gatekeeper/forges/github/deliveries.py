"""The App's webhook delivery log: GitHub records every attempt to deliver a webhook to the App (kept
for a few days) and redelivers one when asked. GitHub never redelivers on its own, so a delivery the
receiver could not take (503 while Redis was down, a timeout) is recovered only through this log.

Both calls are made as the App itself (a JWT, corrected for GitHub's clock), never with a token."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import requests

from gatekeeper.forges.github.auth import InstallationTokens, refused
from gatekeeper.forges.port import Delivery, ForgeError

PER_PAGE = 100


def _when(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return datetime.min.replace(tzinfo=UTC)  # unreadable: treated as old
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def delivery(raw: dict[str, Any]) -> Delivery:
    code = int(raw.get("status_code") or 0)
    return Delivery(id=int(raw["id"]), guid=str(raw.get("guid") or ""), delivered_at=str(raw.get("delivered_at") or ""),
                    # GitHub: a failed delivery's `status` is not "OK"; the code says what the receiver answered.
                    ok=200 <= code < 300, redelivery=bool(raw.get("redelivery")), event=str(raw.get("event") or ""),
                    status=str(raw.get("status") or ""), status_code=code)


class GitHubDeliveryLog:
    def __init__(self, tokens: InstallationTokens, per_page: int = PER_PAGE):
        self.tokens = tokens
        self.per_page = per_page

    def recent(self, since: str, max_pages: int) -> list[Delivery]:
        """Newest first, following GitHub's `Link: rel="next"` cursor (opaque) until an entry older
        than `since` shows the rest is older still, or `max_pages` were read."""
        api = self.tokens.api_url
        floor = _when(since)
        url: str | None = f"{api}/app/hook/deliveries?per_page={self.per_page}"
        found: list[Delivery] = []
        for _ in range(max(1, max_pages)):
            if url is None:
                break
            try:
                resp = self.tokens.app_request("GET", url[len(api):])
            except requests.RequestException as exc:
                raise ForgeError(f"could not reach GitHub for the delivery log: {type(exc).__name__}") from None
            if resp.status_code != 200:
                raise refused(resp, "the delivery log")
            page = [delivery(raw) for raw in resp.json()]
            found.extend(d for d in page if _when(d.delivered_at) >= floor)
            if not page or any(_when(d.delivered_at) < floor for d in page):
                break
            url = resp.links.get("next", {}).get("url")
            # The JWT goes to the API GitHub answered from, never to a host a header names.
            if url is not None and not url.startswith(f"{api}/"):
                break
        return found

    def redeliver(self, attempt_id: int) -> None:
        try:
            resp = self.tokens.app_request("POST", f"/app/hook/deliveries/{int(attempt_id)}/attempts")
        except requests.RequestException as exc:
            raise ForgeError(f"could not reach GitHub to redeliver: {type(exc).__name__}") from None
        if resp.status_code != 202:
            raise refused(resp, f"to redeliver delivery {int(attempt_id)}")
