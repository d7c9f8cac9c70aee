"""Look at a web UI the way a person would: headless Chromium renders the page, runs its JavaScript, and we keep
a screenshot and the rendered DOM's text.

Used by the UI tests (Prefect and MLflow UIs are single-page apps: the HTML the server sends has no content; only
the DOM after the scripts ran and the API answered does). Offline on purpose: every host name except 127.0.0.1
resolves to nothing, and Chromium's own background traffic (updates, sync, QUIC) is off.
``--virtual-time-budget`` lets the page's timers and fetches run for that much virtual time before the dump
(measured: 4–9 s of wall time per page for the Prefect and MLflow UIs on loopback).
"""

from __future__ import annotations

import html
import re
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",  # root in CI and containers: Chromium's sandbox refuses to start as root
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--hide-scrollbars",
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)


def chromium() -> str | None:
    """Path of a Chromium (Debian's ``chromium`` package) or Chrome executable, or None."""
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


@dataclass(frozen=True)
class Rendered:
    """A page after its scripts ran: the DOM as HTML, its visible text, and the screenshot's path if one was taken."""

    url: str
    dom: str
    text: str
    screenshot: Path | None


def render(url: str, screenshot: str | Path | None = None, size: tuple[int, int] = (1400, 900),
           budget_ms: int = 15000, timeout: float = 120.0, expect: Sequence[str] = (), tries: int = 3) -> Rendered:
    """Render ``url`` in headless Chromium for ``budget_ms`` of virtual time; dump its DOM, optionally save a PNG.

    One Chromium run does both, so the text asserted on is the page in the screenshot. ``size`` matters for the
    text too: below about 1000 px wide the Prefect UI folds its navigation into a menu that is not in the DOM.
    With ``expect``, the page is loaded again (up to ``tries`` times) while any of those strings is missing
    from its text, as a person reloads a page whose API answers came late (seen on a loaded 2-core machine:
    the Prefect work-pool list counted "1 Work pool" before its card was drawn); the last render is returned
    either way, so the caller still asserts.
    """
    for _ in range(max(1, tries)):
        page = _render_once(url, screenshot, size, budget_ms, timeout)
        if all(word in page.text for word in expect):
            break
    return page


def _render_once(url: str, screenshot: str | Path | None, size: tuple[int, int], budget_ms: int,
                 timeout: float) -> Rendered:
    exe = chromium()
    if exe is None:
        raise FileNotFoundError("no chromium on PATH: apt-get install chromium (infra/system-deps.sh does)")
    args = [f"--window-size={size[0]},{size[1]}", f"--virtual-time-budget={budget_ms}", "--dump-dom"]
    if screenshot is not None:
        screenshot = Path(screenshot).absolute()
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.unlink(missing_ok=True)
        args.append(f"--screenshot={screenshot}")
    with tempfile.TemporaryDirectory(prefix="worth-chromium-") as profile:
        argv = [exe, *FLAGS, f"--user-data-dir={profile}", *args, url]
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise RuntimeError(f"chromium exited {done.returncode} on {url}: " + " | ".join(tail))
    if screenshot is not None and (not screenshot.is_file() or screenshot.stat().st_size == 0):
        raise RuntimeError(f"chromium wrote no screenshot of {url} to {screenshot}")
    dom = done.stdout.decode(errors="replace")
    return Rendered(url, dom, visible_text(dom), screenshot)


def visible_text(dom: str) -> str:
    """The text of a DOM dump without scripts, styles and tags, whitespace collapsed: what a reader sees."""
    dom = re.sub(r"<(script|style|noscript|template)\b[^>]*>.*?</\1\s*>", " ", dom, flags=re.S | re.I)
    text = re.sub(r"<[^>]+>", " ", dom)
    return re.sub(r"\s+", " ", html.unescape(text)).strip()
