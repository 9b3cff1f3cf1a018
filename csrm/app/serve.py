"""``csrm serve MODEL``: serve a CSRM over HTTP (:mod:`csrm.scoring.server`): parse the settings, read the token,
load the model, run uvicorn.

Everything that can be wrong with the settings (a port outside 1-65535, a model folder that does not exist or
is not a CSRM, a bad token source or default config) is an :class:`~csrm.base.errors.InputError` naming the
field (exit 2) *before* the model loads; ``--print-config`` runs the same checks.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import sys
from dataclasses import dataclass
from pathlib import Path

from csrm.base.config import at_least, dump, load_command, setting
from csrm.base.errors import InputError
from csrm.base.safety_config import SafetyConfig
from csrm.model.batching import DEFAULT_MAX_TOKENS
from csrm.scoring.reward_funcs import RewardOutput
from csrm.scoring.server.app import BODY_TIMEOUT_S, MAX_BODY_BYTES, MAX_ITEMS, create_app, display_name
from csrm.scoring.server.batching import BATCH_WAIT_MS, MAX_PENDING, REQUEST_TIMEOUT_S

logger = logging.getLogger(__name__)


def read_token(token_file: str | None, token_env: str | None) -> str | None:
    """The bearer token from a file or an environment variable (``None``: auth off); surrounding whitespace
    is dropped. Refused: both given, a missing or empty source. A token file others can read is warned about."""
    if token_file and token_env:
        raise InputError("give --token-file or --token-env, not both", field="--token-file")
    if token_file:
        path = Path(token_file)
        from csrm.base.io import read_text

        token = read_text(path).strip()
        if not token:
            raise InputError("empty token file", path=token_file, field="--token-file")
        if path.stat().st_mode & (stat.S_IRGRP | stat.S_IROTH):
            logger.warning("token file %s is readable by other users (chmod 600 it)", token_file)
    elif token_env:
        token = os.environ.get(token_env, "").strip()
        if not token:
            raise InputError(f"environment variable {token_env} is not set or empty", field="--token-env")
    else:
        return None
    if len(token) < 16:
        logger.warning("the bearer token is short (%d characters); use 16 or more random characters", len(token))
    return token



HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")


def port_number(value: int) -> str | None:
    """A :data:`~csrm.base.config.Check`: a TCP port, 1-65535."""
    return None if 1 <= value <= 65535 else f"must be a port number from 1 to 65535, got {value}"


def csrm_model(value: str) -> str | None:
    """A :data:`~csrm.base.config.Check`: an existing folder saved as a CSRM (its ``config.json`` names a
    ``csrm*`` model type), or a name that can only be a hub id (``name`` or ``org/name``, not a path that
    exists nowhere). Read without importing torch, so it fails before anything loads."""
    path = Path(value).expanduser()
    if not path.exists():
        if HUB_ID.match(value) and not value.startswith((".", "~")):
            return None  # a hub id: the loader reports what it cannot find
        return f"no such folder: {value}"
    if not path.is_dir():
        return f"not a folder: {value} (give the folder a CSRM was saved to)"
    config = path / "config.json"
    if not config.is_file():
        return f"no config.json in {value}: not a saved model folder"
    try:
        model_type = json.loads(config.read_text(encoding="utf-8")).get("model_type")
    except (ValueError, UnicodeDecodeError, AttributeError) as err:
        return f"{config} is not a JSON object: {err}"
    if not str(model_type).startswith("csrm"):
        return f"{value} is not a CSRM: its config.json has model_type {model_type!r} (expected csrm or csrm_clause)"
    return None


def positive(value: float) -> str | None:
    """A :data:`~csrm.base.config.Check`: a number > 0."""
    return None if value > 0 else f"must be > 0, got {value}"


@dataclass
class ServeConfig:
    """Settings of ``csrm serve`` (:func:`csrm.base.config.load_command`; MODEL is positional)."""

    model: str = setting(help="trained CSRM folder or hub id", check=csrm_model)
    host: str = setting("127.0.0.1", "address to listen on")
    port: int = setting(8000, "port to listen on (1-65535)", check=port_number)
    max_items: int = setting(MAX_ITEMS, "max items or responses per request", check=at_least(1))
    max_body_bytes: int = setting(MAX_BODY_BYTES, "max request body size in bytes", check=at_least(1))
    batch_wait_ms: float = setting(BATCH_WAIT_MS, "how long the idle batcher waits for more requests",
                                   check=at_least(0))
    batch_tokens: int | None = setting(None, "token budget per gathered batch (default 8192) and per forward "
                                       "batch (default 8192 on GPU, 2048 on CPU)", check=at_least(1))
    token_file: str | None = setting(None, "require 'Authorization: Bearer <token>' with the token read from "
                                     "this file")
    token_env: str | None = setting(None, "require a bearer token read from this environment variable")
    request_timeout: float = setting(REQUEST_TIMEOUT_S, "seconds a request may wait and be scored before it gets "
                                     "503 (0 = no limit); requests that cannot be scored in time at the "
                                     "measured throughput get 503 with Retry-After at once", check=at_least(0))
    body_timeout: float = setting(BODY_TIMEOUT_S, "seconds a client has to send its request body before it "
                                  "gets 408", check=positive)
    max_pending: int = setting(MAX_PENDING, "items that may wait to be scored; requests beyond get 503",
                               check=at_least(1))
    device: str | None = setting(None, "cpu, cuda, cuda:1 ... (default: cuda if available)")
    threads: int | None = setting(None, "torch intra-op threads", check=at_least(1))
    bf16: bool | None = setting(None, "bf16 autocast (default: on for CUDA with bf16, off on CPU)")
    default_config: str | None = setting(None, "/get_reward: safety config for queries without a system message: "
                                         "a file (.yaml/.json/.txt, csrm.SafetyConfig) or the policy text itself")
    reward_output: RewardOutput = setting("reward", "/get_reward: the number returned: reward head, "
                                              "p_comply, or neg_error (compliant responses always above "
                                              "violating ones)")
    docs: bool = setting(False, "serve /docs and /openapi.json (off by default: Swagger UI loads its script "
                         "and style from a CDN, and the API description need not be public)")
    log_level: str = setting("info", "uvicorn log level")


def default_config_arg(value: str | None) -> str | SafetyConfig | None:
    """``--default-config``: a config file if one exists at that path, else the policy text as given."""
    if value is None or not value.strip():
        return None
    path = Path(value)
    return SafetyConfig.from_file(path) if len(value) < 4096 and path.is_file() else value


def main(argv: list[str] | None = None) -> int:
    import uvicorn

    from csrm.scoring.scorer import load

    cfg, print_config = load_command(ServeConfig, "csrm serve", "serve a CSRM over HTTP (score, rank, health)",
                                     sys.argv[1:] if argv is None else argv)
    if print_config:
        print(dump(cfg), end="")
        return 0
    token = read_token(cfg.token_file, cfg.token_env)  # before the model loads: a bad token source fails fast
    default_config = default_config_arg(cfg.default_config)  # a bad file fails before the model loads
    try:
        scorer = load(cfg.model, device=cfg.device, max_tokens=cfg.batch_tokens, bf16=cfg.bf16,
                      num_threads=cfg.threads)
    except OSError as err:  # e.g. a hub id that does not exist or cannot be reached
        raise InputError(f"cannot load the model: {err}", field="model") from None
    app = create_app(scorer, max_items=cfg.max_items, max_body_bytes=cfg.max_body_bytes,
                     batch_wait_ms=cfg.batch_wait_ms, batch_tokens=cfg.batch_tokens or DEFAULT_MAX_TOKENS,
                     model_name=display_name(cfg.model), auth_token=token,
                     request_timeout_s=cfg.request_timeout or None, body_timeout_s=cfg.body_timeout,
                     max_pending=cfg.max_pending, default_config=default_config,
                     reward_output=cfg.reward_output, docs=cfg.docs)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level=cfg.log_level)
    return 0
