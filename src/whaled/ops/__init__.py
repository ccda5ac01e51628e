"""Operations commands: ``whaled db``, ``whaled wallets`` and ``whaled status``.

They work on the database file directly, beside a running daemon or without one. ``db migrate`` and
``db vacuum`` take the instance lock, so they refuse to run while a daemon uses the database.
"""

from whaled.ops.parsers import add_parsers

__all__ = ["add_parsers"]
