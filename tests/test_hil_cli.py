"""The umps-hil command line and the generated agent configuration."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from agent.config_validate import parse_config
from hil import agent_proc
from hil.cli import main


def test_list_names_every_shipped_scenario(capsys: pytest.CaptureFixture[str]):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("patrol", "full-call", "tunnel", "broker-outage", "emergency", "receiver-unplug", "config-push",
                 "invalid-call", "long-shift"):
        assert name in out


def test_run_refuses_a_bad_scenario_with_its_problems(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    bad = tmp_path / "bad.toml"
    bad.write_text('[scenario]\nduration_s = 5\n[[step]]\nat = 1\naction = "press"\nbutton = "horn"\n')
    assert main(["run", str(bad), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "step[0].button: unknown input 'horn'" in err
    assert not (tmp_path / "out").exists()


def test_run_needs_a_scenario_and_bench_mode_needs_a_broker(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["run"]) == 2
    assert main(["run", "patrol", "--unit-config", str(tmp_path / "unit.toml")]) == 2
    assert "needs --broker" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["run", "patrol", "--broker", "nohostport"])


def test_generated_config_is_valid_toml_the_agent_accepts(tmp_path: Path):
    data = agent_proc.rig_config(
        unit_id="HIL-01", unit_kind="motorcycle", gnss_port="/tmp/gnss0", pigpio_port=40000, mqtt_host="127.0.0.1",
        mqtt_port=1883, workdir=tmp_path, ui_port=18080,
        overrides={"unit": {"name": 'Moto "07" – Kénitra'}, "panel": {"labels": {"ar": {"busy": "مشغول"}},
                                                                      "emergency_hold_s": 1.0}},
    )
    path = agent_proc.write_toml(tmp_path / "agent.toml", data)
    parsed = tomllib.loads(path.read_text(encoding="utf-8"))
    assert parsed == data
    config = parse_config(parsed)
    assert config.gpio.factory == "pigpio" and config.gpio.pigpio_port == 40000
    assert config.mqtt.tls.enabled is False and config.display_kind == "none"
    assert config.unit.name == 'Moto "07" – Kénitra' and config.panel.emergency_hold_s == 1.0
    assert config.storage.state_dir == tmp_path / "state"


def test_agent_command_template(tmp_path: Path):
    proc = agent_proc.AgentProcess(tmp_path / "a.toml", tmp_path / "a.log", "{python} -m agent run --config {config}")
    assert proc.argv[-3:] == ["run", "--config", str(tmp_path / "a.toml")]
    proc = agent_proc.AgentProcess(tmp_path / "a.toml", tmp_path / "a.log", "ssh bench umps-agent run")
    assert proc.argv == ["ssh", "bench", "umps-agent", "run", "--config", str(tmp_path / "a.toml")]


def test_the_panel_page_serves_the_mirrored_frames(tmp_path: Path):
    import urllib.error
    import urllib.request

    from hil.panel_page import PanelPage
    from agent.adapters.panel_display import open_display
    from agent.core.panel_view import PanelView

    png = tmp_path / "panel.png"
    page = PanelPage(png, "KEN-M-07")
    try:
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(page.url + "panel.png", timeout=5)  # no frame yet: 404, not a crash
        display = open_display("dummy", mirror_png=str(png))
        assert display.show(PanelView(lang="fr", status="busy", clock="10:20"))
        body = urllib.request.urlopen(page.url + "panel.png", timeout=5).read()
        assert body.startswith(b"\x89PNG") and body == png.read_bytes()
        html = urllib.request.urlopen(page.url, timeout=5).read().decode()
        assert "/panel.png" in html and "KEN-M-07" in html
    finally:
        page.close()
