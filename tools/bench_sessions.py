"""Server CPU per page view: N browser sessions open a page at once on one warm dashboard server.

    python tools/bench_sessions.py [--pages overview compare] [--sessions 1 8] [--repeat 3] [--cold]

Starts ``streamlit run serve.py`` (as ``make run`` does) on a free port, visits every page twice so
every map, model pass and cache is warm (and waits for the start-up warm-up
thread to finish), then for each page and each N opens the page in N browser
sessions at the same moment. A view is one session loading the page until
Streamlit is idle with every image loaded.

For each page and N it reports the server's CPU seconds per view: the CPU time
(user + system, from ``/proc/<pid>/stat``) the streamlit process and its
children used during the round, divided by N. Only the server is measured,
not the browsers. Two kinds of view are timed:

- new browser: a fresh browser context, so an empty HTTP cache: the server also
  sends Streamlit's own frontend (some 120 to 150 JavaScript, CSS and font files);
- browser cache warm: a new tab in a context that has opened the page before, as
  a returning visitor's browser, which keeps those files (they are served as
  immutable). The difference is what serving the frontend costs.

Each session's wall time (median and slowest, new browser) is reported too; the
browsers share the machine's cores with the server, so it includes their work,
which the last column gives (Chromium and Playwright's driver, CPU s per view).
Rounds are repeated (``--repeat``) and medians reported. ``--cold`` first opens
the first page with the largest N on the freshly started server (caches cold,
as after a deploy) and reports that round's wall times. The server's peak
resident memory (VmHWM) closes the report.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.screenshot import CHROMIUM, CHROMIUM_FLAGS, dashboard_server  # noqa: E402

PAGES = {"overview": "", "layer_grid": "layer_grid", "compare": "compare", "dataset": "dataset"}
IDLE_MARGIN = 1.5  # seconds the page must stay idle with its images loaded
IDLE_WITH_IMAGES = """() => {
    if (!document.querySelector('[data-testid="stMain"] h1')) return false;
    if (document.querySelector('[data-testid="stStatusWidget"]')) { window.__idle = null; return false; }
    const imgs = [...document.querySelectorAll('[data-testid="stMain"] img')];
    if (!imgs.length || !imgs.every(i => i.complete && i.naturalWidth > 0)) { window.__idle = null; return false; }
    window.__idle = window.__idle || Date.now();
    return Date.now() - window.__idle > %d;
}""" % int(IDLE_MARGIN * 1000)
TICK = os.sysconf("SC_CLK_TCK")


def _memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1])
    return 0


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            continue
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of ``pid`` and all its descendants, live or ended.

    Each live process counts its own time plus that of the children it has waited for
    (``cutime``, ``cstime``); an ended child appears only there, so nothing counts twice.
    """
    total, pending = 0, [pid]
    while pending:
        current = pending.pop()
        try:
            # The command name (field 2) may hold spaces; the fields after its closing parenthesis are fixed.
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            pending += _children(current)
        except OSError:  # a child that just ended
            continue
        total += sum(int(v) for v in fields[11:15])  # utime, stime, cutime, cstime
    return total / TICK


def wait_until_quiet(pid: int, window: float = 3.0, below: float = 0.03, timeout: float = 600.0) -> float:
    """Block until the server used less than ``below`` CPU seconds per second over ``window``; returns that rate."""
    deadline = time.monotonic() + timeout
    samples = [(time.monotonic(), cpu_seconds(pid))]
    while True:
        time.sleep(0.5)
        samples.append((time.monotonic(), cpu_seconds(pid)))
        while len(samples) > 2 and samples[-1][0] - samples[1][0] >= window:
            samples.pop(0)
        elapsed = samples[-1][0] - samples[0][0]
        if elapsed >= window:
            rate = (samples[-1][1] - samples[0][1]) / elapsed
            if rate < below or time.monotonic() > deadline:
                return rate


async def _view(context, url: str, index: int) -> dict:
    """One session: a new tab in ``context`` opens ``url``; seconds until idle with every image loaded, or the error."""
    page = await context.new_page()
    start = time.perf_counter()
    outcome = {"session": index + 1, "seconds": float("nan"), "error": ""}
    try:
        await page.goto(url)
        await page.wait_for_function(IDLE_WITH_IMAGES, timeout=600_000, polling=250)
        outcome["seconds"] = time.perf_counter() - start - IDLE_MARGIN
        if await page.locator("[data-testid='stException']").count():
            outcome["error"] = (await page.locator("[data-testid='stException']").first.inner_text())[:120]
    except Exception as error:  # a timeout or a crashed page is a result to report, not to hide
        outcome["error"] = f"{type(error).__name__}: {str(error).splitlines()[0][:120]}"
    await page.close()
    return outcome


async def _session(browser, url: str, index: int) -> dict:
    """A view from a new browser: a fresh context, so nothing in its HTTP cache."""
    context = await browser.new_context(viewport={"width": 1400, "height": 1000})
    try:
        return await _view(context, url, index)
    finally:
        await context.close()


async def _round(browser, url: str, sessions: int) -> list[dict]:
    return list(await asyncio.gather(*(_session(browser, url, i) for i in range(sessions))))


async def _primed_contexts(browser, url: str, sessions: int) -> list:
    """Browser contexts that have each opened ``url`` once, so their HTTP caches hold Streamlit's frontend."""
    contexts = [await browser.new_context(viewport={"width": 1400, "height": 1000}) for _ in range(sessions)]
    await _tabs(contexts, url)
    return contexts


async def _tabs(contexts: list, url: str) -> list[dict]:
    return list(await asyncio.gather(*(_view(context, url, i) for i, context in enumerate(contexts))))


