"""POSTing JSON to one endpoint over pooled connections, every answer read up to a cap.

urllib3, not httpx or the `openai` client: a labeling run keeps dozens of calls in flight against a fast
endpoint, and our per-call CPU is what limits it. httpcore's pool is scanned in Python on every request
and its answers are read 64 KB at a time through h11; urllib3 takes a pooled connection off a queue and
reads the body in C (http.client). Measured in benchmarks/label_capacity.py's setting (64 features in
flight, CPU per feature): a judge's call 3.8 -> 1.3 ms, a simulation answer of 2.6 MB 12 -> 6 ms, the
whole run's CPU down a quarter. Proxies from the environment (HTTPS_PROXY, NO_PROXY) are honoured as
httpx did (never for a loopback endpoint).
"""

import urllib.request
from collections.abc import Mapping
from typing import Any

import urllib3
from urllib3.util import make_headers, parse_url

from tools.llm.urls import is_loopback

USER_AGENT = "interp-agent"


class StatusFailure(Exception):
    """A non-2xx answer: its status, body (read up to the cap) and headers, for the caller to classify."""

    def __init__(self, status: int, body: bytes, headers: Mapping[str, str]):
        super().__init__(f"HTTP {status}")
        self.status, self.body, self.headers = status, body, headers


class TooLarge(Exception):
    """The answer is longer than the cap; it was not read past it."""


class TransportFailure(Exception):
    """No HTTP answer: refused, reset, timed out, or not HTTP at all. The message is one line."""


def one_line(error: BaseException) -> str:
    """urllib3's message without the connection object's repr it starts with."""
    text = " ".join(str(error).split())
    return (text.split("): ", 1)[-1] if "): " in text else text)[:200] or type(error).__name__


class JSONPoster:
    """A pool of keep-alive connections to the host of `base_url`, at most `connections` open, posting to
    paths under the base URL's own path (its query kept: some hosts need `?api-version=`). Each read of
    the socket waits at most `timeout` seconds; a deadline for the whole call is the caller's."""

    def __init__(self, base_url: str, headers: dict[str, str], timeout: float, connections: int):
        url = parse_url(base_url)
        self.path = (url.path or "").rstrip("/")
        self.query = f"?{url.query}" if url.query else ""
        headers = {"content-type": "application/json", "user-agent": USER_AGENT, **headers}
        if url.auth and "authorization" not in headers:
            headers |= make_headers(basic_auth=url.auth)
        options: dict[str, Any] = {"num_pools": 1, "maxsize": connections, "block": False, "headers": headers,
                                   "retries": False, "timeout": urllib3.Timeout(connect=timeout, read=timeout)}
        self.origin = f"{url.scheme or 'http'}://{url.netloc.rsplit('@', 1)[-1] if url.netloc else ''}"
        proxy = urllib.request.getproxies().get(url.scheme or "http")
        bypass = is_loopback(base_url) or urllib.request.proxy_bypass(url.host or "")
        self.manager = (urllib3.ProxyManager(proxy, **options) if proxy and not bypass
                        else urllib3.PoolManager(**options))

    def post(self, route: str, body: bytes, limit: int) -> bytes:
        """The answer's body; StatusFailure for a non-2xx answer, TooLarge past `limit` bytes,
        TransportFailure when no answer came."""
        try:
            response = self.manager.request("POST", self.origin + self.path + route + self.query, body=body,
                                            preload_content=False, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransportFailure(one_line(error)) from None
        whole = False
        try:
            length = response.headers.get("content-length", "")
            if length.isdigit() and int(length) > limit:
                raise TooLarge()
            if length.isdigit() and response.headers.get("content-encoding", "identity").lower() == "identity":
                # a known size within the cap, sent as is: one buffer filled in place. Reading by chunks
                # made every chunk, the growing whole and its final copy fresh memory the kernel faults
                # in: ~1,000 page faults for a feature's 2.6 MB simulation answer (~380 this way).
                answer: bytes | bytearray = response.read()
            else:
                answer = bytearray()
                for chunk in response.stream(2**20):
                    answer += chunk
                    if len(answer) > limit:
                        raise TooLarge()
            whole = True
        except (urllib3.exceptions.HTTPError, OSError) as error:
            raise TransportFailure(one_line(error)) from None
        finally:
            if not whole:
                response.close()  # unread bytes: the connection cannot carry another call
            response.release_conn()
        if not 200 <= response.status < 300:
            raise StatusFailure(response.status, bytes(answer), response.headers)
        return answer if isinstance(answer, bytes) else bytes(answer)

    def close(self) -> None:
        self.manager.clear()
