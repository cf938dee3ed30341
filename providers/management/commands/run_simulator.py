"""``manage.py run_simulator``: the fake LLM upstream, with the Django entry point's name.

A thin wrapper: the simulator itself never imports Django, so ``python -m
providers.simulator`` takes the same options without loading settings.
"""

from __future__ import annotations

import argparse
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from providers.simulator import cli


class Command(BaseCommand):
    help = "Run the OpenAI/Anthropic-compatible upstream simulator (tests and benchmarks)."

    def add_arguments(self, parser: CommandParser) -> None:
        cli.add_arguments(parser)

    def handle(self, *args: Any, **options: Any) -> None:
        config = cli.config_from(argparse.Namespace(**options))
        cli.run(
            config,
            options["host"],
            options["port"],
            on_ready=lambda url: self.stdout.write(f"switchyard simulator listening on {url}"),
        )
