"""Where a deployment runs: LOCAL (default: sandbox SaaS and the local lake) or, later, AWS.

Read once, inside the definitions function, never at import time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

ENVIRONMENTS = ("LOCAL",)


@dataclass(frozen=True)
class Settings:
    environment: Literal["LOCAL"]
    flows_dir: Path
    data_dir: Path

    @property
    def lake_dir(self) -> Path:
        return self.data_dir / "lake"

    @property
    def staging_dir(self) -> Path:
        return self.data_dir / "staging"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        name = env.get("FLOWBRIDGE_ENV", "LOCAL").upper()
        if name not in ENVIRONMENTS:
            raise ValueError(
                f"FLOWBRIDGE_ENV={name!r} is not one of {', '.join(ENVIRONMENTS)}; "
                "unset it to run locally"
            )
        return cls(
            environment="LOCAL",
            flows_dir=Path(env.get("FLOWBRIDGE_FLOWS_DIR", "flow_defs")).resolve(),
            data_dir=Path(env.get("FLOWBRIDGE_DATA_DIR", "data")).resolve(),
        )
