"""Kaggle CLI credentials: which ones the CLI accepts, and its refusal turned into one line."""

from __future__ import annotations

import os
from pathlib import Path

from solver.base.errors import SolverError

KAGGLE_TOKEN_HOWTO = (
    "create an API token (kaggle.com > Settings > API > Generate New Token), then export KAGGLE_API_TOKEN=<token> "
    "or save it in ~/.kaggle/access_token (the legacy kaggle.json in ~/.kaggle or KAGGLE_CONFIG_DIR, "
    "or KAGGLE_USERNAME and KAGGLE_KEY, work too)"
)
# What the kaggle CLI says when it has no credentials it accepts (1.7+: "You must authenticate ..."; older: no kaggle.json)
KAGGLE_AUTH_FAILURES = ("You must authenticate", "Could not find kaggle.json", "Unauthorized")


def kaggle_credentials_present() -> bool:
    """Credentials of any kind the kaggle CLI reads: the API token (KAGGLE_API_TOKEN, ~/.kaggle/access_token), the
    legacy key (KAGGLE_USERNAME and KAGGLE_KEY, kaggle.json in KAGGLE_CONFIG_DIR, ~/.kaggle or ~/.config/kaggle), or,
    with KAGGLE_ENABLE_OAUTH, the CLI's own login (`kaggle auth login`), which only the CLI can check."""
    env = os.environ
    if env.get("KAGGLE_API_TOKEN") or env.get("KAGGLE_ENABLE_OAUTH", "").lower() in ("1", "true", "yes"):
        return True
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return True
    home = Path.home() / ".kaggle"
    if any((home / name).is_file() and (home / name).read_text().strip() for name in ("access_token", "access_token.txt")):
        return True
    xdg = Path(env.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "kaggle"
    folders = [Path(env["KAGGLE_CONFIG_DIR"])] if env.get("KAGGLE_CONFIG_DIR") else [home, xdg]
    return any((folder / "kaggle.json").is_file() for folder in folders)


def require_kaggle_credentials() -> None:
    if not kaggle_credentials_present():
        raise SolverError(f"no Kaggle credentials: {KAGGLE_TOKEN_HOWTO}")


def kaggle_auth_failure(command: str, output: str) -> SolverError | None:
    """The CLI's refusal of the credentials it found (an expired or revoked token, a wrong key) as one line; None otherwise."""
    lines = [line.strip() for line in output.splitlines() if any(marker in line for marker in KAGGLE_AUTH_FAILURES)]
    if not lines:
        return None
    return SolverError(f"{command}: the kaggle CLI did not accept the Kaggle credentials ({lines[0][:200]}); {KAGGLE_TOKEN_HOWTO}")
