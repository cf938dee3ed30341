"""``python -m providers.simulator --host 127.0.0.1 --port 9100``: see cli.py."""

from __future__ import annotations

from providers.simulator.cli import main

main()
