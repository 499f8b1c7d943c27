"""Fail fast when the Hugging Face hub is out of reach, instead of hanging for ~48 s."""

from __future__ import annotations

import os
import socket
import threading
from functools import lru_cache

HUB_HOST, HUB_PORT, PROBE_SECONDS = "huggingface.co", 443, 3.0


def hub_endpoint() -> str | None:
    """HF_ENDPOINT (a mirror, an enterprise hub) when set, else None: huggingface.co."""
    return os.environ.get("HF_ENDPOINT") or None


def _probe_target() -> tuple[str, int]:
    endpoint = hub_endpoint()
    if not endpoint:
        return HUB_HOST, HUB_PORT
    from urllib.parse import urlsplit

    parts = urlsplit(endpoint)
    return parts.hostname or HUB_HOST, parts.port or (80 if parts.scheme == "http" else 443)


@lru_cache(maxsize=1)
def hub_unreachable_reason() -> str | None:
    """None when the hub answers; otherwise why not (offline mode, DNS, timeout)."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return "HF_HUB_OFFLINE=1 is set"
    result: list[str | None] = ["no answer within 3 s"]
    host, port = _probe_target()

    def probe():  # getaddrinfo has no timeout of its own, so it runs on a thread we stop waiting for
        try:
            with socket.create_connection((host, port), timeout=PROBE_SECONDS):
                result[0] = None
        except OSError as exc:
            result[0] = f"{host}: {exc.strerror or exc}"

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(PROBE_SECONDS + 0.5)
    return result[0]


def go_offline_if_unreachable() -> str | None:
    """Before transformers/datasets are imported: switch them to offline mode when the hub is
    out of reach, so loads from the local cache work and uncached loads fail in seconds."""
    reason = hub_unreachable_reason()
    if reason:
        os.environ["HF_HUB_OFFLINE"] = "1"
        os.environ["HF_DATASETS_OFFLINE"] = "1"
        os.environ["TRANSFORMERS_OFFLINE"] = "1"
    return reason
