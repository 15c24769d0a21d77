"""(De)serialisation shared by the trainers' frozen config dataclasses."""

from __future__ import annotations

import dataclasses
from typing import Any

from pipelag.errors import PipelagError


class ConfigIO:
    """Mixin for a frozen dataclass config: JSON-ready dict, checked construction from a dict, replace.

    ``LABEL`` names the algorithm in error messages (e.g. "PPO")."""

    LABEL = "trainer"

    def to_dict(self) -> dict[str, Any]:
        # tuples become lists so that a dict read back from JSON compares equal
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise PipelagError(f"unknown {cls.LABEL} config keys {sorted(unknown)}; valid keys: {sorted(names)}")
        return cls(**d)

    def replace(self, **changes: Any):
        return dataclasses.replace(self, **changes)
