import pytest

from spacehub.errors import SpaceConfigError
from spacehub.spaceconfig import parse_config, split_front_matter

README = """---
title: Hello
emoji: 👋
colorFrom: blue
colorTo: purple
sdk: gradio
sdk_version: 6.31.0
python_version: "3.11"
app_file: app.py
pinned: false
custom_key: [1, 2]
---
# Body
"""


def test_parses_known_fields_and_keeps_unknown_ones():
    config = parse_config(README)
    assert (config.title, config.sdk, config.sdk_version) == ("Hello", "gradio", "6.31.0")
    assert config.python_version == "3.11"
    assert config.card_data()["custom_key"] == [1, 2]


def test_no_front_matter_is_an_empty_config():
    assert parse_config("# just text").sdk is None
    assert parse_config(None).sdk is None
    assert split_front_matter("# x") == (None, "# x")


@pytest.mark.parametrize(("yaml_text", "field"), [
    ("sdk: rails", "sdk"), ("sdk_version: latest!", "sdk_version"), ("app_port: 70000", "app_port"),
    ("colorFrom: chartreuse", "colorFrom"), ("app_file: ../etc/passwd", "app_file"),
    ("app_file: /abs.py", "app_file"), ("python_version: 3.11.2", "python_version"),
    ("short_description: " + "x" * 61, "short_description"), ("pinned: maybe", "pinned"),
])
def test_bad_fields_are_named(yaml_text, field):
    with pytest.raises(SpaceConfigError, match=f"field '{field}'"):
        parse_config(f"---\n{yaml_text}\n---\n")


def test_yaml_is_parsed_safely():
    with pytest.raises(SpaceConfigError):
        parse_config("---\ntitle: !!python/object/apply:os.system ['true']\n---\n")


def test_front_matter_must_be_a_mapping():
    with pytest.raises(SpaceConfigError, match="mapping"):
        parse_config("---\n- a\n- b\n---\n")