async def _close(contexts: list) -> None:
    for context in contexts:
        await context.close()


def _measured_round(loop, browser, url: str, sessions: int, pid: int, returning: bool = False) -> dict:
    """One round on a quiet server: CPU per view, session times, errors.

    ``returning``: the sessions are new tabs in contexts that opened the page before (browser cache warm).
    """
    contexts = loop.run_until_complete(_primed_contexts(browser, url, sessions)) if returning else []
    idle_rate = wait_until_quiet(pid)
    before, start, client = cpu_seconds(pid), time.monotonic(), _client_cpu()
    if returning:
        outcomes = loop.run_until_complete(_tabs(contexts, url))
    else:
        outcomes = loop.run_until_complete(_round(browser, url, sessions))
    # Work the server does once the pages are drawn (closing the sessions) belongs to the views too.
    wait_until_quiet(pid)
    spent = cpu_seconds(pid) - before - idle_rate * (time.monotonic() - start)
    browsers = _client_cpu() - client
    loop.run_until_complete(_close(contexts))
    times = [o["seconds"] for o in outcomes if not o["error"]]
    return {"cpu": max(spent, 0.0) / sessions, "browser": browsers / sessions, "times": times,
            "errors": [o["error"] for o in outcomes if o["error"]]}


def _client_cpu() -> float:
    """CPU seconds of this process's other descendants: Playwright's driver and Chromium (the server excluded)."""
    return cpu_seconds(os.getpid()) - cpu_seconds(_SERVER_PID[0]) - _own_cpu()


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


_SERVER_PID = [0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pages", nargs="+", choices=list(PAGES), default=list(PAGES))
    parser.add_argument("--sessions", nargs="+", type=int, default=[1, 8], help="viewers opening a page at once")
    parser.add_argument("--repeat", type=int, default=3, help="rounds per page and N; medians are reported")
    parser.add_argument("--cold", action="store_true",
                        help="first time the first page with the largest N on the freshly started server")
    parser.add_argument("--no-returning", action="store_true",
                        help="skip the views from a browser whose cache already holds Streamlit's frontend")
    args = parser.parse_args()

    from playwright.async_api import async_playwright

    loop = asyncio.new_event_loop()
    rows, errors = [], []
    with dashboard_server(ROOT) as (url, process):
        pid = _SERVER_PID[0] = process.pid
        idle_rss = _memory_kib(pid, "VmRSS")

        async def launch():
            playwright = await async_playwright().start()
            return playwright, await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)

        playwright, browser = loop.run_until_complete(launch())
        try:
            cold = None
            if args.cold:
                page, sessions = args.pages[0], max(args.sessions)
                start = time.monotonic()
                outcomes = loop.run_until_complete(_round(browser, f"{url}/{PAGES[page]}", sessions))
                cold = (page, sessions, [o["seconds"] for o in outcomes if not o["error"]], time.monotonic() - start)
                errors += [f"cold {page}: {o['error']}" for o in outcomes if o["error"]]
            # Warm every page, twice: the second visit finds what the first one's background work left.
            for _ in range(2):
                for page in args.pages:
                    loop.run_until_complete(_round(browser, f"{url}/{PAGES[page]}", 1))
                    wait_until_quiet(pid)
            for page in args.pages:
                for sessions in args.sessions:
                    target = f"{url}/{PAGES[page]}"
                    measured = [_measured_round(loop, browser, target, sessions, pid) for _ in range(args.repeat)]
                    returning = [] if args.no_returning else [
                        _measured_round(loop, browser, target, sessions, pid, returning=True) for _ in range(args.repeat)]
                    times = [t for m in measured for t in m["times"]]
                    rows.append({
                        "page": page, "sessions": sessions,
                        "cpu": statistics.median(m["cpu"] for m in measured),
                        "cpu_all": [m["cpu"] for m in measured],
                        "cpu_returning": statistics.median(m["cpu"] for m in returning) if returning else float("nan"),
                        "browser": statistics.median(m["browser"] for m in measured),
                        "median": statistics.median(times) if times else float("nan"),
                        "slowest": statistics.median(max(m["times"]) for m in measured if m["times"])
                        if times else float("nan"),
                        "errors": sum(len(m["errors"]) for m in measured + returning),
                    })
                    errors += [f"{page} x{sessions}: {e}" for m in measured + returning for e in m["errors"]]
        finally:
            loop.run_until_complete(browser.close())
            loop.run_until_complete(playwright.stop())
        peak = _memory_kib(pid, "VmHWM")

    print(f"\nWarm server, medians of {args.repeat} rounds. A view = one browser session loading the page until idle "
          "with every image loaded; CPU = the server process's CPU seconds per view.\n")
    print("| page | viewers at once | server CPU s per view, new browser | (each round) | browser cache warm | "
          "session wall s, median | slowest session | browsers' CPU s per view | errors |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for row in rows:
        spread = " ".join(f"{c:.2f}" for c in row["cpu_all"])
        print(f"| {row['page']} | {row['sessions']} | {row['cpu']:.2f} | {spread} | {row['cpu_returning']:.2f} | "
              f"{row['median']:.1f} | {row['slowest']:.1f} | {row['browser']:.2f} | {row['errors']} |")
    if cold:
        page, sessions, times, wall = cold
        if times:
            print(f"\ncold server, {sessions} session(s) on {page}: median {statistics.median(times):.1f} s, "
                  f"slowest {max(times):.1f} s")
    for error in errors:
        print(f"error: {error}")
    print(f"\nserver memory: {idle_rss / 1024:.0f} MiB before, peak {peak / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
