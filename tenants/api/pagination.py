"""`limit` / `offset` pages for every management-API list."""

from __future__ import annotations

from rest_framework.pagination import LimitOffsetPagination

# Without a ceiling DRF passes any `limit` to the database, and one past PostgreSQL's bigint
# is a 500; no client needs more rows than this in one response.
MAX_PAGE_SIZE = 1000


class Pagination(LimitOffsetPagination):
    max_limit = MAX_PAGE_SIZE
