"""The pipelines file: validated whole before anything starts, every message naming the field."""

from __future__ import annotations

import textwrap

import pytest

from stream.cli import main
from stream.exceptions import ConfigError
from stream.settings import PROCESS_FIELDS, load_pipelines, load_process

GOOD = """
pipelines:
  - name: fraud
    events_topic: tx
    labels_topic: tx-labels
    learner: {name: driftmoe, params: {n_experts: 4}}
    labels: {ttl_events: 5000, ttl_s: 3600, on_expiry: learn_default, default: legit}
    checkpoint: {every_events: 2000}
  - name: price
    task: regression
    events_topic: quotes
    learner: {name: "river:forest.ARFRegressor", params: {n_models: 3}}
    monitor: {detector: page_hinkley}
    outputs: {predictions: price-out}
"""


def _write(tmp_path, text):
    path = tmp_path / "pipelines.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_file_gives_each_pipeline_its_settings(tmp_path, monkeypatch):
    monkeypatch.setenv("DRIFTLINE_LEARNER", "river:tree.HoeffdingTreeClassifier")  # the file wins
    monkeypatch.setenv("DRIFTLINE_BATCH_TIMEOUT_MS", "7")  # a process setting from the environment
    (_, fraud), (_, price) = load_pipelines(_write(tmp_path, GOOD))
    assert (fraud.pipeline, fraud.learner, fraud.learner_params) == ("fraud", "driftmoe", {"n_experts": 4})
    assert (fraud.labels_topic, fraud.label_ttl_events, fraud.label_ttl_s) == ("tx-labels", 5000, 3600.0)
    assert (fraud.label_on_expiry, fraud.label_default, fraud.checkpoint_every_events) == ("learn_default", "legit", 2000)
    assert (fraud.predictions_topic, fraud.alerts_topic, fraud.dead_letter_topic) == ("fraud-predictions", "fraud-alerts", "fraud-dead-letters")
    assert (price.task, price.learner, price.detector, price.predictions_topic) == ("regression", "river:forest.ARFRegressor", "page_hinkley", "price-out")
    assert price.labels_topic is None  # a file pipeline joins labels only from a topic it names
    assert fraud.batch_timeout_ms == price.batch_timeout_ms == 7
    assert fraud.consumer_group == "driftline-fraud"


