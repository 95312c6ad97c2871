"""Model commands of the main window (a mixin): the installed models and classifiers in the task
panel, Choose file… (a checkpoint checked in the background), the Models dialog and the welcome."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from PySide6.QtWidgets import QFileDialog

from gui.background import BackgroundTask
from gui.models.welcome import WELCOME_DISMISSED
from gui.run.plan import FAST_UPSCALER, TEST_TINY
from gui.panels.cleanup_box import CleanupChoice
from gui.panels.task_panel import ModelChoice


def model_choice(entry) -> ModelChoice:
    """The model list's entry for an installed catalog or imported model (a catalog.ModelEntry)."""
    from engine.models import CLASSIFIER_ID

    return ModelChoice(entry.id, entry.display_name, entry.purpose, int(entry.image_size),
                       class_cond=CLASSIFIER_ID in entry.companions or bool(entry.extra.get("num_classes")))


def cleanup_choice(entry) -> CleanupChoice:
    """The clean-up picker's entry for an installed clean-up network (stage 1, engine/cleanup)."""
    extra = entry.extra or {}
    network = extra.get("summary") or f"×{extra.get('scale', 1)}"
    tip = f"{entry.description or entry.purpose} ({network}; licence: {entry.licence or 'not stated'})"
    return CleanupChoice(entry.id, entry.display_name, tip, int(extra.get("scale") or 1))


