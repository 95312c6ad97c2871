"""Connects a run to the document, canvas and panels: starts it, paints finished windows into the
result preview as they arrive, reports progress, errors and the end, and handles Apply/Discard.
"""

from __future__ import annotations

from typing import Any, Optional

from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtWidgets import QWidget

from gui.run import plan as run_plan
from gui.run import state as run_state
from gui.background import BackgroundTask
from gui.canvas.view import Canvas
from gui.dialogs import show_error
from gui.document.document import Document
from gui.panels.log_panel import LogPanel
from gui.panels.task_panel import TaskPanel
from gui.document.undo import ApplyResultCommand, mask_replace_command
from gui.run.speed import RunTimer, SpeedBook, SpeedKey

#: How the log names the stages that run a network over blended tiles before the engine.
TILE_STAGE_NAMES = {"cleanup": "Stage 1, the clean-up network", "upscale": "The fast upscale (ResShift ×4)"}
from gui.run.worker import RestoreFunction, RestoreRun, engine_restore


class RunController(QObject):
    state_changed = Signal(str)  # running | ready | preview
    message = Signal(str)  # a short line for the status bar

    def __init__(self, document: Document, canvas: Canvas, panel: TaskPanel, log: LogPanel,
                 restore: Optional[RestoreFunction] = None, parent: Optional[QWidget] = None):
        super().__init__(parent)
        self.document, self.canvas, self.panel, self.log = document, canvas, panel, log
        self.restore = restore
        self.run: Optional[RestoreRun] = None
        self._winding_down: list[RestoreRun] = []  # cancelled runs whose thread is still stopping
        self._plan_scale = 1.0  # stage pixels -> scene pixels of the current plan
        self._tile_stages: set[str] = set()  # the run's stages of a network over tiles (they fill no marks)
        self.windows_finished = 0
        self._tile_stages = set()
        self.last_error: Optional[tuple[str, str]] = None
        self._run_key: Optional[str] = None  # run_state.request_key of the last run started
        self.show_dialogs = True
        self.speeds: Optional[SpeedBook] = None  # where each run's measured speed is remembered
        self._timer: Optional[RunTimer] = None
        self._speed_key: Optional[SpeedKey] = None
        panel.cancel_requested.connect(self.cancel)
        panel.apply_requested.connect(self.apply)
        panel.discard_requested.connect(self.discard)
        document.preview_changed.connect(self._on_preview_changed)
        document.image_changed.connect(self._look_for_saved_progress)
        self._progress_check: Optional[BackgroundTask] = None

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.active

    # ---- start / stop -----------------------------------------------------------------
    def start(self) -> bool:
        doc = self.document
        if self.running or not doc.has_image:
            return False
        settings = self.panel.settings()
        problems = self.panel.run_problems(settings, doc.size, doc.has_mask())
        if problems:
            self._error("error", problems[0])
            return False
        try:
            request = self._request(settings)
            run_plan.check_memory(request)
        except Exception as exc:  # noqa: BLE001 - InputError and friends: show, do not crash
            self._error("error", str(exc))
            return False
        self._run_key = run_state.request_key(request)
        self._timer, self._speed_key = RunTimer(), SpeedKey.of(settings, self.panel.device_kind(settings))
        if settings.cleanup or settings.uses_fast_upscale:  # its progress counts another network's tiles too
            self._speed_key = None
        doc.begin_preview(settings.upscale, fills_mask=settings.inpaint)
        self.windows_finished = 0
        self.last_error = None
        self.log.add("info", f"Restore: {_describe(settings)} on {doc.size[1]}×{doc.size[0]}")
        run = RestoreRun(request, run_state.keeping_progress(self.restore or engine_restore), self)
        run.stage.connect(self._on_stage)
        run.plan.connect(self._on_plan)
        run.window_started.connect(self._on_window_started)
        run.window_finished.connect(self._on_window_finished)
        run.window_preview.connect(self._on_window_preview)
        run.progress.connect(self._on_progress)
        run.log.connect(self.log.add)
        run.finished.connect(self._on_finished)
        run.failed.connect(self._on_failed)
        run.ended.connect(self._on_ended)
        run.stopped.connect(self._forget)
        self.run = run
        self.canvas.busy = True
        self.panel.set_preview_ready(False)
        self.panel.set_running(True)
        self.state_changed.emit("running")
        run.start()
        return True

    def _request(self, settings: run_plan.TaskSettings) -> Any:
        doc = self.document
        return run_plan.build_request(settings, doc.image, doc.engine_mask() if settings.inpaint else None)

    def would_continue(self) -> bool:
        """Whether Restore now would continue the last run from its saved windows: the same photo,
        mask and settings (a new request starts over and replaces them)."""
        if self._run_key is None or not self.document.has_image:
            return False
        try:
            request = self._request(self.panel.settings())
        except Exception:  # noqa: BLE001 - a request that cannot start continues nothing
            return False
        return run_state.request_key(request) == self._run_key

    def cancel(self) -> None:
        run = self.run
        if run is not None and run.active:
            self._winding_down.append(run)
            run.cancel()  # emits ended("cancelled") at once

    def _forget(self, run: RestoreRun) -> None:
        """A run whose thread has ended: let it go (gui.run.worker owns its thread until it is released)."""
        if run in self._winding_down:
            self._winding_down.remove(run)
        if run is self.run:
            self.run = None
        run.deleteLater()

    def wait_idle(self, ms: int = 10000) -> bool:
        """Block until every worker thread has stopped (tests, closing the window)."""
        runs = [r for r in [self.run, *self._winding_down] if r is not None]
        return all(r.wait(ms) for r in runs)

    def _look_for_saved_progress(self) -> None:
        """A photo just opened whose interrupted run Restore can continue: say so in the log."""
        if self._progress_check is not None:
            self._progress_check.discard()
            self._progress_check = None
        image = self.document.image
        if image is None or image is not self.document.original:  # not a photo just opened
            return
        task = BackgroundTask(lambda progress, cancel: run_state.saved_progress(image), self)
        task.succeeded.connect(self._on_saved_progress)
        self._progress_check = task.start()

    def _on_saved_progress(self, saved: tuple[int, Optional[Any]]) -> None:
        """Say so; and give back the mask of that run (undoably) while none is painted yet."""
        windows, mask = saved
        if not windows or self.running:
            return
        doc = self.document
        command = None
        if mask is not None and not doc.has_mask() and doc.mask is not None and doc.mask.shape == mask.shape:
            command = mask_replace_command(doc, mask, "Restore the saved mask")
        if command is None:
            self.log.add("info", f"This photo has saved progress ({windows} finished windows): Restore with the "
                                 "same mask and settings continues from it")
            return
        doc.undo_stack.push(command)
        self.log.add("info", f"This photo has saved progress ({windows} finished windows): its mask is back "
                             "(Undo removes it), and Restore with the same settings continues from it")

    # ---- events -----------------------------------------------------------------------
    def _on_stage(self, name: str, index: int, total: int) -> None:
        text = run_plan.describe_stage(name, index, total)
        self.panel.set_stage(text)
        self.message.emit(text)

    def _on_plan(self, plan: dict[str, Any]) -> None:
        self._plan_scale = plan["scale_to_output"] / max(self.document.preview_scale, 1)
        s = self._plan_scale
        self.canvas.set_plan([QRectF(l * s, t * s, w * s, h * s) for t, l, h, w in plan["boxes"]])
        levels = max(plan["levels"], default=-1) + 1
        size = f"{plan['output_size'][1]}×{plan['output_size'][0]} px"
        if plan.get("tiles"):  # a network over blended tiles before the engine: its tiles fill no marks
            self._tile_stages.add(plan["stage"])
            self.log.add("info", f"{TILE_STAGE_NAMES.get(plan['stage'], plan['stage'])}: {len(plan['boxes'])} tiles "
                                 f"({size})")
            return
        stage = {"hir-low": "Pass 1, the whole photo small", "restore": "Full size"}.get(plan["stage"], plan["stage"])
        self.log.add("info", f"{stage}: {len(plan['boxes'])} windows ({size}) in {levels} rounds: windows that do not "
                             "overlap are restored together")

    def _on_progress(self, done: int, total: int, elapsed: float, eta) -> None:
        if self._timer is not None:
            self._timer.progress(done, elapsed)
        self.panel.set_progress(done, total, elapsed, eta)

    def _remember_speed(self, finished: bool) -> None:
        """The speed this run measured, for the estimates of the next runs (gui.run.speed)."""
        timer, self._timer = self._timer, None
        if timer is None or self.speeds is None or self._speed_key is None:
            return
        speed = timer.speed(finished, self.speeds.get(self._speed_key))
        if speed is not None:
            self.speeds.remember(self._speed_key, speed)

    def _on_window_started(self, index: int, box, stage: str) -> None:
        self.canvas.set_window_state(index, "running")

    def _on_window_preview(self, index: int, box, pixels, scale_to_output: float) -> None:
        """A running window's current estimate: shown on the canvas only, never written into the
        result, so what a cancelled run keeps (and Save writes) is finished windows alone."""
        self.canvas.show_estimate(index, pixels)

    def _on_window_finished(self, index: int, box, pixels, scale_to_output: float, stage: str) -> None:
        top, left = box[0], box[1]
        self.document.paint_preview(top, left, pixels, scale_to_output, fills=stage not in self._tile_stages)
        self.canvas.set_window_state(index, "finished")
        self.windows_finished += 1

    def _on_finished(self, result, report: dict) -> None:
        self.document.finish_preview(result, report)
        seconds = report.get("seconds") or report.get("elapsed")
        took = f" ({run_plan.format_duration(float(seconds))})" if isinstance(seconds, (int, float)) else ""
        self.log.add("info", f"Finished{took}: result {result.shape[1]}×{result.shape[0]}")

    def _on_failed(self, kind: str, message: str) -> None:
        # an internal error's traceback goes into the log too: Copy then gives a useful bug report
        self.log.add("error", (message if kind == "internal" else message.splitlines()[0]) if message else kind)
        self._error(kind, message)

    def _on_ended(self, outcome: str) -> None:
        self._remember_speed(finished=outcome == "finished")
        self.canvas.busy = False
        self.canvas.clear_estimates()
        self.canvas.update()
        self.panel.set_running(False)
        has_preview = self.document.preview is not None and (outcome == "finished" or self.windows_finished > 0)
        if not has_preview and self.document.preview is not None:
            self.document.discard_preview()  # back to ready (_on_preview_changed); the stage below stays
        if outcome == "cancelled":
            kept = ("; Restore with the same photo, mask and settings continues from them"
                    if self.windows_finished else "")
            self.log.add("warning", f"Cancelled; {self.windows_finished} finished window(s) kept on the preview{kept}")
            self.panel.set_stage("Cancelled — finished windows kept" if has_preview else "Cancelled")
        elif outcome == "finished":
            self.panel.set_stage("Done — Apply to keep the result, Discard to drop it")
        else:
            self.panel.set_stage("Stopped by an error")
        self.panel.set_preview_ready(has_preview)
        self.state_changed.emit("preview" if has_preview else "ready")
        self.message.emit({"finished": "Restoration finished", "cancelled": "Cancelled"}.get(outcome, "Failed"))

    def _on_preview_changed(self, region) -> None:
        """The preview is gone (applied, discarded, or a new photo): nothing is left to report."""
        if region is None and self.document.preview is None and not self.running:
            self.canvas.clear_plan()
            self.panel.set_preview_ready(False)
            self.panel.clear_run_status()
            self.state_changed.emit("ready")

    def _error(self, kind: str, message: str) -> None:
        self.last_error = (kind, message)
        if self.show_dialogs:
            show_error(self.panel.window(), kind, message)

    # ---- result -----------------------------------------------------------------------
    def apply(self) -> None:
        doc = self.document
        if doc.preview is None or self.running:
            return
        doc.undo_stack.push(ApplyResultCommand(doc, doc.preview))  # the same array: a saved preview stays saved

    def discard(self) -> None:
        if not self.running:
            self.document.discard_preview()


def _describe(s: run_plan.TaskSettings) -> str:
    tasks = [name for name, on in ((f"clean up with {s.cleanup_model} (fidelity {s.fidelity:.2f})", s.cleanup),
                                   ("fill", s.inpaint), ("colorize", s.colorize),
                                   (f"upscale ×{s.upscale}", s.upscale > 1),
                                   (f"denoise σ={s.noise_sigma:.3f}", s.noise_sigma > 0 and not s.cleanup),
                                   (f"deblur σ={s.deblur_sigma:g}", s.deblur and not s.cleanup)) if on]
    return f"{', '.join(tasks)}; model {s.model}, {s.steps} steps, seed {s.seed}, device {s.device}"
