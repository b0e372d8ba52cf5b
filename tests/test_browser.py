"""The details page and the dashboard in a real headless Chromium (Debian's `chromium`, driven by
Selenium through `chromedriver`), served by `agentgate serve` as a real process over a seeded Redis.

Screenshots go to tests/artifacts/ (kept out of git); docs/screenshots/ holds the copies the docs show."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import redis
import requests

from tests.browser import (
    ADMIN_TOKEN,
    COPILOT,
    DEVIN,
    XSS_IMG,
    XSS_SCRIPT,
    Seeded,
    chrome,
    chromium_missing,
    desktop,
    phone,
    screenshot,
    seed,
    served,
)
from tests.e2e import E2E_REDIS_URL

_missing = chromium_missing()
pytestmark = [pytest.mark.e2e, pytest.mark.skipif(_missing is not None, reason=f"no browser: {_missing}")]


@pytest.fixture(scope="module")
def store() -> Iterator[tuple[redis.Redis, Seeded]]:
    conn = redis.Redis.from_url(E2E_REDIS_URL)
    conn.flushdb()
    yield conn, seed(conn)
    conn.flushdb()


@pytest.fixture(scope="module")
def site(store, tmp_path_factory) -> Iterator[str]:
    with served(tmp_path_factory.mktemp("browser"), E2E_REDIS_URL) as server:
        yield server.url


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    driver = chrome()
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def page(browser) -> Iterator[Any]:
    """The browser at desktop size, signed out, no dialog open."""
    desktop(browser)
    browser.delete_all_cookies()
    yield browser
    assert_no_alert(browser)


def wait_for(driver: Any, css: str, text: str = "", seconds: float = 10) -> Any:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    located = (By.CSS_SELECTOR, css)
    condition = ec.text_to_be_present_in_element(located, text) if text else ec.presence_of_element_located(located)
    WebDriverWait(driver, seconds).until(condition)
    return driver.find_element(*located)


def visible_text(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return " ".join(driver.find_element(By.TAG_NAME, "body").text.split())


def assert_no_alert(driver: Any) -> None:
    from selenium.common.exceptions import NoAlertPresentException

    with pytest.raises(NoAlertPresentException):
        driver.switch_to.alert  # noqa: B018 - the lookup is the check


def assert_nothing_injected(driver: Any) -> None:
    """No element an attacker's markup would have made, and no script ran."""
    counts = driver.execute_script(
        "return [document.querySelectorAll('img[src=x]').length, document.querySelectorAll('img').length,"
        " document.scripts.length, document.querySelectorAll('[onerror]').length, document.title]")
    assert counts[:4] == [0, 0, 0, 0]
    assert counts[4] != "pwned"
    assert_no_alert(driver)


def no_horizontal_scroll(driver: Any) -> tuple[int, int]:
    return tuple(driver.execute_script(
        "return [document.documentElement.scrollWidth, window.innerWidth]"))  # type: ignore[return-value]


def sign_in(driver: Any, site: str, token: str = ADMIN_TOKEN) -> None:
    driver.get(f"{site}/dashboard")
    field = wait_for(driver, "#token")
    field.send_keys(token)
    driver.find_element("css selector", "form[action='/dashboard/signin'] button").click()


def test_a_blocked_pull_requests_page_shows_each_reason(page, site, store):
    """The details page of a blocked agent's pull request shows the verdict and every reason behind it,
    what would unblock it, its verdict history and the policy's commit."""
    _, seeded = store
    page.get(f"{site}/decisions/{seeded.blocked_id}")
    wait_for(page, "h1", "pull request #12")
    text = visible_text(page)
    assert "failure" in text
    for message in seeded.blocked_reasons:
        assert " ".join(message.split()) in text, message
    assert "What would unblock it" in text and "Verdict history" in text
    history = page.find_elements("css selector", "table.history tbody tr")
    assert len(history) == len(seeded.history_ids) == 3
    assert page.find_element("css selector", "table.history tr.current").get_attribute("aria-current") == "page"
    links = {a.get_attribute("href") for a in page.find_elements("css selector", "a[href^='https://']")}
    assert "https://github.com/acme/api/pull/12" in links
    assert any(link.endswith("/.agentgate.yml") and "/blob/9c0ffee" in link for link in links)
    assert all(link.startswith("https://github.com/") for link in links)
    screenshot(page, "decision-desktop", max_height=1900)


