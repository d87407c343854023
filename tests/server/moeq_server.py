"""Starts `moeq serve` on a free port for the end-to-end tests and stops it with SIGINT.

The server is asked for port 0 and prints the URL it got ("moeq serve: listening on http://..."),
so there is no race for a port. Its stderr goes to a log file that is printed when a test fails.
"""
import os
import re
import signal
import subprocess
import tempfile
import threading
import time


class MoeqServer:
    def __init__(self, moeq, model, *args, startup_timeout=60):
        self.log = tempfile.NamedTemporaryFile(prefix="moeq-serve-", suffix=".log", delete=False)
        cmd = [moeq, "serve", "-m", model, "--host", "127.0.0.1", "--port", "0", *args]
        self.cmd = cmd
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.url = None
        found = threading.Event()

        def read_stdout():
            for line in self.proc.stdout:
                m = re.search(r"listening on (http://\S+)", line)
                if m and not found.is_set():
                    self.url = m.group(1)
                    found.set()

        threading.Thread(target=read_stdout, daemon=True).start()
        deadline = time.time() + startup_timeout
        while not found.wait(0.05):
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()
                raise RuntimeError("moeq serve did not start: %s\n%s" % (" ".join(cmd), self.log_text()))

    @property
    def pid(self):
        return self.proc.pid

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def stop(self, timeout=20):
        """SIGINT, then the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                return None
        return self.proc.returncode

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def cleanup(self):
        self.kill()
        try:
            os.unlink(self.log.name)
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.kill()
        return False
