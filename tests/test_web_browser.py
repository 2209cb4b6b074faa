"""The web pages in a real browser: Debian's headless Chromium driven by Selenium through the
distribution's chromedriver. One round trip as a person makes it: subscribe on /lists, confirm
from the mail, receive a notice, narrow the filters from its manage link, leave. Screenshots of
/, /activations/<context> and /lists at 1280 and 400 px go to test-artifacts/.

Never skipped: without /usr/bin/chromium and /usr/bin/chromedriver it fails and says how to
install them (`.ci/run` does, with apt-get)."""

from __future__ import annotations

import asyncio
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest

from crdswatch.devtools.replay import ReplayServer
from crdswatch.store.lists import member_subscriber_name
from tests.support.daemon_env import Clock, free_port, make_daemon, until
from tests.support.fixtures_channels import smtp_pki, smtp_server  # noqa: F401
from tests.support.lists_env import lists_config
from tests.support.smtp_server import SmtpTestServer

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
ADDRESS = "ada@example.org"
T = TypeVar("T")


@pytest.fixture
def browser() -> Iterator[Any]:
    chromium, driver_path = shutil.which("chromium"), shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.fail("the browser test needs Debian's chromium and chromium-driver: "
                    "apt-get install -y chromium chromium-driver (.ci/run installs them)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                "--window-size=1280,1000", "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


async def off_loop(fn: Callable[..., T], *args: Any) -> T:
    """Selenium blocks; the daemon serves on this loop: drive the browser from a thread."""
    return await asyncio.to_thread(fn, *args)


def shoot(driver: Any, base: str, path: str, name: str) -> list[Path]:
    """Screenshots at 1280 and 400 px wide, tall enough for the page (capped)."""
    out = []
    for width in (1280, 400):
        driver.set_window_size(width, 900)
        driver.get(base + path)
        height = min(4000, int(driver.execute_script("return document.documentElement.scrollHeight")))
        driver.set_window_size(width, max(600, height))
        # the page never scrolls sideways: wide tables scroll inside their own box
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width, (path, width)
        target = ARTIFACTS / f"{name}-{width}.png"
        driver.save_screenshot(str(target))
        out.append(target)
    driver.set_window_size(1280, 1000)
    return out


def text_of(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    return str(driver.find_element(By.TAG_NAME, "body").text)


def submit(driver: Any, button: Any) -> None:
    """Click a submit button and wait until the browser has left the page it was on.

    A click returns before the form's POST has been answered: reading the page straight away can
    see the old document, or an element of it that the navigation then detaches (a stale element).
    """
    from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    old = driver.find_element(By.TAG_NAME, "html")

    def left(_driver: Any) -> bool:
        # expected_conditions.staleness_of, plus the other way Chromium says so mid-navigation:
        # "Node with given id does not belong to the document" (a generic WebDriverException).
        try:
            old.is_enabled()
        except StaleElementReferenceException:
            return True
        except WebDriverException as exc:
            if "does not belong to the document" in str(exc):
                return True
            raise
        return False

    button.click()
    WebDriverWait(driver, 30).until(left)
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return document.readyState") == "complete")


def subscribe(driver: Any, base: str) -> tuple[str, str]:
    """Fill in the address, open the optional narrowing, tick one reference type, submit."""
    from selenium.webdriver.common.by import By

    driver.get(f"{base}/lists")
    form = driver.find_element(By.CSS_SELECTOR, "#nirspec_reffiles_upd form")
    form.find_element(By.NAME, "email").send_keys(ADDRESS)
    form.find_element(By.CSS_SELECTOR, "details.narrowing > summary").click()  # no JavaScript: <details>
    # distortion: the next activation (jwst_0501) changes MIRI's, so the narrowed member still hears
    box = form.find_element(By.CSS_SELECTOR, "input[name=reftypes][value=distortion]")
    box.click()
    assert box.is_selected()
    submit(driver, form.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    return "distortion", text_of(driver)


def confirm(driver: Any, url: str) -> tuple[str, str]:
    from selenium.webdriver.common.by import By

    driver.get(url)
    shown = text_of(driver)
    submit(driver, driver.find_element(By.CSS_SELECTOR, "form button[type=submit]"))
    return shown, str(driver.find_element(By.TAG_NAME, "h1").text)


def narrow(driver: Any, url: str) -> tuple[list[str], str, str]:
    """The manage page: what is ticked already, then tick one more type and a daily digest."""
    from selenium.webdriver.common.by import By

    driver.get(url)
    boxes = driver.find_elements(By.CSS_SELECTOR, "input[name=reftypes]")
    ticked = [str(b.get_attribute("value")) for b in boxes if b.is_selected()]
    box = next(b for b in boxes if not b.is_selected())
    chosen = str(box.get_attribute("value"))
    box.click()
    driver.find_element(By.CSS_SELECTOR, "select[name=digest] option[value=daily]").click()
    submit(driver, driver.find_element(By.XPATH, "//button[text()='Save']"))
    return ticked, chosen, text_of(driver)


def leave(driver: Any) -> str:
    from selenium.webdriver.common.by import By

    submit(driver, driver.find_element(By.XPATH, "//button[starts-with(text(), 'Leave')]"))
    return text_of(driver)


async def test_subscribe_confirm_notice_manage_leave_in_a_real_browser(
    tmp_path: Path, replay: ReplayServer, smtp_server: SmtpTestServer, browser: Any,  # noqa: F811
) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    port = free_port()
    config = lists_config(tmp_path, database=f"sqlite:///{tmp_path}/state.db", server_url=replay.url,
                          smtp=smtp_server, protocol="lmtp", http_port=port, inbound_port=free_port())
    base = f"http://127.0.0.1:{port}"
    config.write_text(config.read_text().replace('public_url = "https://crdswatch.example.org"',
                                                 f'public_url = "{base}"'))
    daemon = make_daemon(config, Clock(NOW))
    await daemon.start_http()
    watch = daemon.watches[0]
    try:
        await daemon.poll(watch)  # baseline
        await daemon.warm_narrowing()  # the poll started reading the context for the form; let it finish
        ticked_on_form, page = await off_loop(subscribe, browser, base)
        assert "A confirmation mail is on its way to ada@example.org" in page
        assert daemon.lists is not None and daemon.lists.members("nirspec_reffiles_upd") == []  # nothing yet

        await until(lambda: any(m.rcpt_tos == (ADDRESS,) for m in smtp_server.messages), "the confirmation mail")
        mail = next(m for m in smtp_server.messages if m.rcpt_tos == (ADDRESS,)).parsed()
        link = re.search(rf"{re.escape(base)}/confirm/[0-9a-f]+", mail.get_body(("plain",)).get_content())  # type: ignore[union-attr]
        assert link, "no confirmation link in the mail"
        shown, heading = await off_loop(confirm, browser, link.group(0))
        assert "nirspec_reffiles_upd" in shown and ADDRESS in shown
        assert "Only notices about: reference types DISTORTION" in shown  # the narrowing rode in the token
        assert heading == "Subscribed"
        assert [m.address for m in daemon.lists.members("nirspec_reffiles_upd")] == [ADDRESS]

        # a real activation reaches the new member, with a manage link in its footer
        before = len(smtp_server.messages)
        context = replay.activate_next()["context"]  # type: ignore[index]
        await daemon.poll(watch)
        await until(lambda: any(m.rcpt_tos == (ADDRESS,) and context in m.data.decode("latin-1", "replace")
                                for m in smtp_server.messages[before:]), "the notice")
        notice = next(m for m in smtp_server.messages[before:] if m.rcpt_tos == (ADDRESS,)).parsed()
        html = notice.get_body(("html",)).get_content()  # type: ignore[union-attr]
        manage = re.search(r'href="([^"]*/manage/[^"]+)"', html)
        assert manage and manage.group(1).startswith(f"{base}/manage/"), "no manage link in the notice"

        ticked, chosen, saved = await off_loop(narrow, browser, manage.group(1))
        assert ticked == [ticked_on_form]  # the manage page shows the type ticked on the subscribe form
        assert "Saved." in saved
        name = member_subscriber_name("nirspec_reffiles_upd", ADDRESS)
        found = daemon.store.get_subscriber(name)
        both = sorted([ticked_on_form, chosen])
        assert found is not None and list(found.config.reftypes) == both and found.config.digest == "daily"
        daemon.lists.sync_members(NOW)  # what start-up does: the member's own choices stay
        kept = daemon.store.get_subscriber(name)
        assert kept is not None and (list(kept.config.reftypes), kept.config.digest) == (both, "daily")

        gone = await off_loop(leave, browser)
        assert "You have left" in gone
        assert daemon.lists.members("nirspec_reffiles_upd") == []

        shots = []
        for path, label in (("/", "status"), (f"/activations/{context}", "activation"), ("/lists", "lists")):
            shots += await off_loop(shoot, browser, base, path, label)
        assert all(p.stat().st_size > 5000 for p in shots)
    finally:
        await daemon.shutdown()
