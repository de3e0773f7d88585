"""The Chromium the portal's browser tests drive: the system's (Debian's `chromium`), never
one downloaded by Playwright. `make test` runs `python -m devtools.browser` first: it installs
the package when Chromium is missing and it can (root, with apt-get), and otherwise says that
the browser tests will be skipped (under CI=true they fail instead: tests/browser.py)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# CHROMIUM names another binary (a Chrome or Chromium of the developer's own).
CANDIDATES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
PACKAGE = "chromium"


def chromium_path() -> str | None:
    chosen = os.environ.get("CHROMIUM")
    if chosen:
        return shutil.which(chosen)
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    return None


def install() -> bool:
    """apt-get install chromium, updating the package lists first if the install fails
    without them (a new machine). True once Chromium is there."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return False
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}

    def run(*args: str) -> int:
        return subprocess.run([apt, *args], stdout=subprocess.DEVNULL, env=env).returncode

    print(f"browser tests: installing Debian's {PACKAGE} (apt-get) ...", flush=True)
    install_args = ("install", "-y", "-qq", "--no-install-recommends", PACKAGE)
    if run(*install_args) != 0:
        run("update", "-qq")
        run(*install_args)
    return chromium_path() is not None


def main() -> int:
    if chromium_path() is not None or install():
        return 0
    then = "fail (CI=true)" if os.environ.get("CI") else "be skipped"
    print(
        "browser tests: no Chromium (install Debian's chromium, or set CHROMIUM), and it could "
        f"not be installed here (root and apt-get needed): they will {then}",
        flush=True,
    )
    return 0  # the tests themselves skip, or fail under CI


if __name__ == "__main__":
    sys.exit(main())
