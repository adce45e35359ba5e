"""The command line's shared parts: one error format, one stop-signal helper, one parser of every command."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from shelfsense.cli.errors import fail
from shelfsense.cli.main import COMMANDS, build_parser, main
from shelfsense.cli.signals import interrupt, on_stop_signals


def test_every_command_registers_itself() -> None:
    names = set(build_parser()._subparsers._group_actions[0].choices)
    # bench-capacity is typed `shelfsense bench capacity` (cli/bench.route)
    assert names == {"serve", "model", "classify", "footage", "record", "camera", "replay", "bench", "bench-capacity"}
    assert len(COMMANDS) == 7


def test_one_error_format(capsys: pytest.CaptureFixture[str]) -> None:
    assert fail(ValueError("--fps must be positive, got 0")) == 2
    assert capsys.readouterr().err == "shelfsense: error: --fps must be positive, got 0\n"


@pytest.mark.parametrize(
    "argv",
    [
        ["camera", "--source", "0", "--url", "http://127.0.0.1:9", "--camera", "c", "--jpeg-quality", "0"],
        ["replay", "/nonexistent-footage", "--url", "127.0.0.1:9"],
        ["footage", "synth", "--tiny", "--out", "/dev/null/x", "--frames", "0", "--quiet"],
    ],
)
def test_commands_report_bad_input_in_the_one_format(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("shelfsense: error: "), err


def test_stop_signals_on_a_loop_run_the_callback_and_are_removed() -> None:
    async def run() -> bool:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        with on_stop_signals(stop.set, loop):
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.wait_for(stop.wait(), 5)
        return stop.is_set()

    assert asyncio.run(run())
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_stop_signals_without_a_loop_turn_sigterm_into_ctrl_c() -> None:
    before = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt), on_stop_signals(interrupt):
        os.kill(os.getpid(), signal.SIGTERM)  # the handler runs before the next line
    assert signal.getsignal(signal.SIGINT) is before
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
