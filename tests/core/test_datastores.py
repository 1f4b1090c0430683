"""The real data stores: Redis as channel layer and Celery broker, a real worker, the beat schedule,
and the embedded fallbacks that a machine without PostgreSQL or Redis uses."""

import os
import subprocess
import sys
import uuid
from pathlib import Path

import psycopg
import pytest
import redis
from channels.layers import get_channel_layer
from django.contrib.sessions.models import Session
from django.utils import timezone

from apps.core.tasks import purge_expired_web_sessions
from hoa_charging.celery import app as celery_app

ROOT = Path(__file__).resolve().parents[2]


async def test_channel_layer_round_trip_through_redis():
    layer = get_channel_layer()
    assert type(layer).__name__ == "RedisChannelLayer"
    channel = await layer.new_channel()
    group = f"test-{uuid.uuid4().hex}"
    await layer.group_add(group, channel)
    await layer.group_send(group, {"type": "probe", "value": 42})
    assert await layer.receive(channel) == {"type": "probe", "value": 42}


def test_beat_schedule_has_the_periodic_tasks():
    celery_app.loader.import_default_modules()  # what a worker does at start: find every app's tasks
    schedule = celery_app.conf.beat_schedule
    assert schedule["purge-expired-web-sessions"]["task"] == "apps.core.tasks.purge_expired_web_sessions"
    assert all(entry["task"] in celery_app.tasks for entry in schedule.values())


def test_periodic_task_runs_in_a_real_worker(committed, test_database_url, settings):
    """A Celery worker process, through the Redis broker, against the test database."""
    key = f"expired-{uuid.uuid4().hex}"
    Session.objects.create(session_key=key, session_data="", expire_date=timezone.now() - timezone.timedelta(days=1))
    env = dict(os.environ, DATABASE_URL=test_database_url, REDIS_URL=settings.REDIS_URL)
    worker = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "hoa_charging",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "WARNING",
            "-Q",
            f"q-{key}",
            "--without-heartbeat",
            "--without-mingle",
            "--without-gossip",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        result = purge_expired_web_sessions.apply_async(queue=f"q-{key}")
        assert result.get(timeout=60) >= 1
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    assert not Session.objects.filter(session_key=key).exists()


def test_embedded_postgres_and_redis(tmp_path):
    """With HOA_SERVICES=embedded, both servers start from the wheels under the data folder."""
    env = dict(os.environ, HOA_SERVICES="embedded", HOA_DATA_DIR=str(tmp_path), HOA_EMBEDDED_REDIS_PORT="6391")
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    script = (
        "from hoa_charging import datastores; u = datastores.ensure_services(); "
        "print(u.database_url); print(u.redis_url); print(u.database_origin, u.redis_origin); "
        # Ended as the demo's processes are by Ctrl-C or honcho's SIGTERM: without running its exit handlers.
        "import os, sys; sys.stdout.flush(); os._exit(0)"
    )
    try:
        out = subprocess.run(
            [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=True
        ).stdout.split("\n")
        database_url, redis_url, origins = out[0], out[1], out[2]
        assert origins == "embedded embedded"
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT current_database()").fetchone()[0] == "hoa_charging"
        assert redis.Redis.from_url(redis_url).ping()
    finally:
        subprocess.run(
            [sys.executable, "-c", "from hoa_charging import datastores; datastores.stop_embedded()"],
            cwd=ROOT,
            env=env,
            timeout=60,
        )
    # `dev.py stop` stops them: the servers are gone, though the process that started them ended without letting
    # go of its handle on the database server.
    assert not (tmp_path / "postgres" / "postmaster.pid").exists()
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(database_url, connect_timeout=2)
    with pytest.raises(redis.exceptions.ConnectionError):
        redis.Redis.from_url(redis_url, socket_connect_timeout=2).ping()