def test_hostile_strings_are_shown_as_text(page, site, store):
    """An XSS attempt in a PR title, a file name, a label and a review body is shown as the text it is:
    visible, and no element, handler or script comes of it."""
    _, seeded = store
    page.get(f"{site}/decisions/{seeded.blocked_id}")
    wait_for(page, "h1", "pull request #12")
    text = visible_text(page)
    assert XSS_SCRIPT in text  # the title
    assert f"docs/{XSS_IMG}.md" in text  # the file name
    assert f"/deploy {XSS_IMG}" in text  # the command quoted from the agent's review body
    title = page.find_element("css selector", ".prtitle").text
    assert title == f"Fix the retry loop {XSS_SCRIPT}"
    assert_nothing_injected(page)


def test_the_details_page_fits_a_phone(page, site, store):
    """At 375 CSS pixels wide the details page has no horizontal scroll."""
    _, seeded = store
    phone(page)
    page.get(f"{site}/decisions/{seeded.blocked_id}")
    wait_for(page, "h1", "pull request #12")
    width, viewport = no_horizontal_scroll(page)
    assert viewport == 375 and width <= viewport
    screenshot(page, "decision-phone")


def test_the_dashboard_refuses_without_the_token(page, site, store):
    """Signed out, /dashboard answers 401 with the sign-in form and shows no data; a wrong token is
    refused the same way."""
    assert requests.get(f"{site}/dashboard", timeout=10).status_code == 401
    page.get(f"{site}/dashboard")
    wait_for(page, "h1", "Sign in to the dashboard")
    text = visible_text(page)
    for data in ("acme/", COPILOT.login, DEVIN.login, "pull request", "Blocked agents", "Chains stopped"):
        assert data not in text
    assert not page.find_elements("css selector", "svg, table")
    screenshot(page, "dashboard-refused")
    sign_in(page, site, "not-the-token")
    wait_for(page, "[role=alert]", "That is not the admin token.")
    assert COPILOT.login not in visible_text(page) and not page.get_cookies()


def test_the_dashboard_works_after_signing_in_through_the_form(page, site, store):
    """Signing in through the form opens the dashboard: blocked agents, chains stopped, tokens, failed
    deliveries and both charts; agent-written text stays text; signing out closes it again."""
    _, seeded = store
    sign_in(page, site)
    wait_for(page, "h1", "Operator dashboard")
    cookie = page.get_cookie("agentgate_dashboard")
    assert cookie is not None and cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    text = visible_text(page)
    for heading in ("Verdicts per day", "Blocks per agent", "Blocked agents", "Recent decisions", "Chains stopped",
                    "Agent tokens", "Deliveries"):
        assert heading in text
    blocked = page.find_element("css selector", "#blocked").find_element("xpath", "..").text
    assert COPILOT.login in blocked and DEVIN.login in blocked
    assert "5 of 45 webhook deliveries were not taken" in text
    charts = page.find_elements("css selector", "svg[role=img]")
    assert len(charts) == 2 and all(c.get_attribute("aria-labelledby") for c in charts)
    assert len(page.find_elements("css selector", "svg[role=img] rect")) > 10
    assert f"/deploy {XSS_IMG}" in text
    assert_nothing_injected(page)
    page.find_element("css selector", f"a[href='/decisions/{seeded.blocked_id}']").click()
    wait_for(page, "h1", "pull request #12")
    page.back()
    wait_for(page, "h1", "Operator dashboard")
    screenshot(page, "dashboard-desktop", max_height=1400)

    phone(page)
    page.refresh()
    wait_for(page, "h1", "Operator dashboard")
    width, viewport = no_horizontal_scroll(page)
    assert viewport == 375 and width <= viewport
    screenshot(page, "dashboard-phone")
    desktop(page)

    page.find_element("css selector", "form[action='/dashboard/signout'] button").click()
    wait_for(page, "[role=alert]", "Signed out.")
    page.get(f"{site}/dashboard")
    wait_for(page, "h1", "Sign in to the dashboard")
    assert re.search(r"Blocked agents|acme/", visible_text(page)) is None
