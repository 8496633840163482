"""A headless Chromium to look at the demo page: find one, dump its DOM after load, take a screenshot.

Found, in order: ``$MEDGEN_BROWSER`` (an executable), a Chromium/Chrome or ``chromium-headless-shell`` on PATH, or
the Debian ``chromium-headless-shell`` unpacked into ``.cache/browser/`` by ``scripts/get_browser.sh`` (run with
``LD_LIBRARY_PATH`` set to the unpacked libraries). :func:`render_check` opens a copy of a page with a script that
records script errors, failed resource loads and images with ``naturalWidth == 0`` into the DOM, and reads them
back from ``--dump-dom``. Written here, not with Playwright or Selenium: neither ships a browser that installs
offline, and this needs two command-line calls of the browser.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

#: The folder ``scripts/get_browser.sh`` unpacks into (beside the source tree's ``medgen`` package).
CACHE = Path(__file__).resolve().parents[2] / ".cache" / "browser"
#: Executable names tried on PATH.
NAMES = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable",
         "headless_shell")  # fmt: skip
#: Flags of every call: no sandbox (containers, root), headless, no GPU, no first-run work.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--hide-scrollbars",
         "--allow-file-access-from-files", "--disable-dev-shm-usage")  # fmt: skip

#: Injected first into the page's head: records errors and broken images, on load, into ``#medgen-render-check``.
PROBE = """<script>
(function () {
  var errors = [];
  window.addEventListener('error', function (e) {
    var t = e.target;
    if (t && t !== window && t.tagName) { errors.push('failed to load ' + t.tagName.toLowerCase() + ' ' +
      (t.getAttribute('src') || t.getAttribute('href'))); }
    else { errors.push('script error: ' + e.message + ' at ' + e.filename + ':' + e.lineno); }
  }, true);
  window.addEventListener('unhandledrejection', function (e) { errors.push('unhandled rejection: ' + e.reason); });
  window.addEventListener('load', function () {
    setTimeout(function () {
      var broken = [], images = document.images;
      for (var i = 0; i < images.length; i++) {
        if (!images[i].complete || images[i].naturalWidth === 0) { broken.push(images[i].getAttribute('src')); }
      }
      var out = document.createElement('div');
      out.id = 'medgen-render-check';
      out.setAttribute('data-result', JSON.stringify({errors: errors, broken: broken, images: images.length}));
      document.body.appendChild(out);
    }, 0);
  });
})();
</script>"""


@dataclass(frozen=True)
class Browser:
    """A headless Chromium and the environment it runs in.

    Attributes:
        executable: The browser binary.
        library_path: Folders added to ``LD_LIBRARY_PATH`` (an unpacked Debian package's libraries).
    """

    executable: Path
    library_path: tuple[Path, ...] = ()

    def run(self, args: list[str], timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run the browser with :data:`FLAGS` and ``args``; returns the finished process (text output)."""
        env = dict(os.environ)
        if self.library_path:
            env["LD_LIBRARY_PATH"] = os.pathsep.join([*map(str, self.library_path), env.get("LD_LIBRARY_PATH", "")])
        return subprocess.run([str(self.executable), *FLAGS, *args], capture_output=True, text=True, env=env,
                              timeout=timeout, check=False)  # fmt: skip


@dataclass
class RenderCheck:
    """What the page did when it loaded.

    Attributes:
        found: The probe ran (False: the page did not load or the browser failed; see ``log``).
        errors: Script errors and resources that failed to load.
        broken: ``src`` of every image that did not decode (``naturalWidth == 0``).
        images: Number of ``<img>`` elements.
        log: The browser's stderr (for failures).
    """

    found: bool
    errors: list[str] = field(default_factory=list)
    broken: list[str] = field(default_factory=list)
    images: int = 0
    log: str = ""


def find_browser() -> Browser | None:
    """The first headless-capable Chromium found (see the module docstring), or None."""
    given = os.environ.get("MEDGEN_BROWSER")
    if given and Path(given).is_file():
        return Browser(Path(given))
    for name in NAMES:
        path = shutil.which(name)
        if path:
            return Browser(Path(path))
    shell = CACHE / "usr" / "lib" / "chromium" / "chromium-headless-shell"
    if shell.is_file():
        folders = sorted({p.parent for p in CACHE.rglob("*.so*") if p.is_file()})
        return Browser(shell, tuple(folders))
    return None


def render_check(page: Path, browser: Browser, budget_ms: int = 5000) -> RenderCheck:
    """Load ``page`` (a copy beside it, with :data:`PROBE` injected) and report errors and broken images.

    Args:
        page: An HTML file; relative links resolve as for the page itself.
        browser: The browser to use.
        budget_ms: Virtual time the page gets to load (``--virtual-time-budget``).
    """
    text = page.read_text(encoding="utf-8")
    probe = page.with_name(f".{page.stem}.render-check.html")
    head = re.search(r"<head[^>]*>", text, flags=re.IGNORECASE)
    at = head.end() if head else 0
    probe.write_text(text[:at] + PROBE + text[at:], encoding="utf-8")
    try:
        done = browser.run([f"--virtual-time-budget={budget_ms}", "--dump-dom", probe.resolve().as_uri()])
    finally:
        probe.unlink(missing_ok=True)
    match = re.search(r"id=\"medgen-render-check\" data-result=\"([^\"]*)\"", done.stdout)
    if not match:
        return RenderCheck(False, log=done.stderr[-4000:])
    import html

    result = json.loads(html.unescape(match.group(1)))
    return RenderCheck(True, result["errors"], result["broken"], int(result["images"]), done.stderr[-4000:])


def screenshot(page: Path, png: Path, browser: Browser, size: tuple[int, int] = (1200, 2400)) -> Path:
    """Save a PNG screenshot of ``page`` at ``size`` (width, height) pixels.

    Raises:
        RuntimeError: The browser wrote no picture (its stderr is in the message).
    """
    png.parent.mkdir(parents=True, exist_ok=True)
    png.unlink(missing_ok=True)
    done = browser.run([f"--window-size={size[0]},{size[1]}", "--virtual-time-budget=5000",
                        f"--screenshot={png.resolve()}", page.resolve().as_uri()])  # fmt: skip
    if not png.is_file():
        raise RuntimeError(f"the browser wrote no screenshot: {done.stderr[-2000:]}")
    return png
