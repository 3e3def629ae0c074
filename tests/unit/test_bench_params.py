from __future__ import annotations

import pytest

from bench import accuracy, throughput
from bench.params import parse_params, split_keys


def test_parameters_are_python_literals() -> None:
    assert parse_params("neighbours=None; n_experts=4, lr=1e-2 ;combine='top1'") == {
        "neighbours": None,
        "n_experts": 4,
        "lr": 0.01,
        "combine": "top1",
    }
    assert parse_params(" ") == {}
    with pytest.raises(ValueError, match="must be name=value"):
        parse_params("neighbours")
    with pytest.raises(ValueError, match="not a Python literal"):
        parse_params("combine=top1")


def test_a_comma_list_keeps_a_variants_commas() -> None:
    assert split_keys("arf,driftmoe[neighbours=None, n_experts=4], ht") == [
        "arf",
        "driftmoe[neighbours=None, n_experts=4]",
        "ht",
    ]


def test_a_variant_is_its_learner_with_those_parameters() -> None:
    spec = accuracy.resolve_learner("driftmoe-causal[neighbours=None, n_experts=4]")
    assert spec.key == "driftmoe-causal[neighbours=None; n_experts=4]"
    assert (spec.registry_name, spec.batch, spec.causal) == ("driftmoe", 256, True)
    assert spec.params == {"neighbours": None, "n_experts": 4}
    # a child process resolves the normalised key to the same spec
    assert accuracy.resolve_learner(spec.key) == spec
    # the base learner's own parameters stay unless overridden
    assert accuracy.resolve_learner("arf[seed=3]").params == {"n_models": 10, "seed": 3}
    assert accuracy.build_parser().parse_args(["--learners", "driftmoe[neighbours=None, causal=False],arf"]).learners == [
        "driftmoe[neighbours=None, causal=False]",
        "arf",
    ]


@pytest.mark.parametrize(
    "key,message",
    [
        ("driftmoe[neighbors=None]", "unexpected keyword argument 'neighbors'"),
        ("driftmoe[n_experts=0]", "n_experts must be >= 1"),
        ("moa-arf[ensemble_size=5]", "MOA's learners take no parameters"),
        ("nope[x=1]", "unknown learner 'nope'"),
    ],
)
def test_a_variant_the_learner_refuses_is_named(key: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        accuracy.resolve_learner(key)


@pytest.mark.parametrize(
    "variant,message",
    [
        ("neighbors=None", "unexpected keyword argument 'neighbors'"),
        ("seed=3", "multiple values for keyword argument 'seed'"),
    ],
)
def test_the_throughput_bench_names_a_refused_variant(
    variant: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        throughput.main(["--variant", variant])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert f"--variant {variant!r}" in err and message in err
