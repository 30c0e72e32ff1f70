"""Unit tests for plugins/module_utils/tsh_phase.py: phases and their durations."""

from ansible_collections.tsh.infra.plugins.module_utils.tsh_phase import advance


def test_the_first_phase_opens_with_nothing_to_close():
    assert advance(None, None, None, "backup", 100.0) == {
        "__deploy_durations": {}, "__deploy_phase": "backup", "__deploy_phase_started": 100.0}


def test_the_next_phase_closes_the_open_one():
    facts = advance({"backup": 1.0}, "install", 100.0, "migrate", 104.26)
    assert facts["__deploy_durations"] == {"backup": 1.0, "install": 4.3}
    assert facts["__deploy_phase"] == "migrate" and facts["__deploy_phase_started"] == 104.26


def test_closing_keeps_the_last_phase_named_and_opens_none():
    facts = advance({}, "retire", 10, "", 12.04)
    assert facts == {"__deploy_durations": {"retire": 2.0}, "__deploy_phase": "retire",
                     "__deploy_phase_started": None}
    # Closing twice changes nothing.
    again = advance(facts["__deploy_durations"], "retire", None, "", 99)
    assert again == facts


def test_the_durations_given_are_not_changed_in_place():
    given = {"gate": 3.0}
    advance(given, "switch", 1, "retire", 2)
    assert given == {"gate": 3.0}


def test_a_clock_that_went_back_counts_zero():
    assert advance({}, "gate", 50, "switch", 49)["__deploy_durations"] == {"gate": 0.0}


def test_values_as_templated_strings_are_read():
    facts = advance({}, "gate", "100.5", "switch", 101.0)
    assert facts["__deploy_durations"] == {"gate": 0.5}
