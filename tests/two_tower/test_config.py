"""Config: defaults, loading, and one ConfigError per invalid field naming that field."""

import dataclasses
import re

import pytest

import dynsim
from dynsim.engine.config import parse_assignment, with_overrides

NUMERIC_KINDS = ("integer", "number", "integers", "numbers", "stages")

INVALID = [
    ({"data": {"r": 0}}, "data.r"),
    ({"data": {"r": 2.5}}, "data.r"),
    ({"data": {"n": -1}}, "data.n"),
    ({"data": {"r": 4, "n": 4, "d": 7}}, "data.d"),
    ({"data": {"kappa": 0.5}}, "data.kappa"),
    ({"data": {"kappa_b": 0.9}}, "data.kappa_b"),
    ({"data": {"noise": -0.1}}, "data.noise"),
    ({"data": {"spectrum": "cubic"}}, "data.spectrum"),
    ({"data": {"spectrum": "list"}}, "data.sigma"),
    ({"data": {"spectrum": "list", "r": 2, "sigma": [1.0, 0.0]}}, "data.sigma[1]"),
    ({"data": {"spectrum": "list", "r": 2, "sigma": [1.0]}}, "data.sigma"),
    ({"data": {"sigma": [2.0, 1.0], "r": 2}}, "data.spectrum"),
    ({"data": {"n": 2, "eta": [0.1, -1.0]}}, "data.eta[1]"),
    ({"data": {"basis": "fourier"}}, "data.basis"),
    ({"loss": {"kind": "triplet"}}, "loss.kind"),
    ({"loss": {"lam": 0.0}}, "loss.lam"),
    ({"loss": {"stages": [[0.0, 1.0]]}}, "loss.stages[0].tau"),
    ({"loss": {"stages": [[1.0, 1.0], [1.0, -2.0]]}}, "loss.stages[1].duration"),
    ({"loss": {"stages": []}}, "loss.stages"),
    ({"loss": {"stages": [[1.0, 1.0, 1.0]]}}, "loss.stages"),
    ({"loss": {"rescale": "yes"}}, "loss.rescale"),
    ({"train": {"lr": 0.0}}, "train.lr"),
    ({"train": {"batch": 1}}, "train.batch"),
    ({"train": {"batch": 0}, "loss": {"kind": "positive"}}, "train.batch"),
    ({"train": {"normalization": "layer"}}, "train.normalization"),
    ({"train": {"optimizer": "lbfgs"}}, "train.optimizer"),
    ({"train": {"momentum": 1.0}}, "train.momentum"),
    ({"train": {"precision": "float16"}}, "train.precision"),
    ({"train": {"lr": 1.0}, "loss": {"stages": [[1.0, 0.2]]}}, "loss.stages[0].duration"),
    ({"run": {"widths": [64, 0]}}, "run.widths[1]"),
    ({"run": {"widths": []}}, "run.widths"),
    ({"run": {"seeds": 0}}, "run.seeds"),
    ({"run": {"seed": -1}}, "run.seed"),
    ({"run": {"record_every": 0}}, "run.record_every"),
    ({"run": {"backend": "gpu"}}, "run.backend"),
    ({"run": {"init": "wishart"}}, "run.init"),
    ({"run": {"init": "bartlett"}}, "run.init"),  # the default backend, param, draws W_0
    ({"run": {"backend": "gram"}, "train": {"optimizer": "adam"}}, "train.optimizer"),
    ({"run": {"device": "tpu"}}, "run.device"),
    ({"run": {"alignment_samples": 1}}, "run.alignment_samples"),
]


@pytest.mark.parametrize(("source", "field"), INVALID, ids=[f for _, f in INVALID])
def test_invalid_field_names_itself(source, field):
    with pytest.raises(dynsim.ConfigError, match=field.replace("[", r"\[").replace("]", r"\]")):
        dynsim.load_config(source)


def test_batch_of_one_is_fine_without_negatives():
    config = dynsim.load_config({"loss": {"kind": "positive"}, "train": {"batch": 1}})
    assert config.train.batch == 1


def test_message_names_value_and_range():
    with pytest.raises(dynsim.ConfigError) as err:
        dynsim.load_config({"data": {"kappa": 0.5}})
    assert "0.5" in str(err.value) and ">= 1" in str(err.value)


@pytest.mark.parametrize(
    ("source", "hint"),
    [({"data": {"kapa": 2.0}}, "did you mean data.kappa"), ({"trian": {}}, "did you mean train")],
)
def test_unknown_keys_get_a_hint(source, hint):
    with pytest.raises(dynsim.ConfigError, match=hint):
        dynsim.load_config(source)


