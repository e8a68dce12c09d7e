"""Connecting to Ray, and keeping it private (``--ray-address``).

:func:`connect_ray`: ``--ray-address`` joins an existing cluster (the checkout is
shipped to the workers as the job's ``working_dir``); without it a local instance is
started whose every server listens on 127.0.0.1 only. Ray's token authentication
(``RAY_AUTH_MODE=token``, Ray >= 2.52) is switched on unless the user set
``RAY_AUTH_MODE`` explicitly. See docs/ray.md.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from pathlib import Path
from typing import Optional

import ray

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
# what is not shipped to the workers with the code (on top of .gitignore)
_WORKING_DIR_EXCLUDES = [".git", ".venv", "runs", "__pycache__", ".pytest_cache", "*.pt", ".whl", ".gl"]
_LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"   # "0": node IP = loopback (read by ray's services)


def keep_token_auth_on() -> str:
    """Switch Ray's token authentication on unless ``RAY_AUTH_MODE`` was set by the user.

    Ray >= 2.52 authenticates every control-plane RPC and HTTP request with one shared
    token when ``RAY_AUTH_MODE=token`` (token from ``RAY_AUTH_TOKEN``,
    ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``; a local ``ray.init`` generates
    the file). Returns the mode in force.
    """
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is not None:
        if mode.lower() != "token":
            log.warning("RAY_AUTH_MODE=%s: Ray token authentication is OFF; anyone who can reach "
                        "the cluster's ports can run code on it", mode)
        return mode.lower()
    os.environ["RAY_AUTH_MODE"] = "token"
    try:   # Ray caches its config at import: refresh it so this process sees token mode too
        from ray._raylet import Config
        Config.initialize("")
    except (ImportError, AttributeError):   # Ray without token authentication
        pass
    return "token"


def _start_local_ray(num_cpus: int) -> None:
    """``ray.init`` a one-machine instance whose servers bind 127.0.0.1 only.

    Ray resolves ``_node_ip_address="127.0.0.1"`` to the machine's routable address on
    Linux unless ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` (its single-machine mode); then
    GCS, raylet, object manager, workers and agents all listen on loopback.
    """
    from ray._private import ray_constants
    old_env, old_flag = os.environ.get(_LOOPBACK_ENV), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[_LOOPBACK_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        ray.init(num_cpus=num_cpus, include_dashboard=False, dashboard_host="127.0.0.1",
                 _node_ip_address="127.0.0.1")
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(_LOOPBACK_ENV, None)
        else:
            os.environ[_LOOPBACK_ENV] = old_env


def connect_ray(address: str = "", num_cpus: Optional[int] = None, *, ship_code: bool = True) -> bool:
    """Join the cluster at ``address`` or start a loopback-only local instance.

    Returns True when this call connected (the caller then owns the connection and
    calls ``ray.shutdown()``: for a local instance that stops every Ray process, for a
    cluster it only disconnects); False when Ray was already initialised.

    Ray's core worker installs a failure-signal handler for SIGTERM that aborts the
    process; the trainer's own SIGINT/SIGTERM handlers (finish the update, checkpoint,
    stop) are put back after ``ray.init``.
    """
    if ray.is_initialized():
        return False
    keep_token_auth_on()
    saved = _python_signal_handlers()
    try:
        _init(address, num_cpus, ship_code)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
    return True


def _python_signal_handlers() -> dict:
    if threading.current_thread() is not threading.main_thread():
        return {}
    out = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        h = signal.getsignal(sig)
        if h is not None:                 # None: installed outside Python, cannot be restored
            out[sig] = h
    return out


def _init(address: str, num_cpus: Optional[int], ship_code: bool) -> None:
    if address:
        runtime_env = None
        if ship_code:
            runtime_env = {"working_dir": str(REPO_ROOT), "excludes": list(_WORKING_DIR_EXCLUDES)}
        try:
            ray.init(address=address, runtime_env=runtime_env)
        except ConnectionError as e:
            raise ConnectionError(f"--ray-address {address}: cannot connect to a Ray cluster ({e})") from None
    else:
        _start_local_ray(num_cpus if num_cpus is not None else max(os.cpu_count() or 1, 1))
