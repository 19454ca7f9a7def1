"""Several models on the real process: members choose, Ray 3.2 reframes and edits, a retired endpoint is reported at
start, and /usage shows what was really spent."""

from __future__ import annotations

from .harness import E2E, assert_private, embed_fields

MODELS = "luma/ray-2,luma/ray-3.2,legacy"


async def test_members_choose_models_and_reframe_and_edit_a_finished_video(e2e: E2E) -> None:
    fake, sim = e2e.fake, e2e.sim
    sim.config.legacy_enabled = False  # retired: reported at start, refused plainly, the others go on
    await e2e.start_bot(LUMA_MODELS=MODELS)
    await e2e.wait_until(lambda: "Dream Machine (legacy) looks retired" in e2e.bot.log(), "the start-up check")
    assert "LUMA_MODELS" in e2e.bot.log()
    refused = await e2e.ask("generate", {"prompt": "A classic one", "model": "legacy"})
    assert_private(refused, "Dream Machine is unavailable right now", "Choose Ray 2 or Ray 3.2")

    wide = await e2e.generate("A wide beach at noon", aspect_ratio="16:9")
    assert embed_fields(wide.message)["Model"] == "Ray 2" and wide.generation_id.endswith(":luma/ray-2")
    video = await e2e.wait_announcement(wide.generation_id)

    refusal = await e2e.ask("generate", {"prompt": "Too long", "model": "luma/ray-3.2", "duration": 9})
    assert_private(refusal, "Ray 3.2 makes videos of 5 or 10 seconds, not 9")

    # The 16:9 clip made into a 9:16 short, and restyled: new generations that remember their source.
    short = await e2e.outcome(
        await e2e.command(
            "reframe", {"generation_id": wide.generation_id, "aspect_ratio": "9:16"}, channel=fake.general
        )
    )
    assert not short.private and embed_fields(short.message)["Source"] == f"`{wide.generation_id}`"
    body = e2e.create_bodies()[-1]
    assert (body["model"], body["type"], body["aspect_ratio"]) == ("luma/ray-3.2", "video_reframe", "9:16")
    assert body["video_url"] in video.content
    await e2e.wait_announcement(short.generation_id)
    styled = await e2e.outcome(
        await e2e.command("edit", {"generation_id": wide.generation_id, "prompt": "As a watercolour painting"})
    )
    assert not styled.private and e2e.create_bodies()[-1]["type"] == "video_edit"
    await e2e.wait_announcement(styled.generation_id)

    # Ray 3.2 can't continue a video: said plainly, nothing sent.
    before = e2e.creates()
    answer = await e2e.ask("extend", {"generation_id": short.generation_id, "prompt": "And then the tide"})
    assert_private(answer, "Ray 3.2 has no way to continue a video", "`/generate`")
    assert e2e.creates() == before

    usage = embed_fields(await e2e.ask("usage", user=fake.moderator))
    costs = [gen.credits for gen in sim.state.generations.values()]
    assert usage["Tokens spent"] == f"{sum(costs):,} (as reported by the video service)"
    assert usage["Edits and reframes"] == "2" and usage["USD spent (reported)"].startswith("$")
    e2e.finish()
