import pytest
from pydantic import ValidationError

from spacehub.settings import Settings, settings_env


def test_lists_are_comma_separated(monkeypatch):
    monkeypatch.setenv("SPACEHUB_PIP_FIND_LINKS", "/opt/wheels, /srv/more ,")
    assert Settings().pip_find_links == ["/opt/wheels", "/srv/more"]


def test_space_urls_carry_the_public_port():
    settings = Settings(port=8123)
    assert settings.space_url("alice-hello") == "http://alice-hello.space.localhost:8123"
    behind_tls = Settings(public_url="https://hub.example.com", spaces_domain="example-spaces.net")
    assert behind_tls.space_url("alice-hello") == "https://alice-hello.example-spaces.net"
    assert "hub.example.com" in behind_tls.platform_hosts


@pytest.mark.parametrize("token", ["short", "x" * 40, "sh_tooshort", "sh_" + "k" * 30 + " !"])
def test_admin_token_must_look_like_a_platform_token(token):
    with pytest.raises(ValidationError, match="SPACEHUB_ADMIN_TOKEN"):
        Settings(admin_token=token)


def test_children_see_the_same_settings(tmp_path):
    settings = Settings(data_dir=tmp_path, pip_find_links=["/a", "/b"], admin_token="sh_" + "k" * 30)
    env = settings_env(settings)
    assert env["SPACEHUB_DATA_DIR"] == str(tmp_path)
    assert env["SPACEHUB_PIP_FIND_LINKS"] == "/a,/b"
    assert env["SPACEHUB_ADMIN_TOKEN"] == "sh_" + "k" * 30
