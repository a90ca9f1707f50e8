"""In a real server and Chromium: the issue's link waits for a button, and its work stops when the tab closes.

The link once started 50,177 forward passes at once and kept the server at 100% CPU after its tab was
closed. Here the server's own CPU time (from /proc) says whether it still works.
"""

import time
from pathlib import Path

from conftest import PROJECT_ROOT, require_chromium
from tools.screenshot import chromium_context, dashboard_server, wait_until_idle

require_chromium()

LINK = "/compare?image_names=coffee&cmp_methods=occlusion&cmp_param_occlusion__patch=1&cmp_param_occlusion__stride=1"
SCREENSHOTS = PROJECT_ROOT / "artifacts" / "screenshots"


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # user + system time, in clock ticks of 1/100 s


def _busy(pid: int, seconds: float = 2.0) -> float:
    """The share of one core the process used over the next ``seconds``."""
    before = _cpu_seconds(pid)
    time.sleep(seconds)
    return (_cpu_seconds(pid) - before) / seconds


def test_the_long_link_waits_for_its_button_and_its_work_stops_when_the_tab_closes():
    with dashboard_server(PROJECT_ROOT) as (url, server), chromium_context({"width": 1500, "height": 1100}) as context:
        page = context.new_page()
        page.goto(url + LINK)
        wait_until_idle(page)
        button = page.get_by_role("button", name="Compute (about")
        assert button.is_visible() and "so it waits for you to start it" in page.inner_text("[data-testid='stMain']")
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "compare_long_link.png"), full_page=True)
        assert _busy(server.pid) < 0.5  # the link alone computes nothing

        button.click()
        page.wait_for_selector("[data-testid='stStatusWidget']")  # running
        time.sleep(2)
        assert _busy(server.pid) > 0.3  # the occlusion is under way
        page.close()  # the visitor closes the tab
        deadline = time.monotonic() + 60
        while _busy(server.pid) > 0.1:  # stopped within a batch or two: the server idles again
            assert time.monotonic() < deadline, "the server still computes a minute after the tab closed"
