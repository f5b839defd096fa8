"""The README's two opening commands are what users and CI run; keep them honest."""

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = text.split("```bash", 1)[1].split("```", 1)[0]
    return [line.strip() for line in block.strip().splitlines() if line.strip()]


def test_readme_opens_with_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.index("```bash")
    assert text[:first_block].strip() == "# spendwatch"
    commands = _readme_commands()
    assert len(commands) == 2
    assert commands[0].endswith("spendwatch demo")
    assert commands[1].endswith("pytest")


def test_ci_runs_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text().splitlines()
    assert _readme_commands()[1] in [line.strip() for line in ci]


def test_readme_demo_figures_are_what_the_demo_replays():
    """The demo's report figures quoted in the README come from the week the demo replays by default."""
    from decimal import Decimal

    import orjson

    from spendwatch.demo import Replay, demo

    defaults = {p.name: p.default for p in demo.params}
    replay = Replay(defaults["days"], defaults["keys"], defaults["teams"], defaults["seed"], defaults["from_day"])
    requests, outcomes, spend = 0, 0, Decimal(0)
    for _, value, _ in replay.records(replay.traffic()):
        record = orjson.loads(value)
        if "cost_usd" in record or "model" in record:
            requests += 1
            spend += Decimal(record.get("cost_usd") or 0)
        else:
            outcomes += 1
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## What the demo prints"):text.index("## Measured figures")]
    assert f"{requests:,} requests and\n{outcomes:,} outcomes" in section
    assert f"{requests:,} requests, ${spend:,.2f} spent" in section
    assert f"{requests:,}" in section.split("Total spend")[1] and f"{spend:,.6f}" in section
