"""Neural DriftMoE says which expert its router picks for each row, without changing a bit."""

from __future__ import annotations

import copy
from collections import Counter

from learners import checks
from learners.registry import make_learner
from stream.synth import sea_stream


def test_router_choices_name_an_expert_per_row_and_leave_the_model_alone():
    events = list(sea_stream(3000, 1, 1000))
    X, y = [x for x, _ in events], [y for _, y in events]
    model = make_learner("driftmoe", {}, 0)
    assert model.router_choices(X[:10]) == []  # nothing learned: no router yet
    model.learn_many(X, y)
    before = copy.deepcopy(model.state_dict())
    picked = model.router_choices(X[:500])
    checks.assert_state_equal(before, model.state_dict())
    assert len(picked) == 500 and set(picked) <= set(range(model._n_gate))
    assert len(Counter(picked)) > 1  # the router spreads these inputs over several experts
    # a row's choice does not depend on the rows that came with it (padded calls, as predict's)
    assert model.router_choices(X[:7]) == picked[:7]
