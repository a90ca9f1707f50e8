"""Start-up time: from ``streamlit run serve.py`` to what the first visitor sees, in Chromium.

    python tools/bench_startup.py [--repeat 3] [--script serve.py]

Each round starts a fresh server process (nothing cached, nothing imported) and, the
moment its health check answers, opens the default page in Chromium (launched before
the clock starts, as a visitor's browser would be). It reports, from the ``Popen``:

- server up: the health check answers;
- frame: the page's title and the sidebar's navigation are drawn;
- first predictions: the sidebar's top-5 table for the default image is drawn.

Medians of ``--repeat`` rounds; each round's figures are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.screenshot import CHROMIUM, CHROMIUM_FLAGS, free_port  # noqa: E402

FRAME = "[data-testid='stMain'] h1"
NAVIGATION = "[data-testid='stSidebarNav']"
# The top-5 table once the sidebar's outline (which holds an empty one) has given way to it.
PREDICTIONS_SHOWN = """() => {
    const sidebar = document.querySelector('[data-testid="stSidebar"]');
    return !!sidebar && !!sidebar.querySelector('[data-testid="stDataFrame"]')
        && !sidebar.innerText.includes('Predictions appear here');
}"""


def one_round(browser, script: str) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    start = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                with urllib.request.urlopen(f"{url}/_stcore/health", timeout=1):
                    break
            except OSError:
                if server.poll() is not None or time.monotonic() - start > 120:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        times = {"server up": time.monotonic() - start}
        page = browser.new_page()
        page.goto(url)
        page.wait_for_selector(FRAME, timeout=120_000)
        page.wait_for_selector(NAVIGATION, timeout=120_000)
        times["frame"] = time.monotonic() - start
        page.wait_for_function(PREDICTIONS_SHOWN, timeout=120_000, polling=50)
        times["first predictions"] = time.monotonic() - start
        page.close()
        return times
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--script", default="serve.py", help="what `streamlit run` starts (dashboard.py: without serve.py's start)")
    args = parser.parse_args()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        rounds = []
        for index in range(args.repeat):
            rounds.append(one_round(browser, args.script))
            print(f"round {index + 1}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in rounds[-1].items()))
        browser.close()
    print(f"\nmedians of {args.repeat} rounds, seconds from `streamlit run {args.script}`:\n")
    print("| server up | frame (title and navigation) | first predictions |")
    print("| --- | --- | --- |")
    print("| " + " | ".join(f"{statistics.median(r[name] for r in rounds):.1f}" for name in rounds[0]) + " |")


if __name__ == "__main__":
    main()