def test_defaults_are_valid_and_d_defaults_to_r_plus_n():
    config = dynsim.load_config(None)
    assert config == dynsim.Config()
    assert config.data.dim == config.data.r + config.data.n
    assert config.data.kappa_b is None


def test_toml_file_round_trips(tmp_path):
    import tomli_w

    config = dynsim.load_config({"data": {"r": 3, "n": 1, "spectrum": "spike"}, "loss": {"stages": [[0.1, 2.0]]}})
    path = tmp_path / "c.toml"
    path.write_text(tomli_w.dumps(config.to_dict()))
    assert dynsim.load_config(path) == config
    assert dynsim.load_config(str(path)).loss.stages == ((0.1, 2.0),)


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(dynsim.ConfigError, match="does not exist"):
        dynsim.load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nr = 1")
    with pytest.raises(dynsim.ConfigError, match="not valid TOML"):
        dynsim.load_config(bad)


def test_assignments_parse_toml_values_and_override():
    assert parse_assignment("loss.lam=2") == ("loss", "lam", 2)
    assert parse_assignment("loss.kind=positive") == ("loss", "kind", "positive")
    assert parse_assignment("loss.stages=[[0.1, 2.0]]") == ("loss", "stages", [[0.1, 2.0]])
    with pytest.raises(dynsim.ConfigError, match="section.key=value"):
        parse_assignment("lam=2")
    config = with_overrides(dynsim.Config(), {"loss": {"lam": 2.0}})
    assert config.loss.lam == 2.0 and config.data == dynsim.Config().data


def _numeric_bounds():
    """``(section, field, rule)`` of every field whose rule has a numeric bound (docs/config-reference.md)."""
    for section in dataclasses.fields(dynsim.Config):
        for field in dataclasses.fields(type(section.default)):
            rule = field.metadata["allowed"]
            if rule.kind in NUMERIC_KINDS and (rule.low is not None or rule.high is not None):
                yield section.name, field.name, rule


# What a field needs from its neighbours to be checked on its own.
_CONTEXT = {
    "sigma": {"data": {"spectrum": "list"}},
    "sigma_b": {"data": {"spectrum": "list", "sigma": [1.0] * 8}},
    "batch": {"loss": {"kind": "positive"}},
    "stages": {"train": {"lr": 1e-10}},  # so that a stage of duration 1e-9 lasts whole steps
}


def _sample(section, name, rule, value):
    """A configuration dict with ``value`` in the place of one element of the field."""
    source = {key: dict(values) for key, values in _CONTEXT.get(name, {}).items()}
    element = {"integers": [value], "numbers": [value] * (8 if rule.length == "r" else 24), "stages": [[value, value]]}
    source.setdefault(section, {})[name] = element.get(rule.kind, value)
    return source


@pytest.mark.parametrize(("section", "name", "rule"), list(_numeric_bounds()), ids=lambda x: getattr(x, "kind", x))
def test_documented_bounds_are_the_enforced_ones(section, name, rule):
    low = 32 if rule.low == "r + n" else rule.low  # d's bound at the default r + n
    integer = rule.kind in ("integer", "integers")
    if low is not None:
        outside = low if rule.strict else low - (1 if integer else 1e-9)
        with pytest.raises(dynsim.ConfigError, match=rf"{section}\.{name}"):
            dynsim.load_config(_sample(section, name, rule, outside))
        inside = low + (1 if integer else 1e-9) if rule.strict else low
        dynsim.load_config(_sample(section, name, rule, inside))
    if rule.high is not None:
        with pytest.raises(dynsim.ConfigError, match=rf"{section}\.{name}"):
            dynsim.load_config(_sample(section, name, rule, rule.high))
        dynsim.load_config(_sample(section, name, rule, rule.high - 1e-9))


def test_an_empty_noise_spectrum_is_right_when_there_is_no_noise():
    config = dynsim.load_config({"data": {"n": 0, "eta": []}})
    assert config.data.eta == () and dynsim.load_config(config.to_dict()) == config


@pytest.mark.parametrize(
    "overrides, field",
    [
        ({"train": {"lr": float("nan")}}, "train.lr"),
        ({"data": {"kappa": float("inf")}}, "data.kappa"),
        ({"loss": {"stages": [[1.0, float("nan")]]}}, "loss.stages[0].duration"),
        ({"run": {"record_every": float("inf")}}, "run.record_every"),
    ],
)
def test_non_finite_numbers_are_refused_naming_the_field(overrides, field):
    with pytest.raises(dynsim.ConfigError, match=rf"^{re.escape(field)} = .* must be finite"):
        dynsim.load_config(overrides)