BAD = [
    (  # unknown key
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}, colour: red}
        """,
        'pipelines[0].colour: is not a known key, got "red"; the keys here are: batch_size, checkpoint,',
    ),
    (  # unknown key in a section
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}, checkpoint: {every: 5}}
        """,
        "pipelines[0].checkpoint.every: is not a known key, got 5; the keys here are: every_events, every_s",
    ),
    (  # wrong type
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}, batch_size: many}
        """,
        'pipelines[0].batch_size: must be an integer, got "many" (pipeline "a")',
    ),
    (  # wrong type of a learner parameter, checked against the constructor
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}}
          - {name: b, events_topic: ev, learner: {name: "river:forest.ARFClassifier", params: {n_models: ten}}}
        """,
        'pipelines[1].learner.params.n_models: must be an integer, got "ten" (pipeline "b")',
    ),
    (  # a bound the learner's constructor checks
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe, params: {n_experts: 0}}}
        """,
        'pipelines[0].learner.params.n_experts: n_experts must be >= 1, got 0 (pipeline "a")',
    ),
    (  # a parameter the learner does not take
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: "river:tree.HoeffdingTreeClassifier", params: {depth: 3}}}
        """,
        "pipelines[0].learner.params.depth: river:tree.HoeffdingTreeClassifier has no parameter 'depth'; it takes: grace_period,",
    ),
    (  # unknown learner
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: "sklearn:SVC"}}
        """,
        'pipelines[0].learner.name: unknown learner; choose one of',
    ),
    (  # a regressor in a classification pipeline
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: "river:linear_model.LinearRegression"}}
        """,
        "pipelines[0].learner.name: river:linear_model.LinearRegression is a regression learner but task is 'classification'",
    ),
    (  # duplicate pipeline name
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}}
          - {name: a, events_topic: ev2, learner: {name: driftmoe}}
        """,
        'pipelines[1].name: "a" is already the name of pipelines[0]',
    ),
    (  # an output topic shared by two pipelines
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}, outputs: {alerts: alerts}}
          - {name: b, events_topic: ev, learner: {name: driftmoe}, outputs: {alerts: alerts}}
        """,
        'pipelines[1].outputs.alerts: topic "alerts" is already pipelines[0].outputs.alerts; outputs cannot be shared',
    ),
    (  # an output that is another pipeline's input
        """
        pipelines:
          - {name: a, events_topic: ev, learner: {name: driftmoe}, outputs: {predictions: ev2}}
          - {name: b, events_topic: ev2, learner: {name: driftmoe}}
        """,
        'pipelines[0].outputs.predictions: topic "ev2" is an input of pipelines[1]',
    ),
    (  # a missing required key
        """
        pipelines:
          - {name: a, learner: {name: driftmoe}}
        """,
        "pipelines[0].events_topic: is required (e.g. events_topic: transactions)",
    ),
    (  # a policy without the value it needs
        """
        pipelines:
          - {name: a, events_topic: ev, labels_topic: lab, learner: {name: driftmoe}, labels: {on_expiry: learn_default}}
        """,
        "pipelines[0].labels.default: required with label_on_expiry=learn_default",
    ),
    (  # a detector of 0/1 errors on a regression
        """
        pipelines:
          - {name: a, task: regression, events_topic: ev, learner: {name: "river:tree.HoeffdingTreeRegressor"}, monitor: {detector: ddm}}
        """,
        "pipelines[0].monitor.detector: ddm watches 0/1 errors",
    ),
]


@pytest.mark.parametrize(("text", "message"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_a_bad_file_is_refused_naming_the_field(tmp_path, text, message):
    with pytest.raises(ConfigError) as info:
        load_pipelines(_write(tmp_path, text))
    assert message in str(info.value), str(info.value)
    assert "nothing was started" in str(info.value)


def test_every_problem_of_the_file_is_reported_at_once(tmp_path):
    text = """
    pipelines:
      - {name: a, events_topic: ev, learner: {name: driftmoe}, batch_size: x}
      - {name: b, events_topic: ev, learner: {name: nope}}
    """
    with pytest.raises(ConfigError, match="2 problems") as info:
        load_pipelines(_write(tmp_path, text))
    assert "pipelines[0].batch_size" in str(info.value) and "pipelines[1].learner.name" in str(info.value)


def test_not_yaml_and_not_a_mapping_are_refused(tmp_path):
    with pytest.raises(ConfigError, match="not valid YAML at line 2, column 12: mapping values"):
        load_pipelines(_write(tmp_path, "pipelines:\n  - name: a: b\n"))
    with pytest.raises(ConfigError, match="must be a mapping with a 'pipelines' list"):
        load_pipelines(_write(tmp_path, "- a\n"))
    with pytest.raises(ConfigError, match="pipelines: must be a non-empty list"):
        load_pipelines(_write(tmp_path, "pipelines: []\n"))


def test_process_settings_come_from_flags_and_the_environment(monkeypatch):
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    p = load_process(http_port=9)
    assert p.kafka_bootstrap_servers == "127.0.0.1:1" and p.http_port == 9
    assert "learner" not in PROCESS_FIELDS and "kafka_bootstrap_servers" in PROCESS_FIELDS
    with pytest.raises(ConfigError, match=r"http_port \(env DRIFTLINE_HTTP_PORT\)"):
        load_process(http_port=-1)


def test_check_config_command(tmp_path, capsys):
    assert main(["check-config", str(_write(tmp_path, GOOD))]) == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "2 pipeline(s), valid" in out and "price: regression" in out
    assert main(["check-config", str(_write(tmp_path, BAD[2][0]))]) == 2
    assert "pipelines[0].batch_size: must be an integer" in " ".join(capsys.readouterr().out.split())
