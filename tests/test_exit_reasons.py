"""Exit classification: pure, exhaustive over the interesting codes."""

from __future__ import annotations

import signal

import pytest

from drover_py import ExitReasons
from drover_py._exit_reasons import classify


def test_zero_is_a_normal_exit() -> None:
    reason = classify(0)
    assert isinstance(reason, ExitReasons.NormalExit)
    assert reason.payload.code == 0 and reason.payload.signal is None
    assert not isinstance(reason, ExitReasons.AbnormalExit)


@pytest.mark.parametrize("code", [1, 3, 70, 255])
def test_nonzero_is_abnormal(code: int) -> None:
    reason = classify(code)
    assert isinstance(reason, ExitReasons.AbnormalExit)
    assert reason.payload.code == code
    assert reason.returncode == code
    assert str(reason) == f"exited with code {code}"


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGSEGV, signal.SIGINT])
def test_negative_is_a_signal(sig: signal.Signals) -> None:
    reason = classify(-sig)
    assert isinstance(reason, ExitReasons.ExternalSignal)
    assert reason.payload.signal is sig
    assert isinstance(reason.payload.signal, signal.Signals)
    assert reason.returncode == -sig
    assert sig.name in str(reason)


def test_unknown_signal_number_is_kept_as_abnormal() -> None:
    reason = classify(-1000)
    assert isinstance(reason, ExitReasons.AbnormalExit)
    assert reason.payload.code == -1000


def test_every_reason_is_an_exit_reason_and_frozen() -> None:
    for code in (0, 1, -9):
        reason = classify(code)
        assert isinstance(reason, ExitReasons.ExitReason)
        assert reason == classify(code)
        assert hash(reason) == hash(classify(code))
