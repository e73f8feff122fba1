"""What was learned, in short: the components that moved most per strategy, with evidence and samples, and the
trades behind them."""

from __future__ import annotations

from learnd.learning.learner import LearnedModel
from learnd.service.summary import learned_summary, render_learned_summary


def component(multiplier: float, z: float = 1.0, samples: float = 100.0) -> dict[str, object]:
    return {"multiplier": multiplier, "z": z, "samples": samples, "by_regime": {}}


def test_the_components_that_moved_most_come_first_and_unmoved_ones_not_at_all() -> None:
    model = LearnedModel(
        entry={
            "equity": {
                "dark_pool": component(1.3, 2.5, 800.0),
                "iv_rank": component(0.4, -2.1, 300.0),
                "insider": component(1.0),
                "congress": component(1.05),
            },
            "momentum": {"dark_pool": component(1.0)},
        },
        exits={},
        trades_learned=3000,
        partials_learned=470,
        exits_learned=0,
        last_trade_us=1_786_000_000_000_000,
    )
    summary = learned_summary(model, count=2)
    assert [row["component"] for row in summary["strategies"]["equity"]] == ["iv_rank", "dark_pool"]
    assert summary["strategies"]["equity"][0] == {
        "component": "iv_rank",
        "multiplier": 0.4,
        "z": -2.1,
        "samples": 300.0,
    }
    assert summary["strategies"]["momentum"] == []
    text = render_learned_summary(summary)
    assert text.startswith("learned from 3000 closed trades and 470 partial closes")
    assert "iv_rank" in text and "z -2.10" in text and "300.0 samples" in text
    assert "strategy momentum: no multiplier has moved yet" in text


def test_with_no_trade_yet_the_summary_says_so() -> None:
    empty = LearnedModel(entry={}, exits={}, trades_learned=0, partials_learned=0, exits_learned=0, last_trade_us=-1)
    assert render_learned_summary(learned_summary(empty)).startswith("learned: no closed trade yet")
