"""Small shared types."""

import enum


class Unset(enum.Enum):
    """Marks a keyword argument the caller did not pass, where ``None`` is a meaningful value."""

    UNSET = "unset"


UNSET = Unset.UNSET
