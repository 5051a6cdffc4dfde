"""Start a server as a real process on a free loopback port and wait until it answers."""

import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running(command: list[str], health_url: str, timeout: float = 60.0):
    """Yields the server's process once `health_url` answers; fails naming the bound if it has not within
    `timeout` seconds. Its stderr goes to a file, not a pipe: a pipe nobody reads fills up and stops the
    server mid-test once it has logged 64 KiB."""
    with tempfile.TemporaryFile() as errors:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=errors)
        try:
            deadline = time.monotonic() + timeout
            while True:
                if process.poll() is not None:
                    errors.seek(0)
                    raise RuntimeError(f"server exited: {errors.read().decode(errors='replace')[-2000:]}")
                try:
                    urllib.request.urlopen(health_url, timeout=1)
                    break
                except urllib.error.HTTPError:
                    break  # it answers, if not with 200 (an MCP endpoint refuses a bare GET)
                except OSError as error:
                    if time.monotonic() > deadline:
                        raise RuntimeError(f"server did not answer {health_url} within {timeout:.0f} s (the "
                                           f"bound of tools/testing/servers.py running): {error}") from None
                    time.sleep(0.2)
            yield process
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def stub_server(delay: float = 0.0, script: Path | None = None, record: Path | None = None,
                explanations: int | None = None):
    """The loopback stub (tools/testing/loopback_server.py); yields its base URL."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("loopback_server.py")), str(port), "--delay", str(delay)]
    if explanations is not None:
        command += ["--explanations", str(explanations)]
    if script is not None:
        command += ["--script", str(script)]
    if record is not None:
        command += ["--record", str(record)]
    with running(command, f"http://127.0.0.1:{port}/v1/models"):
        yield f"http://127.0.0.1:{port}/v1"


@contextmanager
def vllm_server(model: Path, *options: str, served_name: str = "tiny"):
    """The vLLM-protocol server (tools/testing/vllm_server.py) over a local model folder; yields its base URL."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("vllm_server.py")), str(model), str(port),
               "--served-name", served_name, *options]
    with running(command, f"http://127.0.0.1:{port}/v1/models", timeout=120):
        yield f"http://127.0.0.1:{port}/v1"


@contextmanager
def neuronpedia_server(record: Path, *options: str):
    """Neuronpedia's upload-batch route (tools/testing/neuronpedia_server.py); yields its base URL. The key it
    accepts is read from the environment (NEURONPEDIA_API_KEY unless --key-env says otherwise)."""
    port = free_port()
    command = [sys.executable, str(Path(__file__).with_name("neuronpedia_server.py")), str(port),
               "--record", str(record), *options]
    with running(command, f"http://127.0.0.1:{port}/"):
        yield f"http://127.0.0.1:{port}"
