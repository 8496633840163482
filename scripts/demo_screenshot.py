"""Screenshot of the demo's ``index.html`` for the README: ``python scripts/demo_screenshot.py [DEMO_OUT] [PNG]``.

Renders the page in the headless Chromium that :func:`medgen.demo.browser.find_browser` finds (``bash
scripts/get_browser.sh`` fetches one), crops the empty space below the page and stores it as a palette PNG
(default: ``demo_out/index.html`` -> ``docs/demo_index.png``).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from PIL import Image

from medgen.demo.browser import find_browser, screenshot

ROOT = Path(__file__).resolve().parents[1]


def main(demo_out: Path, png: Path, width: int = 1200, height: int = 4000) -> Path:
    """Screenshot ``demo_out/index.html`` into ``png`` (cropped below the content); returns ``png``."""
    browser = find_browser()
    if browser is None:
        raise SystemExit("no headless Chromium found: run `bash scripts/get_browser.sh` (or set MEDGEN_BROWSER)")
    screenshot(demo_out / "index.html", png, browser, (width, height))
    image = Image.open(png).convert("RGB")
    rows = np.flatnonzero((np.asarray(image) < 250).any(axis=(1, 2)))
    bottom = min(image.height, int(rows[-1]) + 24) if len(rows) else image.height
    image.crop((0, 0, width, bottom)).quantize(colors=128).save(png, optimize=True)
    print(f"{png} ({width}x{bottom}, {png.stat().st_size // 1024} KiB)")
    return png


if __name__ == "__main__":
    args = sys.argv[1:]
    main(
        Path(args[0]) if args else ROOT / "demo_out",
        Path(args[1]) if len(args) > 1 else ROOT / "docs" / "demo_index.png",
    )
