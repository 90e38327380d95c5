"""Render three pages of the built documentation site headless and save them as PNGs in ``docs/``.

    uv run sphinx-build -W --keep-going -b html docs docs/_build/html
    uv run --group screenshots python scripts/docs_screenshots.py [--html docs/_build/html]

Qt's WebEngine (PyQt6-WebEngine, the ``screenshots`` dependency group) loads each page from the files and grabs
the view, on Qt's ``offscreen`` platform (no display needed; software rendering).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = {  # page of the site -> screenshot
    "tour.html": "screenshot_tour.png",
    "reference/cli.html": "screenshot_cli.png",
    "reference/api/unetseg.html": "screenshot_api.png",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--html", type=Path, default=ROOT / "docs" / "_build" / "html", help="the built site")
    parser.add_argument("--out", type=Path, default=ROOT / "docs", help="folder for the PNGs")
    parser.add_argument("--size", default="1280x900", help="window size WxH (default: 1280x900)")
    args = parser.parse_args()
    os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
    os.environ.setdefault("QTWEBENGINE_CHROMIUM_FLAGS", "--disable-gpu --no-sandbox")
    from PyQt6.QtCore import QTimer, QUrl
    from PyQt6.QtWebEngineWidgets import QWebEngineView
    from PyQt6.QtWidgets import QApplication

    width, height = (int(v) for v in args.size.split("x"))
    app = QApplication(sys.argv[:1])
    view = QWebEngineView()
    view.resize(width, height)
    view.show()
    queue = list(PAGES.items())
    failures: list[str] = []

    def load_next() -> None:
        if not queue:
            app.quit()
            return
        page, _ = queue[0]
        path = args.html / page
        if not path.is_file():
            failures.append(f"{path}: not built")
            queue.pop(0)
            load_next()
            return
        view.load(QUrl.fromLocalFile(str(path.resolve())))

    def loaded(ok: bool) -> None:
        page, png = queue[0]
        if not ok:
            failures.append(f"{page}: did not load")
            queue.pop(0)
            load_next()
            return
        QTimer.singleShot(1500, lambda: grab(png))  # fonts and the theme's scripts settle

    def grab(png: str) -> None:
        target = args.out / png
        if not view.grab().save(str(target)):
            failures.append(f"{target}: not written")
        else:
            print(f"wrote {target}")
        queue.pop(0)
        load_next()

    view.loadFinished.connect(loaded)
    load_next()
    app.exec()
    for line in failures:
        print(line, file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
