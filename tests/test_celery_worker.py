"""The Celery worker the suite relies on starts on the Redis broker and answers."""

from config.celery import app


def test_a_real_worker_starts_and_answers_a_ping(celery_worker_process):
    worker = celery_worker_process(name="smoke")

    replies = app.control.ping(timeout=2)

    assert any("smoke" in next(iter(reply)) for reply in replies)
    assert worker.process.poll() is None
