"""Ctrl-C while training: a flag between steps, the old handler back afterwards."""

from __future__ import annotations

import os
import signal

from glowflow.train.interrupt import CtrlC


def test_ctrl_c_sets_the_flag_and_the_handler_is_restored():
    before = signal.getsignal(signal.SIGINT)
    with CtrlC() as ctrl_c:
        os.kill(os.getpid(), signal.SIGINT)
        assert ctrl_c.requested
    assert signal.getsignal(signal.SIGINT) is before


def test_a_keyboard_interrupt_inside_becomes_the_flag():
    with CtrlC() as ctrl_c:
        raise KeyboardInterrupt
    assert ctrl_c.requested