class ModelCommands:
    """Needs ``panel``, ``log_panel``, ``settings``, ``probed``, ``installed_model_count``,
    ``welcome_on_first_run``, ``_model_check``, ``_models_dialog`` and ``_error`` from the window
    it is mixed into."""

    @staticmethod
    def installed_choices() -> tuple[list[ModelChoice], list[ModelChoice], list[CleanupChoice]]:
        """Installed catalog and imported models: (diffusion models, ADM classifiers for guidance,
        clean-up networks). Imports the engine's model package, i.e. torch."""
        from engine.models import catalog

        from engine.models.kinds import CLASSIFIER, CLEANUP, DIFFUSION

        states = catalog.installed_models()
        return ([model_choice(s.entry) for s in states if s.entry.role == DIFFUSION],
                [model_choice(s.entry) for s in states if s.entry.role == CLASSIFIER],
                [cleanup_choice(s.entry) for s in states if s.entry.role == CLEANUP])

    @classmethod
    def installed_models(cls) -> list[ModelChoice]:
        return cls.installed_choices()[0]

    def refresh_models(self, choices: Optional[list[ModelChoice]] = None,
                       classifiers: Optional[list[ModelChoice]] = None,
                       cleanups: Optional[list[CleanupChoice]] = None) -> None:
        """The panel's model list (and its classifiers and clean-up networks when given), read
        again when ``choices`` is None."""
        if choices is None:
            try:
                choices, classifiers, cleanups = self.installed_choices()
            except Exception as exc:  # noqa: BLE001 - a broken catalog must not stop the app
                self.log_panel.add("warning", f"Model list unavailable: {exc}")
                choices = []
        first_models = choices and not self.installed_model_count
        self.panel.set_models(choices)
        self.panel.set_fast_upscaler(self.fast_upscaler_installed())
        if classifiers is not None:
            self.panel.set_classifiers(classifiers)
        if cleanups is not None:
            self.panel.set_cleanup_models(cleanups)
        if first_models and self.panel.settings().model == TEST_TINY:
            self.panel.select_model(choices[0].id)  # a real model beats the random one as the default
        self.installed_model_count = len(choices)
        if choices:
            self.hide_welcome()

    @staticmethod
    def fast_upscaler_installed() -> bool:
        """Whether the fast upscaler and the models it needs (its autoencoder) are installed."""
        from engine.models import catalog
        from engine.models.store import with_companions

        try:
            return all(catalog.model_status(mid) == catalog.INSTALLED for mid in with_companions(FAST_UPSCALER))
        except Exception:  # noqa: BLE001 - a broken catalog: no fast upscale (refresh_models says why)
            return False

    def get_fast_upscaler(self) -> None:
        """The Models dialog, at the fast upscaler (its Download asks to accept its licence)."""
        self.open_models_dialog()
        if self._models_dialog is not None:
            self._models_dialog.select(FAST_UPSCALER)

    @staticmethod
    def model_file_choice(path: str) -> ModelChoice:
        """The installed model that ``path`` is (its file or a copy), else the checkpoint file
        checked as Models ▸ Import checks it: its tensors must build a supported diffusion network.
        Raises engine.errors.EngineError saying why not."""
        from engine.errors import EngineError, ModelFileError
        from engine.models import sidecar_image_size
        from engine.models.kinds import CLASSIFIER, DIFFUSION, refuse_role
        from engine.models.store import inspect_checkpoint, installed_model_of

        file = Path(path)
        try:
            installed = installed_model_of(file) if file.is_file() else None
        except EngineError:  # a damaged catalog or registry: the file is still usable on its own
            installed = None
        if installed is not None and installed.role == DIFFUSION:
            return model_choice(installed)
        config = inspect_checkpoint(file)
        if config.role == CLASSIFIER:
            how = (f"It is installed as “{installed.display_name}”: choose it" if installed
                   else "Import it in Models…, then choose it")
            raise ModelFileError(f"{file.name} is an ADM classifier, not a diffusion model: it guides a "
                                 f"class-conditional model. {how} as the Classifier in Advanced.")
        refuse_role(config, DIFFUSION, file.name, "Import it in Models… to use it for what it does.")
        window = sidecar_image_size(file) or config.image_size
        return ModelChoice(str(file), file.name, f"Checkpoint file ({config.family}, {window} px window): {file}",
                           window, class_cond=config.class_cond)

    def choose_model_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Choose a model checkpoint", "",
                                              "Checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin);;All files (*)")
        if path:
            self.check_model_file(path)

    def check_model_file(self, path: str) -> None:
        """Check a checkpoint in the background (reading a 2 GB file takes seconds) and add it to
        the model list when it is usable. A check still running for another file is dropped."""
        self._drop_model_check()
        check = self.model_file_choice
        self._model_check = BackgroundTask(lambda _progress, _cancel: check(path), self, busy=True)
        self._model_check.succeeded.connect(lambda choice: self._on_model_file_checked(path, choice))
        self._model_check.failed.connect(self._on_model_file_failed)
        self.statusBar().showMessage(f"Checking the model file {Path(path).name}…")
        self.panel.set_model_check(Path(path).name)
        self._model_check.start()

    def _drop_model_check(self) -> None:
        """Forget the running check, if any (its result will not be used) and end the busy state."""
        if self._model_check is None:
            return
        self._model_check.discard()
        self._model_check = None
        self.panel.set_model_check(None)
        self.statusBar().clearMessage()

    def _on_model_file_checked(self, path: str, choice: ModelChoice) -> None:
        self._drop_model_check()
        if choice.id == path:
            self.panel.add_model_file(choice)
            self.log_panel.add("info", f"Model file {choice.id}: {choice.purpose}")
        else:  # an installed model's file: choose that model rather than list it twice
            if self.panel.model.findData(choice.id) < 0:
                self.refresh_models()
            self.panel.select_model(choice.id)
            self.log_panel.add("info", f"{path} is the installed model {choice.label}")
        self.statusBar().showMessage(f"Model {choice.label} is ready", 5000)

    def _on_model_file_failed(self, message: str) -> None:
        self._drop_model_check()
        self._error("Cannot use this model file", message)

    def models_dialog(self):
        """The window's one Models dialog, made on first use. A download or import started in it
        goes on while it is hidden (Esc) and is still shown when the dialog is opened again."""
        if self._models_dialog is None:
            from gui.models.dialog import ModelsDialog

            self._models_dialog = ModelsDialog(self, settings=self.settings)
            self._models_dialog.models_changed.connect(self.refresh_models)
            self._models_dialog.finished.connect(lambda _result: self.refresh_models())
        return self._models_dialog

    def open_models_dialog(self) -> None:
        """Models… (window-modal, without blocking)."""
        try:
            dialog = self.models_dialog()
        except ImportError as exc:
            self._error("Models unavailable", f"The model manager is not available: {exc}")
            return
        dialog.refresh()
        dialog.open()

    def maybe_show_welcome(self) -> None:
        """No model installed and the welcome not dismissed ("Not now", remembered): the welcome
        banner at the top of the task panel (never a dialog over the window)."""
        from gui.models.welcome import WelcomeBanner, should_show_welcome

        if self.installed_model_count or self.settings.get(WELCOME_DISMISSED, False, bool):
            return
        if self.welcome is None and should_show_welcome():
            self.welcome = WelcomeBanner(self.panel)
            self.welcome.chosen.connect(self.on_welcome_choice)
            self.panel.show_banner(self.welcome)

    def on_welcome_choice(self, choice: str) -> None:
        from gui.models.welcome import CONTINUE, DOWNLOAD, IMPORT

        if choice == IMPORT:
            path, _ = QFileDialog.getOpenFileName(self, "Import a model file", "",
                                                  "Model checkpoints (*.pt *.pth *.ckpt *.safetensors *.bin);;"
                                                  "All files (*)")
            if not path:
                return  # the banner stays
        if choice == CONTINUE:
            self.settings.set(WELCOME_DISMISSED, True)
        recommended = self.welcome.recommended if self.welcome is not None else None
        self.hide_welcome()
        if choice == CONTINUE:
            return
        self.open_models_dialog()
        dialog = self.models_dialog()
        if choice == DOWNLOAD and recommended is not None:
            dialog.select(recommended.id)
            dialog.download(recommended.id)
        elif choice == IMPORT:
            dialog.import_file(path)

    def hide_welcome(self) -> None:
        if self.welcome is not None:
            self.welcome.hide()
            self.welcome.deleteLater()
            self.welcome = None

    def _probe(self) -> None:
        models: Optional[tuple[list[ModelChoice], list[ModelChoice], list[CleanupChoice]]] = None
        devices: Optional[list[tuple[str, str]]] = None
        try:
            models = self.installed_choices()
        except Exception:  # noqa: BLE001 - refresh_models reports it in the GUI thread
            pass
        try:
            from engine.device import available_devices

            devices = available_devices()
        except Exception:  # noqa: BLE001 - keep the CPU entry
            pass
        self.probed.emit(models, devices)

    def _on_probed(self, models, devices) -> None:
        self.refresh_models(*(models or (None, None, None)))
        if devices:
            self.panel.set_devices(devices)
            names = ", ".join(desc for _spec, desc in devices)
            self.log_panel.add("info", f"Devices: {names}")
        if self.welcome_on_first_run and models is not None:
            self.welcome_on_first_run = False
            self.maybe_show_welcome()
