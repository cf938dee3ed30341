"""uvicorn's access log stays off unless asked for: a line per request costs the gateway
~6 % of its CPU, and Django's logging set-up (configuring "uvicorn") used to re-enable it."""

from __future__ import annotations

import logging
import logging.config

from django.conf import settings


def test_the_access_logger_has_no_handler_after_djangos_logging_setup():
    access = logging.getLogger("uvicorn.access")
    access.addHandler(logging.NullHandler())  # what uvicorn leaves before the app loads
    logging.config.dictConfig(settings.LOGGING)
    # uvicorn's protocol decides per connection with exactly this call
    assert not access.hasHandlers()
    assert logging.getLogger("uvicorn.error").hasHandlers()  # errors still come out
