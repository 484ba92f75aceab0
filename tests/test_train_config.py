"""One config system: training values validated with key/value/allowed messages, `--set` parsed the same
way for pipelines and training, bundled configs by name, the reference doc generated from the schema."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mepipe import resources
from mepipe.config import load_config
from mepipe.errors import ConfigError
from mepipe.schema import apply_overrides, parse_set, parse_value
from mepipe.train.config import config_from_dict, load_train_config, reference_markdown

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("key", "value", "allowed"),
    [
        ("optim.lr", -1, "greater than 0"),
        ("optim.gamma", 0, "greater than 0"),
        ("optim.gamma", 1.5, "less than or equal to 1"),
        ("model.dropout", 1.5, "less than 1"),
        ("augment.flip", 2, "less than or equal to 1"),
        ("data.batch_size", 0, "greater than or equal to 1"),
        ("optim.epochs", "ten", "valid integer"),
        ("model.input_size", 100, "multiple of 16"),
        ("model.fusion", "product", "'sum', 'gate' or 'scale'"),
        ("protocol.name", "kfold", "'loso', 'lodo' or 'all'"),
        ("run.seed", -3, "greater than or equal to 0"),
        ("data.delta", "5:2", "1 <= a <= b"),
    ],
)
def test_out_of_range_values_name_key_value_and_what_is_allowed(
    key: str, value: object, allowed: str
) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict("finetune", overrides={key: value})
    msg = str(err.value)
    line = next(line for line in msg.splitlines() if line.strip().startswith(f"- {key}"))
    assert allowed in line and repr(value) in line, msg


def test_every_bad_key_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict("finetune", overrides={"optim.lr": -1, "augment.flip": 2, "optim.nope": 1})
    msg = str(err.value)
    assert "optim.lr" in msg and "augment.flip" in msg
    assert "optim.nope: unknown key" in msg and "valid keys here: epochs, lr" in msg


@pytest.mark.parametrize(
    ("key", "value", "names"),
    [
        ("model.name", "resnet50", ["miacnet", "resnet-diff", "single-branch"]),
        ("data.labels", "casme2_9", ["casme2_5", "samm_5", "megc2019_3"]),
        ("run.device", "gpu", ["auto", "cpu", "cuda", "cuda:N"]),
    ],
)
def test_unknown_names_list_the_valid_ones_at_parse_time(key: str, value: str, names: list[str]) -> None:
    with pytest.raises(ConfigError) as err:
        config_from_dict("finetune", overrides={key: value})
    assert key in str(err.value) and all(n in str(err.value) for n in names)


def test_partial_section_keeps_the_kinds_own_defaults() -> None:
    pre = config_from_dict("pretrain", {"data": {"delta": [1, 8]}})
    assert pre.data.batch_size == 32 and pre.data.delta == (1, 8)  # not DataConfig's 16
    ft = config_from_dict("finetune", {"optim": {"lr": 1e-4}})
    assert ft.optim.epochs == 40 and ft.optim.lr == 1e-4  # finetune's 40, not OptimConfig's 5
    assert config_from_dict("pretrain").optim.epochs == 10


def test_cross_field_rules() -> None:
    with pytest.raises(ConfigError, match="pos_heads"):
        config_from_dict("finetune", overrides={"model.width": 4, "model.pos_heads": 3})
    with pytest.raises(ConfigError, match="pixel_weight"):
        config_from_dict("pretrain", overrides={"ma2mi.target": "pixel", "ma2mi.pixel_weight": 0})
    for goal in ("change", "motion"):  # with the latent target, a goal without a pixel term is refused
        with pytest.raises(ConfigError, match=f"pixel_goal={goal} needs"):
            config_from_dict("pretrain", overrides={"ma2mi.target": "latent", "ma2mi.pixel_goal": goal,
                                                    "ma2mi.pixel_weight": 0})  # fmt: skip
    assert config_from_dict("pretrain", overrides={"ma2mi.pixel_goal": "change"}).ma2mi.pixel_goal == "change"
    assert config_from_dict("pretrain", overrides={"ma2mi.target": "latent", "ma2mi.pixel_goal": "frame",
                                                   "ma2mi.pixel_weight": 0}).ma2mi.pixel_weight == 0  # fmt: skip
    with pytest.raises(ConfigError, match="exclude each other"):
        config_from_dict("finetune", overrides={"run.force": True, "run.resume": True})
    with pytest.raises(ConfigError, match="protocol.name=all"):
        config_from_dict("finetune", overrides={"protocol.name": "all", "protocol.val_subjects": 1})
    with pytest.raises(ConfigError, match="version 2"):
        config_from_dict("finetune", {"version": 2})
    with pytest.raises(ConfigError, match="kind is 'pretrain'"):
        config_from_dict("finetune", {"kind": "pretrain"})


def test_set_values_are_parsed_the_same_for_every_command() -> None:
    assert parse_value("112") == 112 and parse_value("1e-3") == 0.001 and parse_value("8.0e-4") == 8e-4
    assert parse_value("1:4") == "1:4"  # YAML 1.1 would read the base-60 integer 64
    assert parse_value("[1, 8]") == [1, 8] and parse_value("true") is True and parse_value("null") is None
    assert parse_value("cuda:0") == "cuda:0" and parse_value("casme2_5") == "casme2_5"
    assert parse_set(["optim.lr=1e-3", "data.delta=1:8"]) == {"optim.lr": 0.001, "data.delta": "1:8"}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_set(["optim.lr"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"optim": {"lr": 1.0}}, {"optim.lr.x": 1})
    # the same override text reaches both schemas as the same value
    sets = parse_set(["align.crop_size=112", "pairs.delta=[1, 8]"])
    pipe = load_config("casme2", sets)
    assert pipe.align.crop_size == 112 and pipe.pairs.delta == (1.0, 8.0)
    train = config_from_dict("pretrain", overrides=parse_set(["model.input_size=112", "data.delta=[1, 8]"]))
    assert train.model.input_size == 112 and train.data.delta == (1, 8)
    assert config_from_dict("pretrain", overrides=parse_set(["data.delta=1:8"])).data.delta == (1, 8)
    # unknown keys fail the same way in both
    for fn in (
        lambda: load_config("casme2", {"align.nope": 1}),
        lambda: config_from_dict("pretrain", overrides={"optim.nope": 1}),
    ):
        with pytest.raises(ConfigError, match="unknown key; remove it or check its spelling"):
            fn()


def test_bundled_training_configs_are_found_by_name_and_validate() -> None:
    names = resources.names("configs")
    assert {"train-pretrain", "train-pretrain-gpu", "train-finetune"} <= set(names)
    for name in names:
        kind = yaml.safe_load(resources.find("configs", name).read_text())["kind"]
        cfg = load_train_config(kind, name)
        assert cfg.kind == kind
    assert load_train_config("pretrain", "train-pretrain-gpu").model.input_size == 224
    with pytest.raises(ConfigError, match="kind is 'pretrain'"):
        load_train_config("finetune", "train-pretrain")
    with pytest.raises(ConfigError, match="available: .*train-finetune"):
        load_train_config("finetune", "train-nothing")


def test_yaml_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_train_config("finetune", bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_train_config("finetune", listed)
    ok = tmp_path / "ok.yaml"
    ok.write_text("kind: finetune\noptim:\n  lr: 1e-4\ndata:\n  delta: 1:3\n")
    cfg = load_train_config("finetune", ok, {"optim.epochs": 3})
    assert cfg.optim.lr == 1e-4 and cfg.data.delta == (1, 3) and cfg.optim.epochs == 3


def test_config_is_frozen_and_paths_may_be_pathlike(tmp_path: Path) -> None:
    cfg = config_from_dict("finetune", overrides={"data.shards": tmp_path, "init": None})
    assert cfg.data.shards == str(tmp_path) and cfg.init == ""
    with pytest.raises(Exception):  # noqa: B017  (pydantic's frozen-instance error)
        cfg.optim.lr = 1.0  # type: ignore[misc]


def test_training_reference_doc_is_generated_from_the_schema() -> None:
    doc = (ROOT / "docs" / "training.md").read_text()
    assert doc == reference_markdown(), "regenerate: python -m mepipe.train.config > docs/training.md"
    assert "| `optim.lr` | `float` (> 0.0) | `0.0008` |" in doc  # fine-tuning's own default
    assert "| `data.batch_size` | `int` (>= 1) | `32` |" in doc  # pre-training's own default
