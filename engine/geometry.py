"""Plain value types for image geometry shared by operators, tiling and the GUI overlay."""

from __future__ import annotations

from typing import NamedTuple


class Box(NamedTuple):
    """A pixel rectangle ``[top, top+height) x [left, left+width)`` in output-image coordinates."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def slices(self) -> tuple[slice, slice]:
        """(rows, cols) slices for indexing ``array[..., rows, cols]``."""
        return slice(self.top, self.bottom), slice(self.left, self.right)

    def intersects(self, other: "Box") -> bool:
        return (
            self.top < other.bottom
            and other.top < self.bottom
            and self.left < other.right
            and other.left < self.right
        )

    def scaled(self, factor: int) -> "Box":
        """The same rectangle in a grid ``factor`` times finer."""
        return Box(self.top * factor, self.left * factor, self.height * factor, self.width * factor)

    def divided(self, factor: int) -> "Box":
        """The same rectangle in a grid ``factor`` times coarser (coordinates must divide)."""
        if any(v % factor for v in self):
            raise ValueError(f"{self} is not aligned to blocks of {factor}")
        return Box(self.top // factor, self.left // factor, self.height // factor, self.width // factor)
