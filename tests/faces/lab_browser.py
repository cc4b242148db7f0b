"""A JupyterLab server and a headless Chromium for the browser test (tests/faces/test_browser_lab.py).

``Lab`` starts ``jupyter lab`` from this interpreter's environment on 127.0.0.1, a free port and
a generated token, with every folder it writes (config, data, runtime, workspaces, settings,
$HOME) in a temporary folder, autosave and news off. ``Browser`` drives Debian's chromium through
Debian's chromedriver with selenium. Both are shut down by the process they started.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

CHROMIUM_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu",
                  "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                  "--window-size=1400,1000"]
ENABLE = ("run ./tests/run.sh as root on Debian (it installs them), or "
          "'sudo apt-get install chromium chromium-driver' and 'pip install -e .[test]'")

# JupyterLab user settings: autosave off (the served notebooks stay as they are), no news or
# update checks (no network here).
LAB_SETTINGS = {
    "@jupyterlab/docmanager-extension/plugin.jupyterlab-settings": {"autosave": False},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings":
        {"fetchNews": "false", "checkForUpdates": False},
}


def missing_browser() -> str | None:
    """Why the browser test cannot run here (None when it can)."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium is not installed: {ENABLE}"
    absent = [name for name in ("chromium", "chromedriver") if shutil.which(name) is None]
    if absent:
        return f"{' and '.join(absent)} not found: {ENABLE}"
    return None


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def stop_process(proc: subprocess.Popen, grace_s: float = 20.0) -> None:
    """SIGTERM ``proc`` (the leader of its own process group), SIGKILL its group if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace_s)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # anything of that group still alive
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait(5)


class Lab:
    """``jupyter lab`` serving ``root`` (a folder of notebooks), its state kept under ``home``."""

    def __init__(self, root: Path, home: Path, env: dict[str, str] | None = None,
                 start_timeout_s: float = 120.0):
        self.root, self.home = Path(root), Path(home)
        self.port, self.token = free_port(), secrets.token_hex(24)
        self.url = f"http://127.0.0.1:{self.port}"
        dirs = {name: self.home / name for name in ("config", "data", "runtime", "workspaces",
                                                     "settings", "ipython")}
        for path in dirs.values():
            path.mkdir(parents=True, exist_ok=True)
        for name, settings in LAB_SETTINGS.items():
            path = dirs["settings"] / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(settings))
        self.env = {**os.environ, **(env or {}), "HOME": str(self.home),
                    "JUPYTER_CONFIG_DIR": str(dirs["config"]),
                    "JUPYTER_DATA_DIR": str(dirs["data"]),
                    "JUPYTER_RUNTIME_DIR": str(dirs["runtime"]),
                    "IPYTHONDIR": str(dirs["ipython"])}
        self.log_path = self.home / "jupyter-lab.log"
        command = [sys.executable, "-m", "jupyter", "lab", "--no-browser", "--ip=127.0.0.1",
                   f"--port={self.port}", "--ServerApp.port_retries=0",
                   f"--IdentityProvider.token={self.token}", f"--ServerApp.root_dir={self.root}",
                   f"--LabApp.user_settings_dir={dirs['settings']}",
                   f"--LabApp.workspaces_dir={dirs['workspaces']}",
                   "--ServerApp.terminals_enabled=False"]
        if os.geteuid() == 0:  # CI containers run as root
            command.append("--allow-root")
        self.log = open(self.log_path, "w")
        self.proc = subprocess.Popen(command, cwd=self.root, env=self.env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            self._wait_ready(start_timeout_s)
        except BaseException:
            self.stop()
            raise

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(f"{self.url}/api/{path}", method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def _wait_ready(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"jupyter lab exited with {self.proc.returncode}:\n"
                                   f"{self.log_path.read_text()[-3000:]}")
            try:
                self.api("status")
                return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.5)
        raise TimeoutError(f"jupyter lab not answering after {timeout_s:.0f} s; log: "
                           f"{self.log_path}")

    def shutdown_kernels(self) -> None:
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")

    def stop(self) -> None:
        """Shut the server down (its kernels with it) and end its process."""
        if self.proc.poll() is None:
            try:
                self.api("shutdown", method="POST")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                pass
        stop_process(self.proc)
        self.log.close()


class Browser:
    """Headless Debian chromium driven by Debian's chromedriver (selenium), fresh profile."""

    def __init__(self, home: Path):
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = shutil.which("chromium")
        for flag in CHROMIUM_FLAGS + [f"--user-data-dir={Path(home) / 'chromium-profile'}"]:
            options.add_argument(flag)
        # an explicit driver path: selenium never looks for (or downloads) a driver itself
        # chromium writes crash reports and caches under $HOME and XDG folders: keep them in home
        env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": str(Path(home) / ".config"),
               "XDG_CACHE_HOME": str(Path(home) / ".cache")}
        self.service = Service(executable_path=shutil.which("chromedriver"),
                               log_output=str(Path(home) / "chromedriver.log"), env=env)
        self.driver = None
        try:
            self.driver = webdriver.Chrome(service=self.service, options=options)
        except BaseException:
            self.stop()
            raise
        self.driver.set_page_load_timeout(120)
        self.driver.set_script_timeout(60)

    def stop(self) -> None:
        """Quit chromium, then end the chromedriver process started for it."""
        try:
            if self.driver is not None:
                self.driver.quit()
        finally:
            proc = getattr(self.service, "process", None)
            if proc is not None and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
