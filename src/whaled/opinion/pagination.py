"""Walk a list endpoint page by page, safely.

Opinion pages are 1-based with at most 20 rows. The walk stops on a short page, once ``total`` rows were
fetched, or at ``max_pages``. A page that repeats the previous one exactly (a server that ignores ``page``)
raises :class:`OpinionPaginationError`, so that the caller neither loops nor takes a partial list as whole.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

from whaled.log import opinion_logger as logger
from whaled.opinion.errors import OpinionPaginationError
from whaled.opinion.models import Page

__all__ = ["paginate"]

T = TypeVar("T")


async def paginate(
    fetch_page: Callable[[int], Awaitable[Page[T]]],
    *,
    limit: int,
    max_pages: int,
    what: str,
) -> AsyncIterator[tuple[int, Page[T]]]:
    """Yield ``(page_number, page)`` until the list ends; the caller may stop early with ``break``.

    :param what: names the list in log messages, for example ``"trades of 0xab…"``.
    """
    fetched = 0
    previous: list[T] | None = None
    for number in range(1, max_pages + 1):
        page = await fetch_page(number)
        if previous is not None and page.items and page.items == previous:
            raise OpinionPaginationError(what, number)
        yield number, page
        fetched += page.row_count
        if page.row_count < limit:
            return
        if page.total is not None and fetched >= page.total:
            return
        previous = page.items
    logger.warning("Pagination of %s stopped at the limit of %d pages", what, max_pages)
