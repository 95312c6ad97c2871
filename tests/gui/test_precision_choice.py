"""The precision list of Advanced says that fp16 is for GPUs (a CPU emulates it, many times slower),
as a run on the CPU in fp16 warns."""

from __future__ import annotations

from gui.panels.task_panel import TaskPanel


def test_fp16_is_labelled_for_gpus_and_slow_on_a_cpu(qtbot):
    panel = TaskPanel()
    qtbot.addWidget(panel)
    index = panel.precision.findData("fp16")
    assert index >= 0 and "GPUs only" in panel.precision.itemText(index)
    assert "slow on a CPU" in panel.precision.itemText(index)
    assert "fp16 is for GPUs" in panel.precision.toolTip()
    panel.precision.setCurrentIndex(index)
    assert panel.settings().precision == "fp16"  # the choice still reaches the engine as fp16
