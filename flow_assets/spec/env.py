"""${ENV_VAR} references: the only way a flow or connection file names a secret."""

from __future__ import annotations

import os
from typing import Any

from flow_assets.spec.models import ENV_REF


class MissingEnvironmentVariable(KeyError):
    def __str__(self) -> str:
        return str(self.args[0])


def env_name(value: Any) -> str | None:
    """The variable's name if value is a `${NAME}` reference without a default, else None."""
    if isinstance(value, str) and (m := ENV_REF.match(value)) and m["default"] is None:
        return m["name"]
    return None


def resolve(value: Any, where: str) -> Any:
    """Replace `${NAME}` / `${NAME:-default}` with the environment's value, failing loudly."""
    if not isinstance(value, str) or not (m := ENV_REF.match(value)):
        return value
    if m["name"] in os.environ:
        return os.environ[m["name"]]
    if m["default"] is not None:
        return m["default"]
    raise MissingEnvironmentVariable(
        f"{where}: environment variable {m['name']} is not set; export it before running"
    )
