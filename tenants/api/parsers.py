"""Request body parsers of the management API."""

from __future__ import annotations

from rest_framework import parsers
from rest_framework.exceptions import ParseError


class JSONParser(parsers.JSONParser):
    """DRF's JSON parser, with a body nested past Python's recursion limit a 400.

    The standard library's decoder recurses once per level; a few kilobytes of `[[[[…`
    raise RecursionError, which DRF (catching only ValueError) answers with a 500.
    """

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError("JSON parse error - the body is nested too deeply.") from None


# DRF's defaults, with the JSON parser above.
PARSER_CLASSES = [JSONParser, parsers.FormParser, parsers.MultiPartParser]
