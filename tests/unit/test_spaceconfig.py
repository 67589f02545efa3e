import json

import pytest

from spacehub.errors import SpaceConfigError
from spacehub.spaceconfig import (
    MAX_CARD_BYTES,
    MAX_DEPTH,
    MAX_FRONT_MATTER_BYTES,
    MAX_KEY_CHARS,
    MAX_NODES,
    MAX_STRING_CHARS,
    check_readme,
    parse_config,
    split_front_matter,
)

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


# Limits: a README is hostile input whose card is stored and served in every listing -------------------------

BILLION_LAUGHS = "---\n" + 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n' + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ",".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)) + "---\n"


def test_yaml_aliases_are_refused_before_they_expand():
    assert len(BILLION_LAUGHS) < 400  # nine levels of nine: 9**9 strings once expanded
    with pytest.raises(SpaceConfigError, match=r"YAML aliases \(\*a\) are not allowed"):
        parse_config(BILLION_LAUGHS)


def test_merge_keys_use_aliases_and_are_refused_too():
    with pytest.raises(SpaceConfigError, match="aliases"):
        parse_config("---\nbase: &b {sdk: gradio}\nother:\n  <<: *b\n---\n")


def test_an_anchor_without_alias_is_harmless():
    assert parse_config("---\ntitle: &t Hello\n---\n").title == "Hello"


def test_front_matter_over_the_size_cap_is_refused():
    readme = "---\ntitle: x\ndescription: " + "y" * (10 * 1024 * 1024) + "\n---\n# body\n"
    with pytest.raises(SpaceConfigError, match=f"larger than {MAX_FRONT_MATTER_BYTES // 1024} KB"):
        parse_config(readme)


def test_a_large_body_after_small_front_matter_is_fine():
    assert parse_config("---\nsdk: gradio\n---\n" + "text\n" * 500_000).sdk == "gradio"


@pytest.mark.parametrize(("yaml_text", "rule"), [
    ("a: " + "[" * 30 + "]" * 30, f"nested more than {MAX_DEPTH} levels"),
    ("a: [" + ", ".join("x" for _ in range(MAX_NODES + 10)) + "]", f"more than {MAX_NODES} values"),
    ("k" * (MAX_KEY_CHARS + 1) + ": 1", f"longer than {MAX_KEY_CHARS} characters"),
    ("tags: ['" + "t" * (MAX_STRING_CHARS + 1) + "']", r"field 'tags\[0\]': longer than"),
    ("blob: !!binary aGVsbG8=", r"field 'blob': binary values"),
    ("title: " + "t" * 201, "field 'title'"),
    ("emoji: " + "🙂" * 17, "field 'emoji'"),
    ("license: " + "l" * 101, "field 'license'"),
    ("app_file: " + "a/" * 130 + "app.py", "field 'app_file'"),
    ("sdk_version: " + "1" * 33, "field 'sdk_version'"),
])
def test_every_limit_is_named(yaml_text, rule):
    with pytest.raises(SpaceConfigError, match=rule):
        parse_config(f"---\n{yaml_text}\n---\n")


def test_the_stored_card_has_a_size_cap():
    many = "\n".join(f"k{i}: {'v' * 1000}" for i in range(MAX_CARD_BYTES // 1000 + 1))
    assert len(many) < MAX_FRONT_MATTER_BYTES
    with pytest.raises(SpaceConfigError, match=f"more than the {MAX_CARD_BYTES // 1024} KB"):
        parse_config(f"---\n{many}\n---\n")


def test_the_card_is_json_safe():
    card = parse_config("---\nrelease: 2024-01-02\nratio: .nan\nkinds: !!set {b, a}\n1: one\n---\n").card_data()
    assert card == {"release": "2024-01-02", "ratio": "nan", "kinds": ["a", "b"], "1": "one"}
    json.dumps(card, allow_nan=False)


@pytest.mark.parametrize("sdk", ["streamlit", "flask"])
def test_an_unsupported_sdk_is_refused_naming_only_the_supported_ones(sdk: str) -> None:
    with pytest.raises(SpaceConfigError) as refused:
        parse_config(f"---\nsdk: {sdk}\n---\n")
    assert "'gradio', 'docker' or 'static'" in str(refused.value)
    assert "streamlit" not in str(refused.value).replace(sdk, "")


def test_check_readme_takes_the_bytes_a_commit_carries():
    assert check_readme(None).sdk is None
    assert check_readme(b"---\nsdk: static\n---\n").sdk == "static"
    with pytest.raises(SpaceConfigError, match="README.md is not UTF-8 text"):
        check_readme(b"---\nsdk: static\ntitle: \xff\n---\n")
    with pytest.raises(SpaceConfigError, match=r"YAML aliases \(\*a\)"):
        check_readme(b"---\na: &a [1]\nb: *a\n---\n")
