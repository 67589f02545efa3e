import pytest

from spacehub.accounts import bearer_credential


@pytest.mark.parametrize(("header", "token"), [
    ("Bearer sh_abc-DEF_123", "sh_abc-DEF_123"),
    (b"bearer   sh_abc\t", "sh_abc"),
    ("BEARER hf_x.y~z+/==", "hf_x.y~z+/=="),
])
def test_bearer_credentials(header, token):
    assert bearer_credential(header) == token


@pytest.mark.parametrize("header", [
    None, "", "Bearer", "Bearer ", "Bearer \t ", b"Bearer \xa0", "Bearer \x1f", "Bearer a b", "Bearer =abc",
    "Basic dXNlcjpwYXNz", "Bearersh_abc", "Token sh_abc",
])
def test_no_bearer_credential(header):
    assert bearer_credential(header) is None
