import pytest

from spacehub.errors import Conflict
from spacehub.stages import SERVING, TRANSITIONS, Stage, building_stage, check_transition, starting_stage

HUB_STAGES = {"NO_APP_FILE", "CONFIG_ERROR", "BUILDING", "BUILD_ERROR", "APP_STARTING", "RUNNING",
              "RUNNING_BUILDING", "RUNNING_APP_STARTING", "RUNTIME_ERROR", "DELETING", "STOPPED", "PAUSED",
              "SLEEPING"}


def test_stage_names_are_exactly_the_hubs():
    assert {s.value for s in Stage} == HUB_STAGES


def test_every_stage_has_a_transition_row_within_the_enum():
    assert set(TRANSITIONS) == set(Stage)
    for targets in TRANSITIONS.values():
        assert targets <= set(Stage)


def test_deleting_is_terminal():
    assert TRANSITIONS[Stage.DELETING] == {Stage.DELETING}
    with pytest.raises(Conflict):
        check_transition(Stage.DELETING, Stage.RUNNING)


def test_paused_is_never_woken_straight_to_running():
    with pytest.raises(Conflict):
        check_transition(Stage.PAUSED, Stage.RUNNING)
    check_transition(Stage.SLEEPING, Stage.APP_STARTING)


def test_a_serving_space_keeps_serving_while_it_rebuilds():
    assert building_stage(Stage.RUNNING) == Stage.RUNNING_BUILDING
    assert building_stage(Stage.BUILD_ERROR) == Stage.BUILDING
    assert starting_stage(Stage.RUNNING_BUILDING) == Stage.RUNNING_APP_STARTING
    assert starting_stage(Stage.BUILDING) == Stage.APP_STARTING
    assert Stage.RUNNING_BUILDING in SERVING
