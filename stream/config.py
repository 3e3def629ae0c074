"""One frozen settings object per process: explicit argument > environment > default.

Every field reads ``DRIFTLINE_<FIELD>`` from the environment; the service addresses also
accept the conventional ``KAFKA_BOOTSTRAP_SERVERS`` and ``REDIS_URL``. Errors name the
field, the value and the fix.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from stream.exceptions import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,100}$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DRIFTLINE_", frozen=True, extra="forbid", populate_by_name=True
    )

    pipeline: str = Field("default", description="Pipeline (and model) name; one pipeline = one model.")
    task: str = Field("classification", description="'classification' or 'regression' (a River regressor; MAE, RMSE, R²).")
    learner: str = Field("driftmoe", description="Learner name, see `driftline learners`.")
    learner_params: dict[str, Any] = Field(default_factory=dict, description="Learner parameters (JSON).")
    seed: int = Field(0, description="Seed for the learner and the synthetic stream.")

    batch_size: int = Field(256, ge=1, le=65_536, description="Micro-batch: the model learns this many events at a time; a poll reads whole micro-batches, up to 1,024 events (or one micro-batch, if larger).")
    batch_timeout_ms: int = Field(100, ge=1, le=60_000, description="Micro-batch: wait at most this long for the first event.")
    checkpoint_every_events: int = Field(100_000, ge=1, description="Checkpoint after this many events...")
    checkpoint_every_s: float = Field(5.0, gt=0, description="...or after this many seconds, whichever comes first: a restart replays at most about this much work.")
    publish_every_s: float = Field(0.5, gt=0, description="Refresh the served copy of the model this often.")
    output_commit_every_s: float = Field(1.0, gt=0, description="Kafka: commit the transaction of outputs and offsets this often (and at each checkpoint).")

    detector: str = Field("adwin", description="Drift detector on the per-event loss: adwin, ddm, eddm, page_hinkley, kswin, hddm_a, hddm_w.")
    detector_params: dict[str, Any] = Field(default_factory=dict, description="Detector parameters (JSON).")
    drift_direction: str = Field("increase", description="Alert when the loss rises ('increase') or on any change ('both').")
    drift_reaction: str = Field("learner", description="On drift: 'learner' calls the learner's on_drift hook; 'none' only alerts.")
    rolling_window: int = Field(1000, ge=10, description="Window of the rolling accuracy and kappa.")

    feature_monitors: list[str] = Field(default_factory=list, description="Numeric features watched for input drift (ADWIN on each one's values), as a JSON list; a change is a drift alert whose signal is the feature.")
    alert_cooldown_events: int = Field(2000, ge=0, description="A drift within this many events of the open alert's last firing merges into it (count + 1).")
    alert_min_drifts: int = Field(1, ge=1, description="Rule 'N drifts in T': open a drift alert once this many firings fell within alert_drift_window_events.")
    alert_drift_window_events: int = Field(10_000, ge=1, description="The T of 'N drifts in T', in events.")
    alert_min_severity: str = Field("low", description="Drift alerts below this severity (low, medium, high, critical) are not raised.")
    alert_resolve_margin: float = Field(0.02, ge=0, description="Resolved once the rolling error is within this of the error before the drift.")
    alert_resolve_after_events: int = Field(0, ge=0, description="Check resolution this many events after the last firing (0: the rolling window).")
    alert_stall_after_s: float = Field(60.0, ge=0, description="A stall alert when no event arrives for this many seconds (0: never).")
    alert_churn_above: float = Field(0.0, ge=0, le=1, description="A churn alert when a published version flips more than this share of the probe predictions (0: never).")
    alert_webhook_url: str | None = Field(None, description="POST every alert revision as JSON here (background, retried with backoff).")
    alert_webhook_retries: int = Field(5, ge=0, le=20, description="Retries of a failed webhook delivery before it is dropped (logged).")
    alerts_stream_key: str = Field("driftline:alerts", description="Redis: the stream holding every alert revision (the history replicas and `driftline alerts` read).")
    alerts_stream_maxlen: int = Field(10_000, ge=10, description="Redis: the alerts stream keeps about this many revisions (XADD MAXLEN ~).")
    churn_probe_size: int = Field(256, ge=0, le=10_000, description="Recent events each published version is compared on (0: no churn).")

    events_topic: str = "events"
    join_labels: bool = Field(False, description="Join labels from labels_topic to the events served earlier (on for a --config pipeline that names a labels_topic).")
    label_ttl_events: int = Field(10_000, ge=1, description="A served event waits for its label this many events...")
    label_ttl_s: float = Field(86_400.0, gt=0, description="...or this many seconds of stream time (record timestamps), whichever is first.")
    label_delay_ms: int = Field(1_000, ge=0, description="A label is applied once the events' stream time passes its own timestamp plus this delay (the deterministic merge rule).")
    label_on_expiry: str = Field("drop", description="An event whose label never came: 'drop' it, or 'learn_default' (learn it with label_default).")
    label_default: bool | int | float | str | None = Field(None, description="The label learned for an expired event with label_on_expiry=learn_default.")
    label_remember: int = Field(100_000, ge=0, description="Ids of joined and expired events kept to tell a late or duplicate label from an unknown one.")
    predictions_topic: str = "predictions"
    alerts_topic: str = "alerts"
    dead_letter_topic: str = "dead-letter"
    publish_predictions: bool = Field(True, description="Write each prediction to the predictions topic.")
    label_aware_predictions: bool = Field(
        True,
        description="Predict each event with the inline labels of the events before it in its micro-batch (predict_many_causal), as a learner stepping one event at a time would have learned them; false: predict_many, blind to them.",
    )
    max_event_bytes: int = Field(1_000_000, ge=64, description="Larger events go to the dead-letter topic.")

    kafka_bootstrap_servers: str | None = Field(
        None,
        validation_alias=AliasChoices("kafka_bootstrap_servers", "DRIFTLINE_KAFKA_BOOTSTRAP_SERVERS", "KAFKA_BOOTSTRAP_SERVERS"),
        description="host:port[,host:port]; unset means the embedded in-process log.",
    )
    group_id: str | None = Field(None, description="Kafka consumer group; default driftline-<pipeline>.")
    kafka_client: str = Field("confluent", description="Kafka client library: 'confluent' (librdkafka) or 'kafka-python'.")
    kafka_options: dict[str, Any] = Field(default_factory=dict, description="Kafka client options in librdkafka's names (JSON), e.g. security.protocol, sasl.mechanism, sasl.username, sasl.password, ssl.ca.location.")
    transactional_outputs: bool = Field(True, description="Kafka: produce outputs in transactions with the consumer offsets (exactly-once for read_committed readers).")
    lease_ttl_s: float = Field(5.0, ge=1.0, le=300.0, description="Redis lease on the pipeline: a standby takes over this long after the holder dies.")
    redis_url: str | None = Field(
        None,
        validation_alias=AliasChoices("redis_url", "DRIFTLINE_REDIS_URL", "REDIS_URL"),
        description="redis://host:port/db; unset means snapshots in snapshot_dir.",
    )
    snapshot_dir: Path = Field(Path(".driftline/snapshots"), description="Directory store for the embedded default.")
    snapshot_key: SecretStr | None = Field(None, description="HMAC key for snapshots (32+ chars); unset: a key file in snapshot_dir.")
    snapshot_keep: int = Field(5, ge=1, description="Snapshot versions kept per pipeline.")

    http_host: str = Field("127.0.0.1", description="HTTP API address.")
    http_port: int = Field(8000, ge=0, le=65_535, description="HTTP API port (0: pick a free one).")
    max_predict_rows: int = Field(10_000, ge=1, description="Largest batch POST .../predict accepts (413 above).")
    api_keys: SecretStr | None = Field(
        None, description="Comma-separated API keys for write routes (POST .../labels), sent as `Authorization: Bearer <key>`; unset: writes are refused."
    )
    api_open_reads: bool = Field(True, description="Reads (GET routes and predictions) without an API key; false: they need one too.")
    labels_topic: str | None = Field("labels", description="Topic of labels {id, y} for events served earlier, joined to them by id; POST /v1/models/{name}/labels forwards there. Empty: labels come inline only.")
    api_process: bool | None = Field(
        None,
        description="Serve a learning process's HTTP API from a child process, so requests never contend with learning for the interpreter lock; unset: a child process where this process may run on two or more CPUs, a thread where it has one.",
    )
    replica_poll_s: float = Field(2.0, gt=0, le=300, description="Replica: check Redis for a newer snapshot this often when no PUBLISH arrives.")

    @field_validator("labels_topic", mode="before")
    @classmethod
    def _no_labels(cls, v: Any) -> Any:
        return None if v in ("", "none") else v

    @field_validator("pipeline", "events_topic", "labels_topic", "predictions_topic", "alerts_topic", "dead_letter_topic")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not _NAME.match(v):
            raise ValueError("use 1-100 letters, digits, '.', '_' or '-'")
        return v

    @field_validator("learner")
    @classmethod
    def _learner(cls, v: str) -> str:
        from learners.registry import NATIVE, RIVER_ALLOW_LIST, RIVER_REGRESSORS, task_of

        if task_of(v) is not None:
            return v
        raise ValueError(
            f"unknown learner; choose one of {sorted(NATIVE)}, river:<one of {sorted(RIVER_ALLOW_LIST)}>, "
            f"or a regressor river:<one of {sorted(RIVER_REGRESSORS)}>"
        )

    @field_validator("detector")
    @classmethod
    def _detector(cls, v: str) -> str:
        from stream.monitors import DETECTORS

        if v not in DETECTORS:
            raise ValueError(f"choose one of {sorted(DETECTORS)}")
        return v

    @field_validator("alert_min_severity")
    @classmethod
    def _severity(cls, v: str) -> str:
        from stream.alerts import SEVERITIES

        if v not in SEVERITIES:
            raise ValueError(f"choose one of {', '.join(SEVERITIES)}")
        return v

    @field_validator("alert_webhook_url")
    @classmethod
    def _url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL")
        return v

    @field_validator("task", "drift_direction", "drift_reaction", "kafka_client", "label_on_expiry")
    @classmethod
    def _choice(cls, v: str, info: Any) -> str:
        allowed = {
            "task": ("classification", "regression"),
            "label_on_expiry": ("drop", "learn_default"),
            "drift_direction": ("increase", "both"),
            "drift_reaction": ("learner", "none"),
            "kafka_client": ("confluent", "kafka-python"),
        }[info.field_name]
        if v not in allowed:
            raise ValueError(f"choose {' or '.join(repr(a) for a in allowed)}")
        return v

    @field_validator("snapshot_key")
    @classmethod
    def _key(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters; make one with `python -c 'import secrets; print(secrets.token_hex(32))'`")
        return v

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        from learners.registry import task_of
        from stream.monitors import BINARY_DETECTORS

        if task_of(self.learner) != self.task:
            raise ValueError(
                f"learner: {self.learner} is a {task_of(self.learner)} learner but task is {self.task!r}; "
                f"name a {self.task} learner (`driftline learners`) or set task: {task_of(self.learner)}"
            )
        if self.task == "regression" and self.detector in BINARY_DETECTORS:
            raise ValueError(
                f"detector: {self.detector} watches 0/1 errors; a regression pipeline takes one of "
                "adwin, page_hinkley, kswin"
            )
        if self.label_on_expiry == "learn_default" and self.label_default is None:
            raise ValueError("label_default: required with label_on_expiry=learn_default (the label an expired event is learned with)")
        if self.labels_topic is not None and self.labels_topic == self.events_topic:
            raise ValueError("labels_topic: must differ from events_topic")
        return self

    @field_validator("api_keys")
    @classmethod
    def _api_keys(cls, v: SecretStr | None) -> SecretStr | None:
        if v is None:
            return v
        keys = [k.strip() for k in v.get_secret_value().split(",") if k.strip()]
        if not keys:
            raise ValueError("no key in the list; give one or more comma-separated keys, or unset it")
        if any(len(k) < 16 for k in keys):
            raise ValueError("each key must be at least 16 characters; make one with `python -c 'import secrets; print(secrets.token_urlsafe(32))'`")
        return SecretStr(",".join(keys))

    def api_key_list(self) -> list[bytes]:
        if self.api_keys is None:
            return []
        return [k.encode() for k in self.api_keys.get_secret_value().split(",")]

    @property
    def consumer_group(self) -> str:
        return self.group_id or f"driftline-{self.pipeline}"


def load_settings(**overrides: Any) -> Settings:
    """Build Settings, turning validation errors into one ConfigError that names each field."""
    overrides = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            field = ".".join(str(p) for p in err["loc"]) or "settings"
            env = f"DRIFTLINE_{field.upper()}"
            problems.append(f"{field} (env {env}): {err['msg']} (got {err.get('input')!r})")
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(problems)) from None
