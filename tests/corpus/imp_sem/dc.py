from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True)
class Point:
    x: int
    y: int = 0
    tags: list = field(default_factory=list)
    DIMS: ClassVar[int] = 2

    def norm1(self):
        return abs(self.x) + abs(self.y)


@dataclass(order=True)
class Version:
    major: int
    minor: int = 0


def fields_of_point():
    return [f.name for f in dataclasses.fields(Point)]
