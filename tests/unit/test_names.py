import pytest

from spacehub.errors import InvalidName
from spacehub.names import check_name, check_owner, plain_label, split_repo_id, unique_label


@pytest.mark.parametrize("name", ["hello", "Hello_World", "a.b-c", "x" * 96, "a1"])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize(("name", "rule"), [
    ("", "empty"), ("x" * 97, "96"), ("a b", "letters"), ("a/b", "letters"), ("a--b", "--"), ("a..b", ".."),
    ("-a", "start"), ("a.", "end"), ("é", "letters"), ("repo.git", ".git"),
])
def test_invalid_names_name_the_rule(name, rule):
    with pytest.raises(InvalidName, match=rule):
        check_name(name)


@pytest.mark.parametrize("owner", ["api", "spaces", "models", "datasets", "docs", "static", "admin", "login",
                                   "settings", "new", "API"])
def test_reserved_owners_are_refused(owner):
    with pytest.raises(InvalidName, match="reserved"):
        check_owner(owner)


def test_split_repo_id():
    assert split_repo_id("alice/hello") == ("alice", "hello")
    with pytest.raises(InvalidName):
        split_repo_id("alice")
    with pytest.raises(InvalidName):
        split_repo_id("a/b/c")


def test_labels_follow_the_hub_rule():
    assert plain_label("user", "tmp_test_space") == "user-tmp-test-space"
    assert plain_label("Wauplin", "gradio-user-history") == "wauplin-gradio-user-history"
    assert plain_label("a", "b.c") == "a-b-c"


def test_colliding_labels_get_distinct_hashed_suffixes():
    first = unique_label("a-b", "c", set())
    second = unique_label("a", "b-c", {first})
    assert first == "a-b-c"
    assert second != first and second.startswith("a-b-c-")
    assert len(second) <= 63


def test_long_labels_fit_dns():
    label = unique_label("o" * 96, "n" * 96, set())
    assert len(label) <= 63
    assert label == unique_label("o" * 96, "n" * 96, set())  # stable
