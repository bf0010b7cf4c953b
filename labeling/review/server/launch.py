"""Run argilla-server as one process: rebuilt search index, the rq worker in a thread, the web app.

Started by ``workbench review serve`` with argilla-server's own virtualenv's Python::

    <venv>/bin/python launch.py --host 127.0.0.1 --port 6900

(the database is migrated and the default user created before, with argilla-server's
own CLI). Configuration comes from argilla-server's environment variables
(``ARGILLA_HOME_PATH``, ``ARGILLA_DATABASE_URL``, ``ARGILLA_REDIS_URL``); the search
engine is forced to the in-process one of ``argilla_engine.py``.

Why one process: the search index lives in memory, and the jobs the server enqueues
on Redis (record statuses after a change of the task distribution, webhooks, Hub
import/export) read and write it; so the worker runs here, in a thread, and the
index is rebuilt from the database by the server's own ``Reindexer`` before the app
takes its first request.

Like ``argilla_engine.py``, this file imports nothing of the workbench.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ["ARGILLA_SEARCH_ENGINE"] = "workbench"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

import argilla_engine  # registers the engine before argilla-server resolves it

log = logging.getLogger("workbench.argilla")


def reuse_settings_adapters() -> None:
    """Build pydantic's TypeAdapter for question and metadata settings once, not once per value.

    argilla-server 2.8.0's ``Question.parsed_settings`` and ``MetadataProperty.parsed_settings``
    construct ``TypeAdapter(...)`` (a schema build) on every call, and its record validators
    call them for every suggestion and metadata value of every record: that was half of a bulk
    upsert's time. The validation itself is unchanged: the same adapter, validating the same
    settings, kept instead of rebuilt.
    """
    from argilla_server.api.schemas.v1.questions import QuestionSettings
    from argilla_server.models.database import MetadataProperty, Question
    from argilla_server.models.metadata_properties import MetadataPropertySettings
    from pydantic import TypeAdapter

    questions = TypeAdapter(QuestionSettings)
    metadata = TypeAdapter(MetadataPropertySettings)
    Question.parsed_settings = property(lambda self: questions.validate_python(self.settings))
    MetadataProperty.parsed_settings = property(lambda self: metadata.validate_python(self.settings))


async def rebuild_index() -> tuple[int, int]:
    """Index every dataset and record of the database, with argilla-server's own reindexing code."""
    from argilla_server.cli.search_engine.reindex import Reindexer
    from argilla_server.database import AsyncSessionLocal, async_engine
    from argilla_server.search_engine import SearchEngine

    argilla_engine.reset()
    datasets = records = 0
    async with AsyncSessionLocal() as db, SearchEngine.get_by_name(argilla_engine.ENGINE_NAME) as engine:
        async for dataset in Reindexer.reindex_datasets(db, engine):
            datasets += 1
            async for batch in Reindexer.reindex_dataset_records(db, engine, dataset):
                records += len(batch)
    # The app runs its own event loop: let it open fresh database connections.
    await async_engine.dispose()
    return datasets, records


def start_worker() -> threading.Thread:
    """The rq worker of argilla-server's queues, in a daemon thread of this process."""
    from argilla_server.jobs.queues import DEFAULT_QUEUE, HIGH_QUEUE, REDIS_CONNECTION
    from rq import SimpleWorker
    from rq.timeouts import TimerDeathPenalty

    class ThreadWorker(SimpleWorker):
        # Signals belong to the main thread (uvicorn's); job timeouts use a timer instead of SIGALRM.
        death_penalty_class = TimerDeathPenalty

        def _install_signal_handlers(self) -> None:
            return None

    worker = ThreadWorker([HIGH_QUEUE, DEFAULT_QUEUE], connection=REDIS_CONNECTION)

    def run() -> None:
        while True:
            try:
                worker.work(logging_level="WARNING", with_scheduler=False)
            except Exception:  # keep serving jobs; the error is in the log
                log.exception("argilla job worker failed; restarting it")
                time.sleep(1.0)

    thread = threading.Thread(target=run, name="argilla-rq-worker", daemon=True)
    thread.start()
    return thread


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=6900)
    args = parser.parse_args(argv)

    if os.environ.get("WORKBENCH_ARGILLA_REUSE_ADAPTERS", "1") != "0":  # "0": as released (bench baseline)
        reuse_settings_adapters()
    started = time.perf_counter()
    datasets, records = asyncio.run(rebuild_index())
    print(
        f"search index rebuilt from the database: {datasets} datasets, {records} records"
        f" in {time.perf_counter() - started:.2f}s",
        file=sys.stderr,
        flush=True,
    )
    start_worker()

    import uvicorn

    uvicorn.run("argilla_server:app", host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
