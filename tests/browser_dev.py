"""Browser-test harness for the dashboard: a real `streamlit run` on loopback and Debian's headless chromium.

- `StreamlitServer(script, env=...)`: `streamlit run SCRIPT` headless on a free loopback port, with the given
  environment added to this one (PYTHONPATH included, so the script imports this checkout); `start()` returns
  once `/_stcore/health` answers, or raises with the server's log if it exits or never answers.
- `Browser(shots_dir)`: headless chromium (`/usr/bin/chromium`) driven by selenium through Debian's
  `/usr/bin/chromedriver` — no driver download. `open(url)`, `wait_for(css)`, `wait_text(text)`, `wait_js(expr)`
  wait on the page itself (selenium's WebDriverWait), never a sleep; `click(css)`, `wait_image(css)` (loaded, with
  its natural size), `play_video(css)` (metadata, then playing: duration, size, frames decoded);
  `screenshot(name)` saves `name.png`.
- Screenshots go to the directory a test gives (its tmp_path); when `GGVISION_SCREENSHOTS` names a directory they
  go there instead — `bench/screenshots.py` sets it to docs/img/dashboard/ and runs the dashboard's browser
  tests, so every picture the docs link is one a test checked.
- `browser_available()` says why a browser test cannot run here (no chromium or chromedriver), for pytest.skip.

Use in a test module:

    @pytest.fixture
    def browser(tmp_path):
        reason = browser_available()
        if reason:
            pytest.skip(reason)
        with Browser(tmp_path / "shots") as b:
            yield b

    def test_page(browser, tmp_path):
        with StreamlitServer(script, env={...}) as app:
            browser.open(app.url)
            browser.wait_text("Events")
            browser.screenshot("events")
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/lib/chromium/chromium")  # the binary itself: /usr/bin/chromium is a shell launcher
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS_ENV = "GGVISION_SCREENSHOTS"


def browser_available() -> str | None:
    """None when headless chromium can run here, else the reason it cannot."""
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not path.exists():
            return f"{path} is missing (install Debian's {package})"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (the dev extra pins it)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StreamlitServer:
    """`streamlit run SCRIPT` as a subprocess on loopback; a context manager that stops it on exit."""

    def __init__(
        self,
        script: Path | str,
        env: dict[str, str] | None = None,
        args: list[str] | None = None,
        address: str = "127.0.0.1",
        port: int | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.script = Path(script)
        if not self.script.is_file():
            raise FileNotFoundError(f"streamlit script {self.script} does not exist")
        self.env = {**os.environ, **(env or {})}
        self.args = list(args or [])
        self.address = address
        self.port = port or free_port()
        self.cwd = cwd
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="streamlit-", suffix=".log")[1])
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        host = "127.0.0.1" if self.address in ("0.0.0.0", "127.0.0.1") else self.address
        return f"http://{host}:{self.port}"

    def command(self) -> list[str]:
        return [
            sys.executable, "-m", "streamlit", "run", str(self.script),
            "--server.headless=true",
            f"--server.address={self.address}",
            f"--server.port={self.port}",
            "--server.fileWatcherType=none",  # no inotify watchers: tests share a small machine
            "--browser.gatherUsageStats=false",
            "--global.developmentMode=false",
            *(["--", *self.args] if self.args else []),
        ]  # fmt: skip

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def start(self, timeout: float = 45.0) -> StreamlitServer:
        log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            self.command(), env=self.env, cwd=self.cwd, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        deadline = time.monotonic() + timeout
        health = f"{self.url}/_stcore/health"
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.proc.returncode} before answering; log:\n{self.log()}")
            try:
                with urllib.request.urlopen(health, timeout=2) as r:
                    if r.status == 200:
                        return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.1)  # polling a port another process opens: there is no event to await
        self.stop()
        raise TimeoutError(f"streamlit did not answer {health} within {timeout}s; log:\n{self.log()}")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def __enter__(self) -> StreamlitServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Browser:
    """Headless chromium through selenium; waits on the page, saves screenshots."""

    def __init__(self, shots_dir: Path | str, width: int = 1280, height: int = 900, timeout: float = 30.0) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        override = os.environ.get(SCREENSHOTS_ENV)
        self.shots_dir = Path(override) if override else Path(shots_dir)
        self.timeout = timeout
        opts = webdriver.ChromeOptions()
        opts.binary_location = str(CHROMIUM)
        for arg in (
            "--headless=new",
            "--no-sandbox",  # tests run as root in containers, where chromium's sandbox cannot start
            "--disable-dev-shm-usage",
            "--disable-gpu",
            "--mute-audio",
            "--autoplay-policy=no-user-gesture-required",  # a test may call video.play() without a click
            f"--window-size={width},{height}",
        ):
            opts.add_argument(arg)
        self.driver = webdriver.Chrome(options=opts, service=Service(str(CHROMEDRIVER)))
        self.driver.set_page_load_timeout(timeout)

    def open(self, url: str) -> None:
        """Load a page and wait until Streamlit's app frame is there and its script run has finished."""
        self.driver.get(url)
        self.wait_for('[data-testid="stApp"]')
        self.wait_idle()

    def wait_idle(self, timeout: float | None = None) -> None:
        """Wait until Streamlit has run the script and is idle (stApp's `data-test-script-state` says so)."""
        self.wait_js(
            "const a = document.querySelector('[data-testid=\"stApp\"]');"
            "return a && a.getAttribute('data-test-script-state') === 'notRunning'",
            timeout=timeout,
            what="the script run to finish",
        )

    def wait_for(self, css: str, timeout: float | None = None, visible: bool = False) -> Any:
        """The first element matching a CSS selector, once it is in the page (and visible, if asked)."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ec
        from selenium.webdriver.support.ui import WebDriverWait

        cond = ec.visibility_of_element_located if visible else ec.presence_of_element_located
        try:
            return WebDriverWait(self.driver, timeout or self.timeout).until(cond((By.CSS_SELECTOR, css)))
        except TimeoutException:
            page = self.text()[:2000]
            raise AssertionError(f"no element {css!r} within {timeout or self.timeout}s; page text:\n{page}") from None

    def wait_text(self, text: str, timeout: float | None = None) -> None:
        """Wait until the page's visible text contains `text`."""
        self.wait_js(
            "return document.body && document.body.innerText.includes(arguments[0])",
            text,
            timeout=timeout,
            what=f"text {text!r}",
        )

    def wait_js(self, script: str, *args: Any, timeout: float | None = None, what: str = "") -> Any:
        """Run a JavaScript snippet (with `return`) until it returns something truthy; returns that."""
        from selenium.common.exceptions import TimeoutException
        from selenium.webdriver.support.ui import WebDriverWait

        try:
            return WebDriverWait(self.driver, timeout or self.timeout, poll_frequency=0.1).until(
                lambda d: d.execute_script(script, *args)
            )
        except TimeoutException:
            raise AssertionError(
                f"timed out after {timeout or self.timeout}s waiting for {what or script!r}; page text:\n"
                f"{self.text()[:2000]}"
            ) from None

    def click(self, css: str, timeout: float | None = None) -> None:
        """Click the first element matching `css` once it is visible."""
        self.wait_for(css, timeout, visible=True).click()

    def wait_image(self, css: str = "img", timeout: float | None = None) -> dict[str, int]:
        """Wait until an image matching `css` has loaded (complete, natural size > 0); returns its natural size."""
        return self.wait_js(
            "const i = document.querySelector(arguments[0]);"
            " return i && i.complete && i.naturalWidth > 0 && {width: i.naturalWidth, height: i.naturalHeight}",
            css,
            timeout=timeout,
            what=f"image {css!r} to load",
        )

    def play_video(self, css: str = "video", min_time: float = 0.5, timeout: float | None = None) -> dict[str, Any]:
        """Wait for a <video>'s metadata, start it (muted), and wait until it has played `min_time` seconds.

        Returns {duration, width, height, src, time, frames}; a MediaError (the browser cannot play it) fails
        with its code instead of timing out."""
        video = self.wait_for(css, timeout)
        meta = self.wait_js(
            "const v = arguments[0]; if (v.error) return {error: v.error.code};"
            " return v.readyState >= 1 && {duration: v.duration, width: v.videoWidth, height: v.videoHeight,"
            " src: v.currentSrc}",
            video,
            timeout=timeout,
            what=f"the metadata of {css!r}",
        )
        if "error" in meta:
            raise AssertionError(f"chromium cannot play {css!r}: MediaError code {meta['error']}")
        self.driver.execute_script("arguments[0].muted = true; arguments[0].play()", video)
        played = self.wait_js(
            "const v = arguments[0]; if (v.error) return {error: v.error.code};"
            " return v.currentTime >= arguments[1]"
            " && {time: v.currentTime, frames: v.getVideoPlaybackQuality().totalVideoFrames}",
            video,
            min_time,
            timeout=timeout,
            what=f"{css!r} to play {min_time} s",
        )
        if "error" in played:
            raise AssertionError(f"chromium stopped playing {css!r}: MediaError code {played['error']}")
        return {**meta, **played}

    def text(self) -> str:
        with contextlib.suppress(Exception):
            return self.driver.execute_script("return document.body ? document.body.innerText : ''") or ""
        return ""

    def screenshot(self, name: str) -> Path:
        """Save the viewport as `name.png` in the screenshots directory; returns its path."""
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"screenshot name {name!r} must be a plain file name")
        self.shots_dir.mkdir(parents=True, exist_ok=True)
        path = self.shots_dir / f"{name}.png"
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"chromium could not save the screenshot {path}")
        return path

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.driver.quit()

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
