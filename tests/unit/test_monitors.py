"""Drift monitors on a seeded loss stream: where each detector fires, the direction filter,
the state round trip, and configuration errors that name the field."""

from __future__ import annotations

import random

import pytest

from stream.exceptions import ConfigError
from stream.monitors import DETECTORS, LossMonitor

CHANGE = 3000


def _losses(seed: int = 42) -> list[float]:
    """0/1 losses: error rate 0.1 for 3000 events, then 0.4 for 3000, then 0.1 again."""
    rng = random.Random(seed)
    rates = [0.1] * CHANGE + [0.4] * CHANGE + [0.1] * CHANGE
    return [1.0 if rng.random() < p else 0.0 for p in rates]


def _run(monitor: LossMonitor, losses: list[float]) -> list:
    return [d for i, x in enumerate(losses) if (d := monitor.update(x, i)) is not None]


# where each detector fires on _losses(42) with its defaults, direction "both" (KSWIN's
# sampling seeded by LossMonitor's seed=0); exact: the detectors do scalar Python arithmetic
# and, for KSWIN, a sort-based KS test on 0/1 inputs, so no BLAS kernel is involved
EXPECTED = {
    "adwin": [3039, 6111],
    "ddm": [3129],
    "eddm": [3105, 3184, 3285, 3353, 3428, 4125, 4220, 4289, 4370, 4451, 4519, 4725],
    "hddm_a": [3122],
    "hddm_w": [3026, 5872],
    "kswin": [3032, 5135],
    "page_hinkley": [3136, 6077],
}


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_each_detector_fires_where_it_fired_before(name):
    found = _run(LossMonitor(name, direction="both"), _losses())
    assert [d.event_index for d in found if d.kind == "drift"] == EXPECTED[name]


def test_detectors_with_a_warning_zone_report_the_start_of_each_warning_spell():
    found = _run(LossMonitor("hddm_a"), _losses())
    # exact, as above: HDDM_A warns twice in the change's first 90 events, then fires
    assert [(d.kind, d.event_index) for d in found] == [("warning", 3066), ("warning", 3089), ("drift", 3122)]
    assert found[0].loss_after > found[0].loss_before
    assert not any(d.kind == "warning" for d in _run(LossMonitor("adwin"), _losses()))


def test_adwin_reports_the_rise_and_the_fall_with_their_losses():
    found = _run(LossMonitor("adwin", direction="both"), _losses())
    rise = [d for d in found if d.loss_after > d.loss_before]
    fall = [d for d in found if d.loss_after < d.loss_before]
    assert rise and CHANGE <= rise[0].event_index < CHANGE + 500
    assert fall and 2 * CHANGE <= fall[0].event_index < 2 * CHANGE + 500
    # before: ADWIN's window estimate; after: the last 100 events, 39 of them past the change
    assert rise[0].loss_before == pytest.approx(0.102336, abs=1e-6)
    assert rise[0].loss_after == pytest.approx(0.25, abs=1e-12)


def test_increase_only_drops_the_falls():
    assert LossMonitor().direction == "increase"
    both = _run(LossMonitor("adwin", direction="both"), _losses())
    up = _run(LossMonitor("adwin", direction="increase"), _losses())
    assert up == [d for d in both if d.loss_after > d.loss_before]
    assert len(up) < len(both)


def test_a_restored_monitor_fires_exactly_where_the_original_does():
    losses = _losses()
    a = LossMonitor("adwin", direction="both")
    _run(a, losses[:4000])
    b = LossMonitor("adwin", direction="both")
    assert b.load_state_dict(a.state_dict())
    rest_a = [d for i, x in enumerate(losses[4000:], 4000) if (d := a.update(x, i))]
    rest_b = [d for i, x in enumerate(losses[4000:], 4000) if (d := b.update(x, i))]
    assert rest_a == rest_b and rest_a


def test_a_monitor_of_other_settings_refuses_the_state():
    state = LossMonitor("adwin").state_dict()
    assert LossMonitor("ddm").load_state_dict(state) is False
    assert LossMonitor("adwin", {"delta": 0.01}).load_state_dict(state) is False


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [({"name": "nope"}, "detector: unknown 'nope'"), ({"params": {"bogus": 1}}, "detector_params for adwin"),
     ({"direction": "down"}, "drift_direction")],
)  # fmt: skip
def test_configuration_errors_name_the_field(kwargs, field):
    with pytest.raises(ConfigError, match=field):
        LossMonitor(**kwargs)


def _chop(n: int, seed: int) -> list[tuple[int, int]]:
    rng, out, i = random.Random(seed), [], 0
    while i < n:
        k = min(rng.randint(1, 300), n - i)
        out.append((i, i + k))
        i += k
    return out


@pytest.mark.parametrize("detector", ["adwin", "page_hinkley", "ddm"])
@pytest.mark.parametrize("direction", ["increase", "both"])
def test_update_many_is_update_on_each_loss_however_the_stream_is_chopped(detector, direction):
    rng = random.Random(7)
    losses = [float(rng.random() < (0.1 if (i // 3000) % 2 == 0 else 0.5)) for i in range(15_000)]
    one = LossMonitor(detector, direction=direction)
    expected = [(i, d) for i, x in enumerate(losses) if (d := one.update(x, i)) is not None]
    many = LossMonitor(detector, direction=direction)
    got = []
    for lo, hi in _chop(len(losses), seed=3):
        got += [(lo + at, d) for at, d in many.update_many(losses[lo:hi], range(lo, hi))]
    assert expected and got == expected
    assert many.state_dict() == one.state_dict()


def test_update_many_follows_the_window_of_fractional_losses_exactly():
    # a regression pipeline's losses are fractions: the loop's own running sum must stay
    # the engine's to the last bit, across drifts and the resets after them
    rng = random.Random(11)
    losses = [rng.random() * (0.2 if (i // 2500) % 2 == 0 else 1.0) for i in range(12_000)]
    one = LossMonitor("adwin", direction="both")
    expected = [(i, d) for i, x in enumerate(losses) if (d := one.update(x, i)) is not None]
    many = LossMonitor("adwin", direction="both")
    got = []
    for lo, hi in _chop(len(losses), seed=5):
        got += [(lo + at, d) for at, d in many.update_many(losses[lo:hi], range(lo, hi))]
    assert len(expected) >= 2 and got == expected
    assert many.state_dict() == one.state_dict()
