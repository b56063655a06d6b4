"""The settings a client is built with, shared by the sync and async clients."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field

from audit_ingest_sdk._retry import RetryPolicy
from audit_ingest_sdk._version import __version__

DEFAULT_TIMEOUT = 15.0
"""Seconds per request. The server answers 503 after about 11 s when the broker is slow, so a
shorter timeout would give up on answers that are coming."""

DEFAULT_GZIP_THRESHOLD = 1024
API_KEY_ENV = "AUDIT_INGEST_API_KEY"
BASE_URL_ENV = "AUDIT_INGEST_URL"
USER_AGENT = f"audit-ingest-sdk-python/{__version__}"


@dataclass(frozen=True)
class ClientConfig:
    """What both clients need to build requests: credentials, address, encoding, retries."""

    api_key: str
    base_url: str
    gzip: bool = False
    gzip_threshold: int = DEFAULT_GZIP_THRESHOLD
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    stamp_time: bool = True

    def __post_init__(self) -> None:
        if not self.api_key:
            raise ValueError(f"api_key is required (the key the service issued, or {API_KEY_ENV})")
        if not self.base_url.startswith(("http://", "https://")):
            raise ValueError(f"base_url must be an http(s) URL, not {self.base_url!r}")
        if self.gzip_threshold < 0:
            raise ValueError("gzip_threshold must be 0 or more")

    @classmethod
    def build(
        cls,
        api_key: str | None,
        base_url: str | None,
        *,
        max_retries: int | None,
        retry: RetryPolicy | None,
        gzip: bool,
        gzip_threshold: int | None,
        stamp_time: bool,
    ) -> ClientConfig:
        """The config from a client's arguments, falling back on the environment."""
        key = api_key or os.environ.get(API_KEY_ENV, "")
        url = base_url or os.environ.get(BASE_URL_ENV, "")
        if not url:
            raise ValueError(f"base_url is required (or set {BASE_URL_ENV})")
        policy = retry or RetryPolicy()
        if max_retries is not None:
            policy = dataclasses.replace(policy, max_retries=max_retries)
        return cls(
            api_key=key,
            base_url=url,
            gzip=gzip,
            gzip_threshold=DEFAULT_GZIP_THRESHOLD if gzip_threshold is None else gzip_threshold,
            retry=policy,
            stamp_time=stamp_time,
        )

    def url(self, path: str) -> str:
        """The absolute URL of an API path such as `/v1/events`."""
        return self.base_url.rstrip("/") + path

    def headers(self) -> dict[str, str]:
        """Headers every request carries."""
        return {
            "X-API-Key": self.api_key,
            "Content-Type": "application/json",
            "Accept": "application/json, application/problem+json",
            "User-Agent": USER_AGENT,
        }
