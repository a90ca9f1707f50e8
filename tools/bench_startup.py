"""Start-up time: from ``streamlit run serve.py`` to what the first visitor sees, in Chromium.

    python tools/bench_startup.py [--repeat 5] [--script serve.py]

Each round starts a fresh server process (nothing cached, nothing imported) and measures
as a visitor does: a Chromium page (the browser open before the clock starts, as a
visitor's would be) asks for the default page from the moment of the ``Popen``, again
and again until the server answers, then polls what is on the screen. It reports, from
the ``Popen``:

- server up: the page's first answer;
- frame: the page's title and the sidebar's navigation are drawn;
- first predictions: the default image's top class, by name, is in the sidebar's top-5 table.

An earlier version opened the page only once the health check answered and counted the
table as drawn as soon as its (still empty) frame was there; what a visitor reads is the
class name. Medians of ``--repeat`` rounds; each round's figures are printed too.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from playwright.sync_api import Error as PlaywrightError

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tools.screenshot import CHROMIUM, CHROMIUM_FLAGS, free_port  # noqa: E402

FRAME = "[data-testid='stMain'] h1"
NAVIGATION = "[data-testid='stSidebarNav']"
# The top-5 table's cells are drawn on a canvas; the grid keeps their text in an accessible table beside it.
PREDICTIONS_SHOWN = """(name) => {
    const table = document.querySelector('[data-testid="stSidebar"] [data-testid="stDataFrame"]');
    return !!table && table.textContent.includes(name);
}"""


def expected_top_class() -> str:
    """The default image's top class on the embedded model: what the visitor waits to read."""
    import explainers as ex
    from ui.defaults import DEFAULT_IMAGES

    model = ex.load_model(ex.DEFAULT_MODEL)
    probabilities = model.predict([ex.decode_image(ex.sample_images()[DEFAULT_IMAGES[0]])])
    return model.top_k(probabilities, 1)[0][0][1]


def one_round(browser, script: str, top_class: str) -> dict[str, float]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    page = browser.new_page()
    start = time.monotonic()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", script, "--server.port", str(port),
         "--server.address", "127.0.0.1", "--server.headless", "true"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        while True:
            try:
                page.goto(url, timeout=2_000)
                break
            except PlaywrightError:
                if server.poll() is not None or time.monotonic() - start > 120:
                    raise RuntimeError("the server did not start") from None
                time.sleep(0.05)
        times = {"server up": time.monotonic() - start}
        page.wait_for_selector(FRAME, timeout=120_000)
        page.wait_for_selector(NAVIGATION, timeout=120_000)
        times["frame"] = time.monotonic() - start
        page.wait_for_function(PREDICTIONS_SHOWN, arg=top_class, timeout=120_000, polling=50)
        times["first predictions"] = time.monotonic() - start
        page.close()
        return times
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    from playwright.sync_api import sync_playwright

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--script", default="serve.py", help="what `streamlit run` starts (dashboard.py: without serve.py's start)")
    args = parser.parse_args()
    top_class = expected_top_class()
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        rounds = []
        for index in range(args.repeat):
            rounds.append(one_round(browser, args.script, top_class))
            print(f"round {index + 1}: " + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in rounds[-1].items()))
        browser.close()
    print(f"\nmedians of {args.repeat} rounds, seconds from `streamlit run {args.script}`:\n")
    print("| server up | frame (title and navigation) | first predictions |")
    print("| --- | --- | --- |")
    print("| " + " | ".join(f"{statistics.median(r[name] for r in rounds):.1f}" for name in rounds[0]) + " |")


if __name__ == "__main__":
    main()
