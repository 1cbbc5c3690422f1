"""``prdit-studio`` command line: the viewer's --help documents scripted generation (one option list)."""

from __future__ import annotations

import pytest

from prdit_app import main as studio_main
from prdit_app import scripted_generate


def test_viewer_help_lists_every_generation_option():
    text = studio_main.build_parser().format_help()
    assert scripted_generate.GROUP_TITLE in text
    options = scripted_generate.generate_only_options()
    assert {"--generate", "--checkpoint", "--steps", "--seed", "--sampler", "--screenshot-during"} <= {
        flag for flag, _default in options.values()
    }
    for flag, _default in options.values():
        assert flag in text, flag


def test_generation_parser_uses_the_same_list():
    parser_flags = {s for a in scripted_generate.build_parser()._actions for s in a.option_strings}
    assert {flag for flag, _ in scripted_generate.generate_only_options().values()} <= parser_flags
    assert {"--screenshot", "--quit"} <= parser_flags  # their meaning changes with --generate


def test_generate_help_prints_the_full_help_without_a_display(capsys):
    with pytest.raises(SystemExit) as exc:
        studio_main.main(["--generate", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "--window-size" in out and "--steps" in out and "--screenshot-during" in out


@pytest.mark.parametrize("argv", [["--steps", "3"], ["--checkpoint", "x.safetensors"], ["--side-by-side"]])
def test_generation_options_without_generate_are_refused(capsys, argv):
    with pytest.raises(SystemExit) as exc:
        studio_main.main(argv)
    assert exc.value.code == 2
    assert f"{argv[0]} is an option of scripted generation: add --generate" in capsys.readouterr().err


def test_bad_viewer_option_with_generate_fails_before_qt(capsys):
    with pytest.raises(SystemExit) as exc:
        studio_main.main(["--generate", "--no-such-option"])
    assert exc.value.code == 2
    assert "--no-such-option" in capsys.readouterr().err
