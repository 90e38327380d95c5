#!/usr/bin/env bash
# What napari (PyQt6) needs to draw on a machine without a screen: Debian's Xvfb, and the X/xcb, OpenGL,
# font and D-Bus libraries Qt's xcb platform plugin loads. (Qt's "offscreen" platform gives vispy no OpenGL
# context, so napari's canvas cannot draw there.) pytest-xvfb starts Xvfb for the tests. Idempotent; run by .ci/run.
set -euo pipefail
PACKAGES=(xvfb xauth libgl1 libegl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libx11-xcb1 libxkbcommon-x11-0
          libxcb-cursor0 libxcb-icccm4 libxcb-image0 libxcb-keysyms1 libxcb-randr0 libxcb-render-util0
          libxcb-shape0 libxcb-xfixes0 libxcb-xinerama0 libxcb-xkb1)
if dpkg -s "${PACKAGES[@]}" >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_headless_display: no apt-get here; install Xvfb and Qt's xcb libraries yourself (the napari tests skip without Xvfb)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != 0 ]; then
    if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
        echo "install_headless_display: not root and no sudo: the napari tests skip without Xvfb" >&2
        exit 0
    fi
fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >/dev/null
