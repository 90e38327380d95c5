"""The Segment and Train dock widgets (magicgui forms; the work runs in napari thread workers, so the window
stays responsive; errors end as one line in the widget's status and a napari notification)."""
from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import napari
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
    SpinBox,
)
from napari.qt.threading import create_worker
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal

from ..errors import UnetsegError
from .segmenting import (
    OUTPUTS,
    PRECISIONS,
    TILE_SIZES,
    TTA_CHOICES,
    Cancelled,
    SegmentSettings,
    remember_checkpoint,
    remembered_checkpoint,
    segment_layer,
)

_SEGMENT_WIDGETS: weakref.WeakSet = weakref.WeakSet()  # so a finished training can hand its checkpoint over


class _Relay(QObject):
    """Carries a worker thread's news to the GUI thread (Qt queues signals across threads)."""

    progress = Signal(int, int)
    row = Signal(object)
    status = Signal(str)


def _path_text(value: Any) -> str:
    text = str(value or "").strip()
    return "" if text in (".", "") else text


def _message(err: BaseException) -> str:
    """One line for the user: a UnetsegError's own, else the exception's type and text."""
    if isinstance(err, UnetsegError):
        return str(err).splitlines()[0]
    return f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'failed'}"


class _LayerChoices:
    """A layer-type filter for a ComboBox's choices, refreshed as the viewer's layers change."""

    def __init__(self, viewer: napari.viewer.Viewer, kind: type) -> None:
        self.viewer, self.kind = viewer, kind

    def __call__(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return [(layer.name, layer) for layer in self.viewer.layers if isinstance(layer, self.kind)]


class _Worker:
    """One background run: a napari FunctionWorker, its Cancel/Stop flag and its relay."""

    def __init__(self, work: Callable[[threading.Event, _Relay], Any], on_done: Callable[[Any], None],
                 on_error: Callable[[BaseException], None], on_finish: Callable[[], None],
                 on_progress: Callable[[int, int], None] | None = None,
                 on_row: Callable[[dict], None] | None = None,
                 on_status: Callable[[str], None] | None = None) -> None:
        self.flag = threading.Event()
        self.relay = _Relay()
        if on_progress is not None:
            self.relay.progress.connect(on_progress)
        if on_row is not None:
            self.relay.row.connect(on_row)
        if on_status is not None:
            self.relay.status.connect(on_status)
        self.worker = create_worker(work, self.flag, self.relay, _start_thread=False,
                                    _connect={"returned": on_done, "errored": on_error, "finished": on_finish})
        self.worker.start()

    @property
    def running(self) -> bool:
        return self.worker.is_running


class _BackgroundForm(Container):
    """A form whose work runs in a :class:`_Worker`: its start and stop buttons, status line and error lines."""

    start_button: PushButton
    stop_button: PushButton
    status: Label
    progress: ProgressBar

    @property
    def running(self) -> bool:
        return self._job is not None and self._job.running

    def _start(self, work: Callable[[threading.Event, _Relay], Any], on_done: Callable[[Any], None], **relay: Any
               ) -> None:
        self._busy(True)
        self._job = _Worker(work, on_done, self._failed, self._finished, **relay)

    def _stop(self, text: str) -> None:
        if self._job is not None:
            self._job.flag.set()
            self._say(text)

    def _failed(self, err: BaseException) -> None:
        if isinstance(err, Cancelled):
            self._say("cancelled")
            return
        line = _message(err)
        self._say(line)
        show_error(f"unetseg: {line}")

    def _finished(self) -> None:
        self._job = None
        self._busy(False)

    def _busy(self, busy: bool) -> None:
        self.start_button.enabled = not busy
        self.stop_button.enabled = busy
        if busy:
            self.progress.value = 0

    def _say(self, text: str) -> None:
        self.status.value = text


class SegmentWidget(_BackgroundForm):
    """Segment the chosen image layer with a checkpoint (tiled, with progress and Cancel); results as layers."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from ..engines.registry import engine_choices

        self.viewer = viewer
        self.image = ComboBox(label="image", choices=_LayerChoices(viewer, napari.layers.Image))
        self.checkpoint = FileEdit(label="checkpoint", mode="r", filter="*.pt", value=remembered_checkpoint())
        self.engine = ComboBox(label="engine", choices=list(engine_choices()), value="auto")
        self.precision = ComboBox(label="precision", choices=list(PRECISIONS), value="auto")
        self.tile_size = ComboBox(label="tile size", choices=list(TILE_SIZES), value="auto")
        self.tta = ComboBox(label="TTA", choices=list(TTA_CHOICES), value="auto")
        self.output = ComboBox(label="output", choices=list(OUTPUTS), value="labels")
        self.level = SpinBox(label="pyramid level", min=0, max=0, value=0,
                             tooltip="multiscale images: the level to segment (0 = full resolution)")
        self.run_button = self.start_button = PushButton(text="Segment")
        self.cancel_button = self.stop_button = PushButton(text="Cancel", enabled=False)
        self.progress = ProgressBar(label="tiles", min=0, max=1, value=0)
        self.status = Label(value="")
        super().__init__(widgets=[self.image, self.checkpoint, self.engine, self.precision, self.tile_size, self.tta,
                                  self.output, self.level, self.run_button, self.cancel_button, self.progress,
                                  self.status])
        self.run_button.changed.connect(self.run)
        self.cancel_button.changed.connect(self.cancel)
        self.image.changed.connect(self._image_changed)
        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        self._job: _Worker | None = None
        self._started = 0.0
        self.last_layers: list[Any] = []
        _SEGMENT_WIDGETS.add(self)
        self._layers_changed()

    def _layers_changed(self, *_: Any) -> None:
        self.image.reset_choices()
        self._image_changed()

    def _image_changed(self, *_: Any) -> None:
        layer = self.image.value
        levels = len(layer.data) if layer is not None and layer.multiscale else 1
        self.level.max = levels - 1
        self.level.visible = levels > 1

    def settings(self) -> SegmentSettings:
        return SegmentSettings(checkpoint=_path_text(self.checkpoint.value), engine=self.engine.value,
                               precision=self.precision.value, tile_size=self.tile_size.value, tta=self.tta.value,
                               output=self.output.value, level=int(self.level.value))

    def run(self) -> None:
        """Start segmenting in a worker thread (nothing happens while a run is going)."""
        if self._job is not None:
            return
        layer = self.image.value
        if layer is None:
            self._say("open an image first")
            return
        settings = self.settings()
        leading = self._leading(layer)
        args = {"name": layer.name, "rgb": layer.rgb, "multiscale": layer.multiscale, "leading": leading,
                "scale": tuple(layer.scale), "translate": tuple(layer.translate)}
        data = layer.data

        def work(cancel: threading.Event, relay: _Relay) -> list[Any]:
            def tick(done: int, total: int) -> None:
                if cancel.is_set():
                    raise Cancelled
                relay.progress.emit(done, total)

            if cancel.is_set():
                raise Cancelled
            return segment_layer(data, settings, progress=tick, **args)

        self._started = time.perf_counter()
        self._checkpoint_used = settings.checkpoint
        self._start(work, self._add_layers, on_progress=self._on_progress)
        self._say(f"segmenting {layer.name} ...")

    def cancel(self) -> None:
        """Stop the run after the batch in flight; no layer is added."""
        self._stop("cancelling ...")

    def _leading(self, layer: Any) -> tuple[int, ...]:
        """The data indices of ``layer``'s leading (stack) axes at the viewer's current position."""
        point = layer.world_to_data(self.viewer.dims.point[-layer.ndim:]) if layer.ndim > 2 else ()
        return tuple(int(round(float(v))) for v in point)

    def _on_progress(self, done: int, total: int) -> None:
        self.progress.max = max(total, 1)
        self.progress.value = done

    def _add_layers(self, layers: list[Any]) -> None:
        added = []
        for data, kwargs, kind in layers:
            add = self.viewer.add_labels if kind == "labels" else self.viewer.add_image
            added.append(add(data, **kwargs))
        self.last_layers = added
        remember_checkpoint(self._checkpoint_used)
        self._say(f"done in {time.perf_counter() - self._started:.1f} s: {', '.join(a.name for a in added)}")



class TrainWidget(_BackgroundForm):
    """Train (or fine-tune) on the labels painted over an image; live loss and validation score; the best
    checkpoint becomes the Segment widget's choice."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        from ..training.setup import default_run_dir

        self.viewer = viewer
        self.image = ComboBox(label="image", choices=_LayerChoices(viewer, napari.layers.Image))
        self.labels_layer = ComboBox(label="labels", choices=_LayerChoices(viewer, napari.layers.Labels),
                               tooltip="painted: 0 = not labelled, 1 = first class, 2 = second ...; or a corrected "
                                       "segmentation from the Segment widget")
        self.init = FileEdit(label="start from", mode="r", filter="*.pt", value="",
                             tooltip="optional: a checkpoint to fine-tune (empty: train from scratch)")
        self.minutes = FloatSpinBox(label="minutes", min=0.1, max=10_000.0, step=0.5, value=2.0)
        self.epochs = SpinBox(label="epochs", min=0, max=100_000, value=0,
                              tooltip="stop after this many epochs (0: when the minutes are up)")
        self.out = FileEdit(label="run folder", mode="d", value=str(default_run_dir("napari")))
        self.train_button = self.start_button = PushButton(text="Train")
        self.stop_button = PushButton(text="Stop", enabled=False,
                                      tooltip="end training now, keeping the best checkpoint so far")
        self.progress = ProgressBar(label="time", min=0, max=100, value=0)
        self.status = Label(value="")
        super().__init__(widgets=[self.image, self.labels_layer, self.init, self.minutes, self.epochs, self.out,
                                  self.train_button, self.stop_button, self.progress, self.status])
        self.curve = _Curve()
        self.native.layout().addWidget(self.curve.canvas)
        self.train_button.changed.connect(self.run)
        self.stop_button.changed.connect(self.stop)
        viewer.layers.events.inserted.connect(self._layers_changed)
        viewer.layers.events.removed.connect(self._layers_changed)
        self._job: _Worker | None = None
        self.result: Any = None
        self.rows: list[dict] = []
        self._layers_changed()

    def _layers_changed(self, *_: Any) -> None:
        self.image.reset_choices()
        self.labels_layer.reset_choices()

    def run(self) -> None:
        """Start training in a worker thread."""
        from .training import train_from_labels

        if self._job is not None:
            return
        image, labels = self.image.value, self.labels_layer.value
        if image is None or labels is None:
            self._say("open an image and a labels layer painted over it first")
            return
        out = Path(_path_text(self.out.value) or ".")
        if (out / "last.pt").exists():
            self._say(f"{out} already holds a run: choose another run folder")
            return
        init = _path_text(self.init.value) or None
        minutes = float(self.minutes.value)
        image_data = image.data[0] if image.multiscale else image.data
        labels_data = labels.data[0] if labels.multiscale else labels.data
        kwargs = {"minutes": minutes, "epochs": int(self.epochs.value) or None, "init": init, "rgb": image.rgb, "metadata": dict(labels.metadata),
                  "features": labels.features, "scale": tuple(labels.scale), "names": (image.name, labels.name)}
        budget = 60.0 * minutes

        def work(stop: threading.Event, relay: _Relay) -> Any:
            return train_from_labels(image_data, labels_data, out, on_epoch=relay.row.emit, stop=stop.is_set,
                                     on_status=relay.status.emit, **kwargs)

        self.rows, self.result, self._budget = [], None, budget
        self.curve.clear()
        self._start(work, self._done, on_row=self._on_row, on_status=self._say)
        self._say(f"planning and training for {minutes:g} min into {out} ...")

    def stop(self) -> None:
        """End training now: the run validates, writes best.pt and last.pt, and finishes."""
        self._stop("stopping after this step ...")

    def _on_row(self, row: dict) -> None:
        self.rows.append(row)
        self.progress.value = min(100, int(100 * row.get("time_s", 0.0) / max(self._budget, 1e-9)))
        score = row.get("val_miou")
        text = f"epoch {row['epoch']:g}: loss {row['train_loss']:.4f}"
        self._say(text + (f", val mIoU {score:.3f}" if score is not None and score == score else ""))
        self.curve.update(self.rows)

    def _done(self, result: Any) -> None:
        from ..training.setup import default_run_dir

        self.result = result
        best = result.best_checkpoint
        score = f"best val mIoU {result.best_miou:.3f}" if result.best_miou is not None else "no validation"
        self._say(f"done ({result.stopped_by}): {score}; {best}")
        remember_checkpoint(best)
        self.out.value = str(default_run_dir("napari"))  # the next run gets a folder of its own
        for widget in list(_SEGMENT_WIDGETS):
            if widget.viewer is self.viewer:
                widget.checkpoint.value = str(best)
        show_info(f"unetseg: trained {best}")

class _Curve:
    """A small matplotlib plot of training loss and validation mIoU against minutes."""

    def __init__(self) -> None:
        from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=(3.2, 2.0), tight_layout=True)
        self.canvas = FigureCanvasQTAgg(self.figure)
        self.loss = self.figure.add_subplot(111)
        self.score = self.loss.twinx()
        self.clear()

    def clear(self) -> None:
        for ax in (self.loss, self.score):
            ax.cla()
        self.loss.set_xlabel("minutes")
        self.loss.set_ylabel("loss", color="tab:blue")
        self.score.set_ylabel("val mIoU", color="tab:orange")
        self.canvas.draw_idle()

    def update(self, rows: list[dict]) -> None:
        t = [r["time_s"] / 60 for r in rows]
        self.loss.cla()
        self.score.cla()
        self.loss.plot(t, [r["train_loss"] for r in rows], color="tab:blue")
        scored = [(x, r["val_miou"]) for x, r in zip(t, rows, strict=True) if r.get("val_miou") is not None]
        if scored:
            self.score.plot(*zip(*scored, strict=True), color="tab:orange", marker="o")
            self.score.set_ylim(0, 1)
        self.loss.set_xlabel("minutes")
        self.loss.set_ylabel("loss", color="tab:blue")
        self.score.set_ylabel("val mIoU", color="tab:orange")
        self.canvas.draw_idle()
