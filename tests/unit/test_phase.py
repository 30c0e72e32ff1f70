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


def test_reset_forgets_an_earlier_run():
    facts = advance({"gate": 3.0}, "retire", 10.0, "", 20.0, reset=True)
    assert facts == {"__deploy_durations": {}, "__deploy_phase": "", "__deploy_phase_started": None}


PLAY = """\
- name: Phases as deploy.yml and rollback.yml keep them
  hosts: localhost
  gather_facts: false
  tasks:
    - name: Leave what a fact cache could hold from an earlier run
      ansible.builtin.set_fact:
        __stale: true
    - name: Start the record of this run's phases
      tsh_phase: {reset: true}
    - name: Start phase plan
      tsh_phase: {name: plan}
    - name: Start phase gate
      tsh_phase: {name: gate}
    - name: Say the open phase
      ansible.builtin.debug:
        msg: "OPEN {{ __deploy_phase }} {{ __deploy_durations | dictsort | map('first') | join(',') }} END"
    - name: Close the open phase
      tsh_phase: {}
    - name: Say what was recorded
      ansible.builtin.debug:
        msg: "CLOSED {{ __deploy_phase }} {{ __deploy_durations | dictsort | map('first') | join(',') }}
              {{ __deploy_phase_started is none }} END"
"""


def test_the_action_keeps_the_phases_through_a_real_play(tmp_path):
    """Through ansible-playbook: each phase closes the one before, the last one is closed by an empty
    call and keeps its name for a failure message."""
    import os  # noqa: PLC0415
    import pathlib  # noqa: PLC0415
    import re  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415
    repo = pathlib.Path(__file__).resolve().parents[2]
    (tmp_path / "play.yml").write_text(PLAY)
    env = dict(os.environ, ANSIBLE_CONFIG=str(repo / "ansible.cfg"), ANSIBLE_NOCOLOR="1", ANSIBLE_FORCE_COLOR="0")
    run = subprocess.run([str(pathlib.Path(sys.executable).parent / "ansible-playbook"), "-i", "localhost,", "-c", "local",
                          str(tmp_path / "play.yml"), "-e", f"ansible_python_interpreter={sys.executable}"],
                         capture_output=True, text=True, env=env, cwd=repo, check=False, stdin=subprocess.DEVNULL)
    assert run.returncode == 0, run.stdout + run.stderr
    text = " ".join(run.stdout.split())
    opened = re.search(r"OPEN (\S+) (\S+) END", text)
    assert opened and opened.groups() == ("gate", "plan"), text[-2000:]
    closed = re.search(r"CLOSED (\S+) (\S+) (\S+) END", text)
    assert closed and closed.groups() == ("gate", "gate,plan", "True"), text[-2000:]


def test_nothing_else_sets_the_phase_facts():
    """A set_fact of these names would shadow tsh_phase's host facts for the rest of the run (a rollback
    refused in its gate once reported phase 'plan' this way)."""
    import pathlib  # noqa: PLC0415
    import re  # noqa: PLC0415
    repo = pathlib.Path(__file__).resolve().parents[2]
    setters = [f"{path.relative_to(repo)}:{number}"
               for path in [*repo.glob("playbooks/**/*.yml"), *repo.glob("roles/*/tasks/*.yml")]
               for number, line in enumerate(path.read_text().splitlines(), 1)
               if re.match(r"\s*(__deploy_phase|__deploy_durations|__deploy_phase_started):", line)]
    assert not setters, setters
