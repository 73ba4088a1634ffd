"""Open every page of a built book in headless Chromium and report what a reader would hit.

Chromium is driven over the Chrome DevTools Protocol (CDP): it starts with
``--remote-debugging-port=0``, writes the port it chose to ``DevToolsActivePort`` in its profile
folder, and this module talks to it over one websocket (tornado's client, installed with
ipykernel). Nothing is downloaded: no webdriver, no browser build, no network; pages load from
``file://`` as a reader opens a copy of the book, without ``--allow-file-access-from-files``.

Each page opens in a tab of its own fresh browser context (empty storage: a reader's first visit,
whatever the order of the pages), 1280 px wide. Once ``load`` has fired, MathJax has typeset and
the widget manager has rendered (or a deadline passed), a page fails on:

- a JavaScript error: an uncaught exception, ``console.error``/``console.assert``, or an error the
  browser logs itself (a script, stylesheet or image that does not load, a CSP or CORS refusal);
- a broken image: an ``<img>`` that has not loaded (``naturalWidth == 0``);
- a broken internal reference: an ``<a href>``, ``<link href>``, ``<script src>``, ``<img src>`` or
  ``<source src>`` to a file that does not exist, outside the book, or to an ``#anchor`` that the
  target page lacks;
- an ``<audio>``/``<video>`` that cannot play: played muted, it must start and advance, without a
  ``MediaError`` and with a ``<source>`` the browser can decode;
- maths that MathJax did not typeset (a ``.math`` element without ``mjx-container``) or typeset
  as an error (``data-mjx-error``);
- a widget view that did not render (no ``widget-subarea`` content, or the manager's error widget);
- a chapter page (``<executed>/NN_name.html``) that is missing or has no non-empty ``cell_output``.

Each page's screenshot goes to ``<shots>/<page path with / as __>.png`` (at most
:data:`MAX_SHOT_HEIGHT` px of the page), and ``<shots>/report.json`` records every page's findings.

Command line (the same check as ``make browser-check``, without pytest)::

    python tests/browser/bookcheck.py --profile smoke     # exit 1 when a page has a problem
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parents[2]
#: Executables tried in order when ``$CHROMIUM`` is unset.
BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
WIDTH, HEIGHT = 1280, 900
MAX_SHOT_HEIGHT = 8000  #: px of a page a screenshot keeps (chapters are 10-30k px tall)
#: After `load`, a page gets at most this long in all for MathJax (<= 10 s to typeset), the
#: widget manager and images (<= 5 s each) and media (<= 8 s to start playing) before it is judged.
PAGE_WAIT_MS = 20000
LOAD_TIMEOUT_S = 30.0


class BrowserError(RuntimeError):
    """Chromium is missing, did not start, or stopped answering."""


def find_browser() -> str:
    """The Chromium executable: ``$CHROMIUM`` or the first of :data:`BROWSERS` on the PATH."""
    env = os.environ.get("CHROMIUM")
    if env:
        path = shutil.which(env)
        if not path:
            raise BrowserError(f"CHROMIUM={env!r} is not an executable")
        return path
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    raise BrowserError("no Chromium on the PATH (tried " + ", ".join(BROWSERS) + "); install it, "
                       "e.g. `apt-get install chromium` (.ci/run does), or set CHROMIUM=/path")


# --------------------------------------------------------------------------------------------
# A minimal CDP client
# --------------------------------------------------------------------------------------------
class CDP:
    """One websocket to the browser; page sessions are multiplexed on it (``flatten``)."""

    def __init__(self, ws):
        self.ws = ws
        self._next = 0
        self._pending: dict[int, asyncio.Future] = {}
        self._events: dict[str, list[dict]] = {}  # sessionId -> events, for sessions we watch
        self._waiters: list[tuple[str, str, asyncio.Future]] = []
        self._reader = asyncio.ensure_future(self._read())

    async def _read(self):
        while True:
            msg = await self.ws.read_message()
            if msg is None:  # the browser closed the socket
                for fut in self._pending.values():
                    if not fut.done():
                        fut.set_exception(BrowserError("Chromium closed the DevTools connection"))
                return
            data = json.loads(msg)
            if "id" in data:
                fut = self._pending.pop(data["id"], None)
                if fut and not fut.done():
                    if "error" in data:
                        fut.set_exception(BrowserError(f"{data['error'].get('message')} "
                                                       f"({data['error'].get('data', '')})"))
                    else:
                        fut.set_result(data.get("result", {}))
                continue
            sid = data.get("sessionId", "")
            if sid in self._events:
                self._events[sid].append(data)
            for waiter in list(self._waiters):
                w_sid, method, fut = waiter
                if w_sid == sid and method == data.get("method") and not fut.done():
                    fut.set_result(data.get("params", {}))
                    self._waiters.remove(waiter)

    async def send(self, method: str, params: dict | None = None, session: str | None = None,
                   timeout: float = 60.0) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._pending[self._next] = fut
        await self.ws.write_message(json.dumps(msg))
        try:
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            raise BrowserError(f"{method}: no answer from Chromium in {timeout:.0f} s") from None

    def watch(self, session: str) -> list[dict]:
        """Start recording the events of ``session``; returns the (growing) list."""
        return self._events.setdefault(session, [])

    def unwatch(self, session: str) -> None:
        self._events.pop(session, None)

    def expect(self, session: str, method: str) -> asyncio.Future:
        """A future for the next ``method`` event of ``session`` (register before triggering)."""
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((session, method, fut))
        return fut

    def close(self):
        self._reader.cancel()
        self.ws.close()


class Browser:
    """Headless Chromium with a private profile, started and stopped by ``async with``."""

    def __init__(self, executable: str | None = None):
        self.executable = executable or find_browser()
        self.proc: subprocess.Popen | None = None
        self.cdp: CDP | None = None
        self._profile: tempfile.TemporaryDirectory | None = None

    async def __aenter__(self) -> "Browser":
        from tornado.websocket import websocket_connect

        self._profile = tempfile.TemporaryDirectory(prefix="bookcheck-chromium-")
        profile = Path(self._profile.name)
        args = [self.executable, "--headless=new", "--remote-debugging-port=0",
                f"--user-data-dir={profile}", "--no-first-run", "--no-default-browser-check",
                "--disable-gpu", "--disable-extensions", "--disable-background-networking",
                "--disable-sync", "--disable-component-update", "--disable-default-apps",
                "--mute-audio", "--autoplay-policy=no-user-gesture-required",
                "--hide-scrollbars", f"--window-size={WIDTH},{HEIGHT}", "about:blank"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            args.insert(1, "--no-sandbox")  # Chromium refuses to run as root with its sandbox
        log = open(profile / "chromium.log", "wb")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL)
        port_file = profile / "DevToolsActivePort"
        deadline = time.monotonic() + 30
        while not (port_file.is_file() and len(port_file.read_text().splitlines()) >= 2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._stop()
                tail = (profile / "chromium.log").read_text(errors="replace")[-2000:] \
                    if (profile / "chromium.log").exists() else ""
                raise BrowserError(f"{self.executable} did not start:\n{tail}")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        ws = await websocket_connect(f"ws://127.0.0.1:{port}{path}", connect_timeout=10,
                                     max_message_size=512 * 2**20)
        self.cdp = CDP(ws)
        return self

    async def __aexit__(self, *exc):
        if self.cdp:
            try:
                await self.cdp.send("Browser.close", timeout=5)
            except Exception:
                pass
            self.cdp.close()
        self._stop()

    def _stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._profile:
            self._profile.cleanup()
            self._profile = None


# --------------------------------------------------------------------------------------------
# What runs in the page
# --------------------------------------------------------------------------------------------
#: Evaluated (awaited) after `load`: waits for MathJax, widgets, images and media, then reports.
PROBE_JS = r"""
(async (waitMs) => {
  const sleep = ms => new Promise(r => setTimeout(r, ms));
  const deadline = performance.now() + waitMs;
  const left = () => Math.max(0, deadline - performance.now());
  // wait for cond, at most capMs and never past the page's deadline
  const until = async (cond, capMs) => {
    const end = Math.min(deadline, performance.now() + capMs);
    while (!cond() && performance.now() < end) await sleep(50);
    return cond();
  };
  const short = s => (s || "").startsWith("data:") ? s.slice(0, 40) + "..." : (s || "");
  const out = {url: location.href, title: document.title};

  // MathJax 3 typesets after its startup promise; a page without maths may not load MathJax.
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) {
    await Promise.race([mj.startup.promise.catch(e => { out.mathjax_failure = String(e); }),
                        sleep(Math.min(left(), 10000))]);
  }
  out.mathjax_loaded = !!(mj && mj.startup && mj.version);
  const maths = [...document.querySelectorAll(".math")];
  // (the startup promise resolves once the page is typeset: a short grace period is enough)
  if (out.mathjax_loaded) await until(() => maths.every(m => m.querySelector("mjx-container")), 1000);
  out.math = maths.length;
  out.math_unrendered = maths.filter(m => !m.querySelector("mjx-container"))
                             .map(m => m.textContent.trim().slice(0, 80));
  out.math_errors = [...document.querySelectorAll("[data-mjx-error], mjx-merror")]
                      .map(e => e.getAttribute("data-mjx-error") || e.textContent.slice(0, 80));

  // ipywidgets: the manager renders each view into a div.widget-subarea just before its script.
  const views = [...document.querySelectorAll('script[type="application/vnd.jupyter.widget-view+json"]')];
  const rendered = v => { const p = v.previousElementSibling;
    return !!(p && p.classList.contains("widget-subarea") && p.childElementCount > 0); };
  await until(() => views.every(rendered), 5000);
  out.widgets = views.length;
  out.widgets_unrendered = views.filter(v => !rendered(v)).length;
  out.widget_errors = document.querySelectorAll(".jupyter-widgets-error-widget").length;

  // Images: eager-load everything, then every <img> must have decoded to a real size.
  const imgs = [...document.images];
  imgs.forEach(i => { if (i.loading === "lazy") i.loading = "eager"; });
  await until(() => imgs.every(i => i.complete), 5000);
  out.images = imgs.length;
  out.images_broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0))
                          .map(i => short(i.getAttribute("src")));

  // Audio and video: play each muted; it must start, advance and raise no MediaError.
  const media = [...document.querySelectorAll("audio, video")];
  const playErr = new Map();
  media.forEach(m => { m.muted = true; m.preload = "auto"; });
  // (an element whose <source>s all failed has no MediaError: its play() stays pending and its
  // networkState is NETWORK_NO_SOURCE)
  media.forEach(m => m.play().catch(e => { playErr.set(m, String(e)); }));
  const settled = m => m.error || playErr.has(m) || m.currentTime > 0 ||
                       m.networkState === HTMLMediaElement.NETWORK_NO_SOURCE;
  await until(() => media.every(settled), 8000);
  out.media = media.map(m => {
    const src = m.currentSrc || m.getAttribute("src") ||
                (m.querySelector("source") || {getAttribute: () => ""}).getAttribute("src");
    const r = {tag: m.tagName.toLowerCase(), src: short(src), ready_state: m.readyState,
               current_time: m.currentTime, duration: m.duration,
               error: m.error ? `MediaError ${m.error.code}: ${m.error.message}` :
                      m.networkState === HTMLMediaElement.NETWORK_NO_SOURCE ? "no playable source" : null,
               play_error: playErr.get(m) || null};
    m.pause();
    return r;
  });

  // Executed outputs (judged in Python for chapter pages only).
  const outputs = [...document.querySelectorAll(".cell_output")];
  out.cell_outputs = outputs.length;
  out.cell_outputs_nonempty = outputs.filter(o => o.textContent.trim() ||
      o.querySelector("img, svg, video, audio, canvas, table, iframe, .widget-subarea")).length;

  // Local references, judged in Python (existence and anchors); data:, http(s): etc. are skipped.
  const refs = [];
  const add = (tag, attr, url) => { if (url && url.startsWith("file:")) refs.push([tag, attr, url]); };
  document.querySelectorAll("a[href]").forEach(a => add("a", "href", a.href));
  document.querySelectorAll("link[href]").forEach(l => add("link", "href", l.href));
  document.querySelectorAll("script[src]").forEach(s => add("script", "src", s.src));
  document.querySelectorAll("img[src], source[src], audio[src], video[src], iframe[src]")
          .forEach(e => add(e.tagName.toLowerCase(), "src", e.src));
  out.refs = refs;
  out.ids = [...document.querySelectorAll("[id], a[name]")].map(e => e.id || e.getAttribute("name"));
  out.text_length = (document.body && document.body.innerText || "").length;
  return out;
})
"""


# --------------------------------------------------------------------------------------------
# Checking pages
# --------------------------------------------------------------------------------------------
@dataclass
class PageResult:
    page: str  #: path relative to the HTML root, e.g. ``_build/executed/smoke/00_corpus.html``
    problems: list[str] = field(default_factory=list)
    console: list[str] = field(default_factory=list)  #: every console/log line, errors or not
    stats: dict = field(default_factory=dict)
    screenshot: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems


class _Ids(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for k, v in attrs:
            if v and (k == "id" or (k == "name" and tag == "a")):
                self.ids.add(v)


def _static_ids(path: Path, cache: dict) -> set[str]:
    if path not in cache:
        parser = _Ids()
        parser.feed(path.read_text(encoding="utf8", errors="replace"))
        cache[path] = parser.ids
    return cache[path]


def _url_path(url: str) -> tuple[Path, str]:
    parts = urlsplit(url)
    return Path(unquote(parts.path)), unquote(parts.fragment)


def check_refs(page: Path, root: Path, refs: list, live_ids: set[str], cache: dict) -> list[str]:
    """Problems with the page's local references: missing files, files outside ``root``,
    ``#anchors`` missing from an HTML target (the live DOM for the page itself)."""
    problems, seen = [], set()
    root = root.resolve()
    for tag, attr, url in refs:
        target, fragment = _url_path(url)
        key = (str(target), fragment)
        if key in seen:
            continue
        seen.add(key)
        try:
            rel = target.resolve().relative_to(root)
        except ValueError:
            problems.append(f"broken link: <{tag} {attr}> {target} points outside the book")
            continue
        what = f"<{tag} {attr}> {rel.as_posix()}" + (f"#{fragment}" if fragment else "")
        if not target.is_file():
            problems.append(f"broken link: {what}: no such file")
            continue
        if fragment and tag == "a" and target.suffix == ".html":
            ids = live_ids if target.resolve() == page.resolve() else _static_ids(target, cache)
            if fragment not in ids:
                problems.append(f"broken link: {what}: no id {fragment!r} in that page")
    return problems


