"""The declared settings (glaze.options) are what the daemon, the command line and
the engine take: every declared setting with its default, every preset by name."""

import json

import pytest
from daemon_helpers import DaemonProcess, layer

from glaze import options
from glaze.batch import _settings
from glaze.cli import _fill_saved_settings, build_parser
from glaze.daemon.client import Client, JobCancelled, RequestRejected, offered_options
from glaze.daemon.protocol import layout_for
from glaze.engine import CloakSettings

PRESET_SETTINGS = [setting for setting in options.SETTINGS if setting.presets]


def submit_and_cancel(client: Client, settings: dict) -> None:
    """Submit a small job (raises RequestRejected if the daemon refuses its settings), then
    cancel it and wait for its end, so that the next job does not queue behind it."""
    data, _ = layer(16, 16, "u8", "RGBA")
    job = client.submit(data, layout_for(16, 16), settings)
    job.cancel()
    with pytest.raises(JobCancelled):
        job.result()


def test_the_welcome_and_status_carry_the_presets(daemon, client, monkeypatch):
    expected = {"intensity": {"low": 0.025, "default": 0.05, "high": 0.075},
                "quality": dict(options.QUALITY.presets),
                "defend": list(options.DEFEND.choices)}  # the demo bundle has them all
    assert client.welcome["options"] == expected
    assert client.status()["options"] == expected
    # what the dialogs ask for: the running daemon's presets, without starting one
    monkeypatch.setenv("GLAZE_STATE_DIR", daemon.env["GLAZE_STATE_DIR"])
    assert offered_options() == expected


def test_offered_options_without_a_daemon_is_empty(tmp_path, monkeypatch):
    monkeypatch.setenv("GLAZE_STATE_DIR", str(tmp_path / "none"))
    assert offered_options() == {}


def test_every_declared_setting_is_accepted_by_the_daemon_with_its_default(client):
    defaults = {setting.name: setting.default for setting in options.SETTINGS}
    assert set(defaults) >= {"intensity", "quality", "seed", "work_size", "profile", "target"}
    submit_and_cancel(client, defaults)  # target's default (None) included
    for setting in PRESET_SETTINGS:
        for name in setting.presets:
            submit_and_cancel(client, {setting.name: name})


def test_the_daemon_checks_each_declared_setting_s_type_and_range(client):
    data, _ = layer(16, 16, "u8", "RGBA")
    for setting in options.SETTINGS:
        wrong = "1" if setting.kind is int and not setting.presets else [1]
        if setting.kind is str:
            wrong = 1
        with pytest.raises(RequestRejected) as raised:
            client.submit(data, layout_for(16, 16), {setting.name: wrong})
        assert raised.value.code == "malformed" and setting.name in str(raised.value)
        if setting.maximum is not None:
            too_big = setting.maximum + (setting.multiple_of or 1)
            with pytest.raises(RequestRejected) as raised:
                client.submit(data, layout_for(16, 16), {setting.name: too_big})
            assert raised.value.code == "bad-settings", setting.name


def test_every_declared_setting_is_a_cloak_option_with_its_default():
    parser = build_parser()
    args = parser.parse_args(["cloak", "art.png"])
    _fill_saved_settings(args)  # no settings file: the declared defaults
    for setting in options.SETTINGS:
        assert getattr(args, setting.name) == setting.default, setting.name
    explicit = [word for setting in options.SETTINGS if setting.default is not None
                for word in (setting.flag, str(setting.default))]
    again = parser.parse_args(["cloak", "art.png", *explicit])
    _fill_saved_settings(again)
    assert vars(again) == vars(args)
    assert _settings(args) == CloakSettings()  # the engine's defaults are the declared ones
    assert options.wire_settings(vars(args)) == {
        setting.name: setting.default for setting in options.SETTINGS
        if setting.default is not None}


@pytest.mark.parametrize("setting", PRESET_SETTINGS, ids=lambda s: s.name)
def test_cli_presets_reach_the_engine_as_their_numbers(setting, capsys):
    parser = build_parser()
    measure = {"intensity": "budget", "quality": "steps"}[setting.name]
    for name, number in setting.presets.items():
        args = parser.parse_args(["cloak", "art.png", setting.flag, name])
        assert getattr(_settings(args), measure) == number
    with pytest.raises(SystemExit):
        parser.parse_args(["cloak", "--help"])
    listed = " ".join(capsys.readouterr().out.split())  # help wraps lines
    for name, number in setting.presets.items():
        assert setting.preset_format.format(name=name, value=number) in listed


