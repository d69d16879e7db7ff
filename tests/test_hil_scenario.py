"""The scenario parser: shipped files load, bad files say what and where."""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.scenario import ScenarioError, load_scenario, parse_scenario, resolve, shipped_scenarios

MINIMAL = """
[scenario]
duration_s = 10
"""


def problems(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "t.toml")
    return info.value.problems


def test_every_shipped_scenario_loads_and_the_short_ones_fit_ci():
    paths = shipped_scenarios()
    scenarios = {load_scenario(p).name: load_scenario(p) for p in paths}
    assert set(scenarios) == {"patrol", "full-call", "tunnel", "broker-outage", "emergency", "receiver-unplug",
                              "config-push", "invalid-call", "long-shift", "garage", "crash", "night-shift",
                              "cold-boot-garage", "crash-low-side", "crash-high-side", "parked-drop",
                              "potholes-night", "silent-emergency"}
    for s in scenarios.values():
        assert s.expectations, s.name
        assert s.profile == "long" or s.duration_s <= 40, s.name
    assert scenarios["long-shift"].profile == "long" and scenarios["long-shift"].needs_link_proxy
    assert not scenarios["patrol"].needs_link_proxy
    assert scenarios["crash-low-side"].needs_imu and not scenarios["silent-emergency"].needs_imu


def test_an_imu_step_names_a_profile_the_rig_has():
    text = '[scenario]\nduration_s = 9\n[[step]]\nat = 1\naction = "imu"\nprofile = "low-side-55"\n'
    (problem,) = problems(text)
    assert problem[0] == "step[0].profile" and "low-side-50" in problem[1]
    ok = parse_scenario(text.replace("low-side-55", "low-side-50"), "x.toml")
    assert ok.needs_imu and ok.steps[0].args["profile"] == "low-side-50"


def test_a_cold_boot_is_said_in_the_scenario_and_checked():
    cold = load_scenario("cold-boot-garage")
    assert (cold.clock, cold.gnss_at_start, cold.signed_dispatch) == ("unsynchronised", "fix_lost", True)
    assert (load_scenario("patrol").clock, load_scenario("patrol").gnss_at_start) == ("host", "fix")
    assert cold.scaled(2.0).clock == "unsynchronised"


