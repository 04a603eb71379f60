"""Config and CLI: TOML mirrors the schema, flags are generated from it, and mistakes are one line + exit 2."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dreamwire.app import cli
from dreamwire.app.config import ConfigError, RuntimeConfig, default_sink, load_toml, resolve
from dreamwire.control.schema import SCHEMA


@pytest.fixture(autouse=True)
def _keep_signal_handlers():
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    yield
    for s, h in saved.items():
        signal.signal(s, h)


def _toml(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dreamwire.toml"
    p.write_text(text, encoding="utf-8")
    return p


def test_full_toml_config_loads(tmp_path):
    p = _toml(tmp_path, """
model = "tiny"
source = "pattern:128x96@15"
sink = "null"
width = 128
height = 96
frames = 5
guidance = "none"
mode = "txt2img"
frame_buffer = 2
loras = ["styles/ink.safetensors:0.6", "owner/grain"]
[osc]
port = 9001
allow = ["127.0.0.1"]
telemetry = "127.0.0.1:9002"
[control]
prompt = "a watercolour forest"
strength = 0.5
steps = 3.0
prompt_blend = [["a", 1.0], ["b", 0.5]]
similarity_filter = true
""")
    cfg = load_toml(p)
    assert (cfg.source, cfg.sink, cfg.width, cfg.frames, cfg.guidance) == ("pattern:128x96@15", "null", 128, 5, "none")
    assert cfg.osc.port == 9001 and cfg.osc.allow == ("127.0.0.1",) and cfg.osc.telemetry == ("127.0.0.1", 9002)
    assert cfg.control["steps"] == 3 and cfg.control["prompt_blend"] == (("a", 1.0), ("b", 0.5))
    assert (cfg.mode, cfg.frame_buffer) == ("txt2img", 2)
    assert cfg.loras == (("styles/ink.safetensors", 0.6), ("owner/grain", 1.0))


@pytest.mark.parametrize(("text", "needle"), [
    ("modle = 'tiny'\n", "unknown key 'modle'"),
    ("[control]\nstrenght = 0.5\n", "unknown key 'strenght' in [control]"),
    ("[osc]\nprot = 1\n", "unknown key 'prot'"),
    ("[control]\nstrength = 2.0\n", "control.strength"),
    ("[control]\nprompt = 3\n", "control.prompt"),
    ("width = 100\n", "width: 100 is not a multiple of 8"),
    ("frames = 'ten'\n", "frames: expected an integer"),
    ("source = 'webcam:0'\n", "unknown bridge 'webcam:0'"),
    ("[osc]\ntelemetry = 'nowhere'\n", "osc.telemetry"),
    ("model = \n", "not valid TOML"),
    ("loras = 3\n", "loras: expected a list"),
    ("mode = 'img2vid'\n", "mode: expected one of"),
])
def test_bad_config_is_one_line_exit_2(tmp_path, capsys, text, needle):
    """Acceptance 6 (config): unknown keys and bad values name the problem on one line."""
    p = _toml(tmp_path, text)
    with pytest.raises(ConfigError, match=None) as info:
        load_toml(p)
    assert needle in str(info.value)
    assert cli.main(["run", "--config", str(p)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("dreamwire: error:") and needle in err


@pytest.mark.parametrize(("argv", "needle"), [
    (["--source", "webcam:0"], "unknown bridge 'webcam:0'"),
    (["--sink", "pattern"], "'pattern' cannot be a sink"),
    (["--source", "images:/definitely/not/here"], "is not a folder"),
    (["--strength", "3"], "--strength"),
    (["--steps", "many"], "--steps"),
    (["--prompt-blend", "a"], "--prompt-blend"),
    (["--width", "100"], "--width"),
    (["--telemetry", "7767"], "--telemetry"),
    (["--frames", "x"], "--frames"),
    (["--no-such-flag"], "unrecognized arguments"),
    (["--config", "/no/such/file.toml"], "cannot read"),
    (["--mode", "txt2img", "--guidance", "self", "--sink", "null"], "needs an input image"),
    (["--model", "/no/such/model/folder", "--sink", "null"], "--model tiny"),
    (["--frame-buffer", "0"], "--frame-buffer"),
])
def test_bad_flags_and_uris_are_one_line_exit_2(capsys, argv, needle):
    """Acceptance 6 (CLI, source URI): exit 2 before any model is built."""
    assert cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0, err
    assert needle in err and "error" in err


def test_bad_uri_exits_2_from_the_real_command(tmp_path):
    r = subprocess.run([sys.executable, "-m", "dreamwire", "run", "--source", "nope:x"], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines() == ["dreamwire: error: --source: unknown bridge 'nope:x'; expected one of: "
                                             "images, ndi, null, pattern, spout, video"]


def test_every_schema_parameter_has_a_flag():
    ns = cli.build_parser().parse_args([
        "run", "--prompt", "p", "--prompt-blend", "a", "0.5", "b", "1", "--negative-prompt", "n",
        "--guidance-scale", "2", "--delta", "0.5", "--seed", "9", "--seed-blend", "1", "0.5", "2", "0.5",
        "--strength", "0.6", "--steps", "3", "--t-index-list", "10,20,30", "--similarity-filter", "on",
        "--similarity-threshold", "0.9", "--similarity-max-skip", "4", "--pause", "0", "--bypass", "false",
        "--quantize", "beat", "--controlnet-scale", "0.5,1.5", "--controlnet-enabled", "1", "off",
        "--controlnet-start", "0.1", "0.2", "--controlnet-end", "0.9,1", "--latent-feedback", "0.15",
    ])
    cfg = cli.config_from_args(ns)
    assert set(cfg.control) == {s.name for s in SCHEMA}
    assert cfg.control["prompt_blend"] == (("a", 0.5), ("b", 1.0))
    assert cfg.control["seed_blend"] == ((1, 0.5), (2, 0.5))
    assert cfg.control["t_index_list"] == (10, 20, 30)
    assert cfg.control["similarity_filter"] is True and cfg.control["bypass"] is False
    assert cfg.control["controlnet_scale"] == (0.5, 1.5) and cfg.control["controlnet_enabled"] == (True, False)
    assert cfg.control["controlnet_start"] == (0.1, 0.2) and cfg.control["controlnet_end"] == (0.9, 1.0)
    assert cfg.control["latent_feedback"] == 0.15


def test_flags_override_the_config_file(tmp_path):
    p = _toml(tmp_path, "frames = 5\n[control]\nstrength = 0.2\n[osc]\nport = 9100\n")
    cfg = cli.config_from_args(cli.build_parser().parse_args(
        ["run", "--config", str(p), "--strength", "0.3", "--osc-port", "9200", "--osc-allow", "10.0.0.1,10.0.0.2"]))
    assert cfg.frames == 5 and cfg.control["strength"] == 0.3
    assert cfg.osc.port == 9200 and cfg.osc.allow == ("10.0.0.1", "10.0.0.2")


def test_defaults_sink_and_resolution():
    assert default_sink("pattern") == "images:./dreamwire-out"
    assert default_sink("video:clip.mp4") == "images:./dreamwire-out"
    assert default_sink("images:in/@12") == "images:in-out"
    assert default_sink("ndi:Studio") == "ndi:dreamwire"
    cfg = resolve(RuntimeConfig(), "cpu")
    assert (cfg.sink, cfg.width, cfg.height) == ("images:./dreamwire-out", 256, 256)
    assert resolve(RuntimeConfig(), "cuda").width == 512
    assert resolve(RuntimeConfig(model="stabilityai/sd-turbo"), "cpu").width == 512


def test_top_level_help_and_unknown_command(capsys):
    assert cli.main([]) == 0
    assert "run" in capsys.readouterr().out
    assert cli.main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err


def test_sources_reports_missing_extras_without_a_traceback(capsys):
    assert cli.main(["sources"]) == 0
    out = capsys.readouterr().out
    assert "ndi" in out and "spout" in out


@pytest.mark.parametrize("command", ["run", "bench", "build-engines"])
def test_one_parser_tree_lists_every_option_with_its_default(capsys, command):
    """Every declared setting of a subcommand is a flag, and its --help shows the default."""
    from dreamwire.app.build_engines import BuildOptions
    from dreamwire.bench.options import BenchOptions
    from dreamwire.control.settings import flag_of, settings_of, tables_of

    assert cli.main([command, "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps help text
    cls = {"run": RuntimeConfig, "bench": BenchOptions, "build-engines": BuildOptions}[command]
    declared = [(cls, n, "") for n, _ in settings_of(cls)]
    declared += [(sub, n, t) for t, _, sub in tables_of(cls) for n, _ in settings_of(sub)]
    assert len(declared) >= 8
    for owner, name, table in declared:
        assert flag_of(owner, name, table) in out, name
    assert out.count("(default:") + out.count("(on by default)") >= len(declared)
    if command == "run":
        assert all(f"--{s.name.replace('_', '-')}" in out for s in SCHEMA)


def _no_flags(parser):
    """``(command, option, action)`` for every ``--no-`` option anywhere in the argparse tree."""
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for command, sub in action.choices.items():
                yield from ((f"{command} {c}".strip(), o, a) for c, o, a in _no_flags(sub))
        for option in action.option_strings:
            if option.startswith("--no-"):
                yield "", option, action


def test_every_no_flag_says_it_turns_something_off():
    """A ``--no-`` flag's help describes what giving it does, not the on-state it switches off."""
    found = list(_no_flags(cli.build_parser()))
    assert {o for _, o, _ in found} >= {"--no-osc-tcp", "--no-failsafe-fallback"}
    for command, option, action in found:
        where = f"dreamwire {command} {option}"
        assert action.const is False and action.default is None, where  # giving it sets the switch off
        assert action.help.startswith("turn off"), (where, action.help)
        assert "(default: true)" not in action.help, (where, action.help)