def test_engine_ranges_are_the_declared_ones():
    size = options.WORK_SIZE
    assert CloakSettings(work_size=size.minimum).work_size == size.minimum
    assert CloakSettings(work_size=size.maximum).work_size == size.maximum
    for bad in (size.minimum - size.multiple_of, size.maximum + size.multiple_of,
                size.minimum + 1):
        with pytest.raises(ValueError, match="work_size must be a multiple of 8"):
            CloakSettings(work_size=bad)
    assert CloakSettings(intensity=options.INTENSITY.maximum).budget == options.INTENSITY.maximum
    for bad in (options.INTENSITY.minimum, options.INTENSITY.maximum * 1.01, float("nan")):
        with pytest.raises(ValueError, match="intensity"):
            CloakSettings(intensity=bad)
    assert CloakSettings(quality=options.QUALITY.maximum).steps == options.QUALITY.maximum
    with pytest.raises(ValueError, match="quality"):
        CloakSettings(quality=options.QUALITY.maximum + 1)


def test_presets_of_prefers_a_usable_daemon_table():
    intensity = options.INTENSITY
    assert options.presets_of(intensity) == dict(intensity.presets)
    newer = {"intensity": {"gentle": 0.01, "default": 0.05}}
    assert options.presets_of(intensity, newer) == newer["intensity"]
    for unusable in ({"intensity": {}}, {"intensity": {"low": "0.025"}},
                     {"intensity": {"low": True}}, {"intensity": [0.025]}, {}):
        assert options.presets_of(intensity, unusable) == dict(intensity.presets)


def test_defend_is_read_as_a_set_of_declared_choices(client):
    defend = options.DEFEND
    assert defend.selection(" FLUX, sd ") == ("sd", "flux")  # declared order, any case
    assert defend.selection(["sdxl"]) == ("sdxl",)
    for bad in ("", ",", "sd,midjourney"):
        with pytest.raises(ValueError, match="defend against"):
            defend.selection(bad)
    assert "sdxl (SDXL, Illustrious, Pony)" in defend.describe()
    with pytest.raises(RequestRejected) as raised:
        submit_and_cancel(client, {"defend": "sd,midjourney"})
    assert raised.value.code == "bad-settings" and "midjourney" in str(raised.value)
    submit_and_cancel(client, {"defend": "flux"})


def test_a_saved_defend_is_the_default_of_a_cloak(tmp_path, monkeypatch):
    monkeypatch.setenv("GLAZE_CONFIG_DIR", str(tmp_path))
    parser = build_parser()

    def defend(*words: str, saved: object) -> str:
        (tmp_path / "config.json").write_text(json.dumps({"defend": saved}))
        args = parser.parse_args(["cloak", "art.png", *words])
        _fill_saved_settings(args)
        return args.defend

    assert defend(saved="flux, SD") == "sd,flux"  # what `glaze install --defend` kept
    assert defend("--defend", "sdxl", saved="flux") == "sdxl"  # the command line wins
    assert defend(saved="midjourney") == defend(saved=7) == options.DEFEND.default


def test_a_daemon_loads_and_defends_what_the_settings_file_chose(tmp_path):
    daemon = DaemonProcess(tmp_path, settings={"defend": "flux,sd"})
    try:
        with Client(daemon.info) as client:
            assert client.welcome["options"]["defend"] == ["sd", "flux"]
            data, _ = layer(32, 32, "u8", "RGBA")
            job = client.submit(data, layout_for(32, 32), {"quality": 1, "work_size": 64,
                                                           "target": "Cubism by Gris"})
            _, result = job.result()
            assert list(result["report"]["extractors"]) == ["sd", "flux"]  # its own set
            with pytest.raises(RequestRejected) as raised:
                submit_and_cancel(client, {"defend": "sdxl"})
            assert raised.value.code == "bad-settings" and "no 'sdxl'" in str(raised.value)
    finally:
        daemon.stop()


def test_choices_of_shows_the_declared_choices_the_daemon_serves():
    defend = options.DEFEND
    assert options.choices_of(defend) == dict(defend.choices)
    assert options.choices_of(defend, {"defend": ["flux", "sd"]}) == {
        "sd": defend.choices["sd"], "flux": defend.choices["flux"]}
    for unusable in ({"defend": ["midjourney"]}, {"defend": "sd"}, {"defend": []}, {}):
        assert options.choices_of(defend, unusable) == dict(defend.choices)


def test_wire_settings_strip_text_and_leave_out_empty_values():
    values = {"intensity": " high ", "quality": "", "seed": 3, "work_size": None,
              "profile": "ada", "target": "  ", "jpeg_quality": 90, "unknown": 1}
    assert options.wire_settings(values) == {"intensity": "high", "seed": 3, "profile": "ada"}
