"""Collector tuning of web processes (config/gc_tuning.py)."""

from __future__ import annotations

import gc
import os
import subprocess
import sys

import pytest
from django.conf import settings

from config import gc_tuning

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("20000,10,10", (20000, 10, 10)),
        (" 5000 , 20 ", (5000, 20)),
        ("0", (0,)),
        ("", ()),
        (" , ", ()),
    ],
)
def test_thresholds_are_parsed(text, expected):
    assert gc_tuning.parse_thresholds(text) == expected


@pytest.mark.parametrize("text", ["fast", "-1", "1.5", "1,2,3,4", "20000;10"])
def test_bad_thresholds_are_refused(text):
    with pytest.raises(ValueError, match="up to three non-negative integers"):
        gc_tuning.parse_thresholds(text)


def _python(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_tune_sets_thresholds_and_freezes_once_per_process():
    # In a fresh interpreter: freezing this test process would hide its garbage for good.
    done = _python(
        "import gc\n"
        "from config import gc_tuning\n"
        "gc_tuning.tune((12345, 11, 12), freeze=True)\n"
        "frozen = gc.get_freeze_count()\n"
        "gc_tuning.tune((1, 1, 1), freeze=False)\n"
        "print(gc.get_threshold(), frozen > 1000, gc.get_freeze_count() == frozen)\n"
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["(12345,", "11,", "12)", "True", "True"]


def test_a_bad_setting_stops_start_up_naming_the_variable():
    done = _python(
        "import django; django.setup()",
        DJANGO_SETTINGS_MODULE="config.settings",
        SWITCHYARD_GC_THRESHOLDS="lots",
    )
    assert done.returncode != 0
    assert "ImproperlyConfigured: SWITCHYARD_GC_THRESHOLDS: expected up to three" in done.stderr


def test_a_started_gateway_runs_with_the_configured_thresholds(gateway):
    assert gateway.state.snapshot is not None
    assert gc.get_threshold() == settings.SWITCHYARD_GC_THRESHOLDS
    assert settings.SWITCHYARD_GC_THRESHOLDS != (700, 10, 10)  # not CPython's default