def test_python_dash_m_dreamwire_is_the_dreamwire_command():
    r = subprocess.run([sys.executable, "-m", "dreamwire", "--help"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and "build-engines" in r.stdout


def test_config_docs_are_generated_from_runtime_config():
    """docs/config.md lists every RuntimeConfig field (and [osc] table) with its flag and default."""
    from dreamwire.app.docs import config_markdown, main
    from dreamwire.control.settings import flag_of, settings_of, tables_of

    text = (Path(__file__).resolve().parent.parent / "docs" / "config.md").read_text(encoding="utf-8")
    assert text == config_markdown(), "docs/config.md is stale: run `python -m dreamwire.app.docs docs`"
    for name, _ in settings_of(RuntimeConfig):
        assert f"| `{name}` | `{flag_of(RuntimeConfig, name)}` |" in text
    for table, _, cls in tables_of(RuntimeConfig):
        assert f"## `[{table}]`" in text
        for name, _ in settings_of(cls):
            assert f"| `{name}` | `{flag_of(cls, name, table)}` |" in text
    assert main([str(Path(__file__).resolve().parent.parent / "docs"), "--check"]) == 0


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["bench", "--help"], ["build-engines", "--help"],
                                  ["sources"]])
def test_help_and_sources_start_without_torch(argv):
    """Cold start: only what runs a model imports torch (2-3 s); help and the sender list are instant."""
    code = ("import sys\nfrom dreamwire.app.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
            "print('heavy:', sorted(m for m in ('torch', 'diffusers', 'transformers') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip().splitlines()[-1] == "heavy: []", r.stdout[-500:] + r.stderr[-2000:]


def test_a_non_utf8_config_is_one_line_and_exit_2(tmp_path):
    p = tmp_path / "show.toml"
    p.write_bytes(b'prompt = "caf\xe9"\n')
    r = subprocess.run([sys.executable, "-m", "dreamwire", "run", "--config", str(p)], capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "not UTF-8" in lines[0] and str(p) in lines[0]