def test_a_cold_boot_with_a_wrong_value_is_refused(tmp_path: Path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nduration_s = 5\nclock = "stopped"\ngnss_at_start = "dark"\n')
    with pytest.raises(ScenarioError) as err:
        load_scenario(bad)
    assert {loc for loc, _ in err.value.problems} == {"scenario.clock", "scenario.gnss_at_start"}


def test_a_bare_name_finds_the_shipped_file():
    assert resolve("full-call").name == "full-call.toml"
    assert load_scenario("full-call").step_by_id["accept"].args == {"button": "ack", "ms": 200.0}


def test_minimal_file_gets_defaults():
    s = parse_scenario(MINIMAL, "x.toml", default_name="x")
    assert (s.name, s.unit_kind, s.profile, s.gnss_rate_hz, s.steps, s.expectations) == ("x", "car", "short", 1, (), ())


def test_steps_are_sorted_by_time_and_get_default_ids():
    s = parse_scenario(MINIMAL + """
[[step]]
at = 5
action = "press"
button = "en_route"
[[step]]
at = 2
action = "siren"
on = true
""")
    assert [(st.id, st.at) for st in s.steps] == [("siren@2", 2.0), ("press@5", 5.0)]


def test_toml_syntax_error_is_reported_with_the_file():
    with pytest.raises(ScenarioError) as info:
        parse_scenario("[scenario\nduration_s = 1", "broken.toml")
    assert "broken.toml" in str(info.value) and "TOML syntax" in str(info.value)


def test_missing_duration_and_unknown_keys_are_all_reported_at_once():
    found = problems("""
[scenario]
name = "x"
lenght_s = 3
[whatever]
""")
    locs = dict(found)
    assert "scenario.duration_s" in locs
    assert locs["scenario.lenght_s"] == "unknown key"
    assert "whatever" in locs


def test_step_problems_name_the_step_and_key():
    found = dict(problems(MINIMAL + """
[[step]]
at = 12
action = "press"
button = "horn"
[[step]]
at = 1
action = "teleport"
[[step]]
at = 2
action = "hold"
button = "emergency"
[[step]]
at = 3
action = "gnss_fault"
fault = "solar_flare"
colour = "red"
"""))
    assert "within 0..duration_s" in found["step[0].at"]
    assert "unknown input 'horn'" in found["step[0].button"]
    assert "unknown action 'teleport'" in found["step[1].action"]
    assert found["step[2].seconds"] == "required"
    assert "unknown fault 'solar_flare'" in found["step[3].fault"]
    assert found["step[3].colour"].startswith("unknown key; this one takes: fault")


def test_link_down_modes():
    found = dict(problems(MINIMAL + '[[step]]\nat = 1\naction = "link_down"\nmode = "unplugged"\n'))
    assert "blackhole" in found["step[0].mode"]
    ok = parse_scenario(MINIMAL + '[[step]]\nat = 1\naction = "link_down"\n[[step]]\nat = 2\naction = "link_up"\n')
    assert ok.steps[0].args == {"mode": "blackhole"} and ok.needs_link_proxy


def test_duplicate_step_ids_are_refused():
    found = dict(problems(MINIMAL + """
[[step]]
at = 1
id = "a"
action = "broker_stop"
[[step]]
at = 2
id = "a"
action = "broker_start"
"""))
    assert found["step[1].id"] == "duplicate step id 'a'"


def test_expectation_problems():
    found = dict(problems(MINIMAL + """
[[step]]
at = 1
id = "go"
action = "press"
button = "en_route"
[[expect]]
kind = "message"
after = "gone"
topic = "status"
[[expect]]
kind = "led"
led = "status"
state = "blinking"
[[expect]]
kind = "led"
led = "siren"
state = "on"
[[expect]]
kind = "message"
topic = "status"
match = { status = { approx = 1 } }
[[expect]]
kind = "message"
topic = "status"
after = "go"
at = 3
[[expect]]
kind = "telepathy"
"""))
    assert "no step with id 'gone'" in found["expect[0].after"]
    assert "takes a colour" in found["expect[1].state"]
    assert "unknown output 'siren'" in found["expect[2].led"]
    assert "operator" in found["expect[3].match.status"]
    assert "either after" in found["expect[4]"]
    assert "unknown kind 'telepathy'" in found["expect[5].kind"]


def test_the_rig_owns_broker_and_storage_settings():
    found = dict(problems(MINIMAL + """
[agent]
mqtt = { host = "mqtt.example" }
"""))
    assert "set by the rig" in found["agent.mqtt"]


def test_unreadable_file(tmp_path: Path):
    with pytest.raises(ScenarioError) as info:
        load_scenario(tmp_path / "nope.toml")
    assert "cannot read" in str(info.value)


def test_speed_compresses_the_timeline_but_not_latencies():
    s = load_scenario("broker-outage").scaled(2.0)
    assert s.duration_s == 18.0
    assert [st.at for st in s.steps] == [2.5, 10.0]
    online = next(e for e in s.expectations if e.name == "unit back online")
    assert online.args["within_ms"] == 6000


def test_power_steps_are_checked():
    text = MINIMAL + """
[[step]]
at = 1
action = "ignition"
on = "off"
[[step]]
at = 2
action = "power_fail"
hold_up_s = -1
[[step]]
at = 3
action = "power_cut"
off_s = 0
"""
    found = dict(problems(text))
    assert set(found) == {"step[0].on", "step[1].hold_up_s", "step[2].off_s"}
    ok = parse_scenario(MINIMAL + '[[step]]\nat = 2\naction = "power_fail"\n[[expect]]\nkind = "seq_accounted"\n', "p.toml")
    assert ok.steps[0].args == {"hold_up_s": 2.0, "off_s": None}
    assert ok.expectations[0].args == {"lost_in_transit_max": 0, "declared_lost_min": 0, "declared_lost_max": None}


def test_a_typo_gets_the_nearest_key_and_types_are_strict():
    found = dict(problems("""
[scenario]
duration_s = "10"
unit_knd = "car"
[[step]]
at = 1
action = "tap"
buton = "ack"
[[expect]]
kind = "message"
topic = "status"
within = 300
"""))
    assert found["scenario.duration_s"] == "must be a valid number, not '10'"
    assert found["scenario.unit_knd"] == "unknown key (did you mean `unit_kind`?)"
    assert found["step[0].buton"] == "unknown key (did you mean `button`?); this one takes: button, ms"
    assert found["step[0].button"] == "required"
    assert found["expect[0].within"].startswith("unknown key (did you mean `within_ms`?)")


def test_scenario_and_config_errors_share_one_base():
    from agent.config import ConfigError
    from agent.problems import ProblemsError

    assert issubclass(ScenarioError, ProblemsError) and issubclass(ConfigError, ProblemsError)
    assert ScenarioError.__init__ is ConfigError.__init__ is ProblemsError.__init__
