"""The compare-runs policy: defaults = configs/decision.yaml, typos rejected with a suggestion."""

from __future__ import annotations

import pytest
import yaml

from sai_mlflow.compare.policy import DEFAULT_POLICY_FILE, Policy, PolicyError, load_policy, make_policy


def test_builtin_defaults_equal_the_config_file():
    on_disk = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    builtin = Policy().as_dict()
    for key, value in on_disk.items():
        assert builtin[key] == value, key
    assert load_policy().as_dict() == builtin


def test_typo_is_rejected_with_the_closest_key(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("max_memory_fractoin: 0.8\n")
    with pytest.raises(PolicyError, match="unknown key 'max_memory_fractoin'.*did you mean 'max_memory_fraction'"):
        load_policy(f)


def test_unrelated_unknown_key_lists_valid_keys():
    with pytest.raises(PolicyError, match="valid keys: max_memory_fraction"):
        make_policy({"zzz": 1})


@pytest.mark.parametrize("values,needle", [
    ({"max_memory_fraction": 1.5}, "max_memory_fraction"),
    ({"map_late_epochs": [5, 3]}, "first <= last"),
    ({"map_early_epochs": [1, 3], "map_late_epochs": [3, 5]}, "must start after"),
    ({"max_slowdown": "fast"}, "max_slowdown"),
])
def test_bad_values(values, needle):
    with pytest.raises(PolicyError, match=needle):
        make_policy(values)


def test_file_then_flags_override(tmp_path):
    f = tmp_path / "p.yaml"
    f.write_text("max_memory_fraction: 0.8\nmax_slowdown: 1.0\n")
    p = load_policy(f, {"max_slowdown": 0.25, "max_map_drop": None})
    assert p.max_memory_fraction == 0.8 and p.max_slowdown == 0.25 and p.max_map_drop == 0.02


@pytest.mark.parametrize("text,needle", [("- a\n- b\n", "expected a mapping"), ("a: [\n", "not valid YAML")])
def test_malformed_files(tmp_path, text, needle):
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError, match=needle):
        load_policy(f)
    with pytest.raises(PolicyError, match="not found"):
        load_policy(tmp_path / "missing.yaml")
