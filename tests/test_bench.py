"""The benchmark's command line: which stored runs it compares with (the measuring itself runs in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.__main__ import DEFAULT_BASELINE, main
from bench.report import BadBaseline, read_baselines, table


def test_an_empty_or_missing_baseline_means_none_and_the_table_says_so(tmp_path: Path) -> None:
    [stored, *_] = read_baselines(DEFAULT_BASELINE)
    empty = tmp_path / "empty.json"
    empty.write_text("\n", encoding="utf-8")
    for path in (Path("/dev/null"), empty, tmp_path / "missing.json"):
        assert read_baselines(path) == []
        assert "No stored baseline has these settings" in table(stored, read_baselines(path))
    assert f"'today' is bot {stored['bot']}" in table(stored, read_baselines(DEFAULT_BASELINE))


@pytest.mark.parametrize("text", ["{not json", '{"bot": "abc"}', "[1, 2]"])
def test_a_baseline_that_is_not_a_list_of_runs_is_named_before_anything_is_measured(
    tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(text, encoding="utf-8")
    with pytest.raises(BadBaseline):
        read_baselines(bad)
    assert main(["--baseline", str(bad)]) == 2
    error = capsys.readouterr().err
    assert f"--baseline: {bad}" in error and "Measuring" not in error