def _console_line(event: dict) -> tuple[str, bool] | None:
    """(text, is_error) for a console/log/exception event, else None."""
    method, p = event.get("method"), event.get("params", {})
    if method == "Runtime.exceptionThrown":
        d = p.get("exceptionDetails", {})
        text = (d.get("exception") or {}).get("description") or d.get("text", "exception")
        where = f" ({d.get('url', '')}:{d.get('lineNumber', '')})" if d.get("url") else ""
        return f"uncaught {text.splitlines()[0]}{where}", True
    if method == "Runtime.consoleAPICalled":
        args = []
        for a in p.get("args", []):
            args.append(str(a["value"]) if "value" in a
                        else a.get("description", a.get("type", "")))
        kind = p.get("type", "log")
        return f"console.{kind}: {' '.join(args)[:500]}", kind in ("error", "assert")
    if method == "Log.entryAdded":
        e = p.get("entry", {})
        url = f" ({e['url']})" if e.get("url") else ""
        return f"{e.get('source', 'log')} {e.get('level')}: {e.get('text', '')[:500]}{url}", \
            e.get("level") == "error"
    return None


def shot_name(rel: str) -> str:
    return rel.replace("/", "__").removesuffix(".html") + ".png"


async def check_page(browser: Browser, root: Path, page: Path, shots: Path | None,
                     chapter: bool = False, ids_cache: dict | None = None) -> PageResult:
    cdp, start = browser.cdp, time.monotonic()
    rel = page.resolve().relative_to(root.resolve()).as_posix()
    result = PageResult(rel)
    # A fresh browser context per page: empty storage and cache, as on a reader's first visit,
    # so what one page leaves in localStorage cannot hide another page's error.
    context = (await cdp.send("Target.createBrowserContext"))["browserContextId"]
    target = (await cdp.send("Target.createTarget", {"url": "about:blank",
                                                     "browserContextId": context}))["targetId"]
    sid = (await cdp.send("Target.attachToTarget",
                          {"targetId": target, "flatten": True}))["sessionId"]
    events = cdp.watch(sid)
    try:
        for domain in ("Page", "Runtime", "Log"):
            await cdp.send(f"{domain}.enable", session=sid)
        await cdp.send("Emulation.setDeviceMetricsOverride",
                       {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
                       session=sid)
        loaded = cdp.expect(sid, "Page.loadEventFired")
        nav = await cdp.send("Page.navigate", {"url": page.resolve().as_uri()}, session=sid)
        if nav.get("errorText"):
            result.problems.append(f"page did not open: {nav['errorText']}")
            return result
        try:
            await asyncio.wait_for(loaded, LOAD_TIMEOUT_S)
        except asyncio.TimeoutError:
            result.problems.append(f"no load event within {LOAD_TIMEOUT_S:.0f} s")
        redirect = _redirect_target(page)
        if redirect:  # a meta refresh (index.html): wait for the target's load, judge the target
            deadline = time.monotonic() + LOAD_TIMEOUT_S
            while sum(e.get("method") == "Page.loadEventFired" for e in events) < 2:
                if time.monotonic() > deadline:
                    result.problems.append(f"the redirect to {redirect} did not load")
                    break
                await asyncio.sleep(0.05)
        probe = await _evaluate(cdp, sid, f"({PROBE_JS})({PAGE_WAIT_MS})",
                                timeout=PAGE_WAIT_MS / 1000 * 3 + 30)
        await asyncio.sleep(0.1)  # let the last console events arrive
        _judge(result, probe, page, root, chapter, ids_cache if ids_cache is not None else {})
        prefix = root.resolve().as_uri() + "/"
        for event in events:
            line = _console_line(event)
            if line:
                text = line[0].replace(prefix, "")  # file:///.../html/x.js -> x.js
                result.console.append(text)
                if line[1]:
                    result.problems.append(f"console error: {text}")
        if shots is not None:
            result.screenshot = await _screenshot(cdp, sid, shots / shot_name(rel))
    except BrowserError as err:
        result.problems.append(f"browser: {err}")
    finally:
        cdp.unwatch(sid)
        try:
            await cdp.send("Target.closeTarget", {"targetId": target}, timeout=10)
            await cdp.send("Target.disposeBrowserContext", {"browserContextId": context},
                           timeout=10)
        except BrowserError:
            pass
        result.seconds = round(time.monotonic() - start, 2)
    return result


async def _evaluate(cdp: CDP, sid: str, expression: str, timeout: float):
    res = await cdp.send("Runtime.evaluate", {"expression": expression, "awaitPromise": True,
                                              "returnByValue": True}, session=sid, timeout=timeout)
    if "exceptionDetails" in res:
        d = res["exceptionDetails"]
        raise BrowserError("probe failed: " + ((d.get("exception") or {}).get("description")
                                               or d.get("text", "")))
    return res["result"].get("value")


def _judge(result: PageResult, probe: dict, page: Path, root: Path, chapter: bool,
           ids_cache: dict) -> None:
    p = result.problems
    landed, _ = _url_path(probe["url"])
    if landed.resolve() != page.resolve():
        try:
            result.stats["redirected_to"] = landed.resolve().relative_to(root.resolve()).as_posix()
        except ValueError:
            p.append(f"page left the book: {probe['url']}")
    if probe.get("text_length", 0) == 0:
        p.append("the page shows no text")
    for src in probe["images_broken"]:
        p.append(f"broken image: {src}")
    if probe.get("mathjax_failure"):
        p.append(f"MathJax failed: {probe['mathjax_failure']}")
    if probe["math_unrendered"]:
        p.append(f"{len(probe['math_unrendered'])} of {probe['math']} maths not typeset by "
                 f"MathJax, the first: {probe['math_unrendered'][0]!r}")
    for text in dict.fromkeys(probe["math_errors"]):  # (SVG output marks an error twice)
        p.append(f"MathJax error: {text}")
    if probe["widgets_unrendered"]:
        p.append(f"{probe['widgets_unrendered']} of {probe['widgets']} widget views not rendered")
    if probe["widget_errors"]:
        p.append(f"{probe['widget_errors']} widgets show the manager's error widget")
    for m in probe["media"]:
        if m["error"] or m["play_error"] or not m["current_time"] > 0:
            why = (m["error"] or m["play_error"]
                   or f"did not advance (readyState {m['ready_state']})")
            p.append(f"<{m['tag']}> cannot play: {why} [{m['src']}]")
    if chapter and probe["cell_outputs_nonempty"] == 0:
        p.append(f"chapter page without executed outputs ({probe['cell_outputs']} "
                 f"cell_output elements, none with content)")
    p.extend(check_refs(landed, root, probe["refs"], set(probe["ids"]), ids_cache))
    result.stats.update({k: probe[k] for k in ("title", "math", "mathjax_loaded", "widgets",
                                               "widgets_unrendered", "widget_errors",
                                               "images", "cell_outputs_nonempty")})
    result.stats["media"] = len(probe["media"])
    result.stats["refs"] = len(probe["refs"])


async def _screenshot(cdp: CDP, sid: str, path: Path) -> str:
    """The top :data:`MAX_SHOT_HEIGHT` px of the page: the viewport grows to that height (a
    ``captureBeyondViewport`` clip shifts the theme's fixed-width layout)."""
    metrics = await cdp.send("Page.getLayoutMetrics", session=sid)
    size = metrics.get("cssContentSize") or metrics.get("contentSize")
    height = max(HEIGHT, min(int(size["height"]), MAX_SHOT_HEIGHT))
    await cdp.send("Emulation.setDeviceMetricsOverride",
                   {"width": WIDTH, "height": height, "deviceScaleFactor": 1, "mobile": False},
                   session=sid)
    await cdp.send("Runtime.evaluate", {"expression": "new Promise(r => requestAnimationFrame("
                                        "() => requestAnimationFrame(r)))", "awaitPromise": True},
                   session=sid)
    shot = await cdp.send("Page.captureScreenshot", {"format": "png"}, session=sid)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(base64.b64decode(shot["data"]))
    return str(path)


def _redirect_target(page: Path) -> str | None:
    head = page.read_text(encoding="utf8", errors="replace")[:2000]
    m = re.search(r'http-equiv="Refresh"[^>]*url=([^"]+)"', head, re.I)
    return m.group(1) if m else None


# --------------------------------------------------------------------------------------------
# A whole book
# --------------------------------------------------------------------------------------------
def book_pages(html: Path) -> list[Path]:
    """Every HTML page of a built book, ``_static/`` (theme templates) and ``_sources`` aside."""
    skip = ("_static", "_sources", "_images")
    return sorted(p for p in html.rglob("*.html")
                  if not p.relative_to(html).parts[0] in skip)


def chapter_pages(profile: str, html: Path, root: Path = ROOT) -> list[Path]:
    """Where ``avlib.book.build`` puts each chapter of ``profile`` in the HTML book."""
    from avlib import book

    executed = book.executed_dir(profile, root).relative_to(root)
    return [html / executed / f"{c.name}.html" for c in book.find_chapters(root)]


async def check_pages(root: Path, pages: list[Path], shots: Path | None, browser: Browser,
                      chapters: set[Path] = frozenset()) -> list[PageResult]:
    """Check ``pages`` (files under the HTML root ``root``) one after the other, a tab each."""
    ids_cache: dict = {}
    chapters = {c.resolve() for c in chapters}
    return [await check_page(browser, root, page, shots, page.resolve() in chapters, ids_cache)
            for page in pages]


class SyncBrowser:
    """:class:`Browser` with its own event loop, for callers without one (pytest fixtures)::

        with SyncBrowser() as browser:
            results = check_book(html, chapters, shots, browser=browser)
    """

    def __init__(self, executable: str | None = None):
        self.loop = asyncio.new_event_loop()
        self.browser = Browser(executable)

    def __enter__(self) -> "SyncBrowser":
        try:
            self.loop.run_until_complete(self.browser.__aenter__())
        except BaseException:
            self.loop.close()
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.loop.run_until_complete(self.browser.__aexit__(*exc))
        finally:
            self.loop.close()

    def run(self, coro):
        return self.loop.run_until_complete(coro)


def check_book(html: Path, chapters: list[Path], shots: Path | None,
               pages: list[Path] | None = None, browser: SyncBrowser | None = None
               ) -> list[PageResult]:
    """Check ``pages`` (default: every page, :func:`book_pages`) of the book under ``html``;
    ``chapters`` are the pages that must exist and show executed outputs. With ``shots``, each
    page's screenshot and ``report.json`` go there."""
    results = [PageResult(c.relative_to(html).as_posix(), ["chapter page missing from the book"])
               for c in chapters if not c.is_file()]
    pages = book_pages(html) if pages is None else pages
    if browser is None:
        with SyncBrowser() as own:
            results += own.run(check_pages(html, pages, shots, own.browser, set(chapters)))
    else:
        results += browser.run(check_pages(html, pages, shots, browser.browser, set(chapters)))
    if shots is not None:
        write_report(results, shots / "report.json")
    return results


def check_profile(profile: str = "smoke", shots: Path | None = None, root: Path = ROOT,
                  browser: SyncBrowser | None = None) -> list[PageResult]:
    """Check every page of the book ``avlib book build --profile <profile>`` wrote; screenshots
    go to ``shots`` (default ``_build/browser/<profile>``, emptied first)."""
    from avlib import book

    html = book.html_dir(profile, root)
    if not (html / "index.html").is_file():
        raise BrowserError(f"no built book at {html}; run `avlib book build --profile {profile}`")
    shots = shots or root / "_build" / "browser" / profile
    if browser is None:
        with SyncBrowser() as own:  # (started first: no browser, no screenshots deleted)
            return check_profile(profile, shots, root, own)
    if shots.exists():
        shutil.rmtree(shots)
    return check_book(html, chapter_pages(profile, html, root), shots, browser=browser)


def write_report(results: list[PageResult], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([asdict(r) for r in results], indent=1) + "\n")


def summary(results: list[PageResult]) -> str:
    lines = []
    for r in results:
        s = r.stats
        lines.append(f"{'ok  ' if r.ok else 'FAIL'} {r.page:46s} {r.seconds:5.1f} s  "
                     f"img {s.get('images', '-'):>2} media {s.get('media', '-'):>2} "
                     f"math {s.get('math', '-'):>2} widgets {s.get('widgets', '-')} "
                     f"outputs {s.get('cell_outputs_nonempty', '-'):>2} refs {s.get('refs', '-')}")
        lines.extend(f"     - {problem}" for problem in r.problems)
    bad = sum(not r.ok for r in results)
    lines.append(f"{len(results)} pages, {bad} with problems")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--profile", default="smoke", help="whose built book (default: smoke)")
    parser.add_argument("--shots", type=Path,
                        help="screenshot folder (default _build/browser/<profile>)")
    args = parser.parse_args(argv)
    start = time.monotonic()
    try:
        results = check_profile(args.profile, args.shots)
    except BrowserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(summary(results))
    print(f"checked in {time.monotonic() - start:.1f} s")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
