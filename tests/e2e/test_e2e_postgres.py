"""The real bot process on PostgreSQL (DATABASE_URL): videos made and announced once, across a crash, with the
database's password kept out of every log line and message."""

from __future__ import annotations

from tests.postgres import fresh_database

from .harness import E2E

PASSWORD = "pa55-w0rd-of-the-database"


async def test_the_bot_on_postgresql_announces_each_video_once_across_a_crash(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    async with fresh_database() as url:
        import asyncpg

        # The test server does not ask for the password; the bot must hide it all the same.
        await e2e.start_bot(DATABASE_URL=url.replace("postgres@", f"postgres:{PASSWORD}@"), LOG_LEVEL="DEBUG")
        first = await e2e.generate("A lighthouse in a storm", channel=fake.videos)
        await e2e.wait_announcement(first.generation_id)

        # Killed while a video is still being made: the restarted process finds it in the database.
        sim.config.complete_after = 600.0
        waiting = await e2e.generate("A lantern drifting downriver", channel=fake.videos)
        await e2e.kill_bot()
        sim.config.complete_after = 1.0
        await e2e.start_bot()
        await e2e.wait_announcement(waiting.generation_id)
        last = await e2e.generate("A paper boat in the rain", channel=fake.general)
        await e2e.wait_announcement(last.generation_id)

        for shown in (first, waiting, last):
            assert len(e2e.announcements(shown.generation_id)) == 1
        assert sim.state.create_count == 3 and e2e.creates() == 3
        connection = await asyncpg.connect(url)
        try:
            rows = await connection.fetch("SELECT api_id, state, announced_at FROM generations ORDER BY id")
        finally:
            await connection.close()
        assert [(row["api_id"], row["state"]) for row in rows] == [
            (shown.generation_id, "completed") for shown in (first, waiting, last)
        ]
        assert all(row["announced_at"] is not None for row in rows)
        assert not e2e.db_path.exists()  # nothing went to SQLite
        assert PASSWORD not in e2e.log_text()
        assert not any(PASSWORD in message.text for message in fake.message_log)
        await e2e.terminate_bot()
    e2e.finish()
