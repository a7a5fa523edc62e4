"""Training curves: loss (raw, smoothed, eval) over steps, with the learning rate in a linked plot below.

Curves are created once and fed with ``setData``; live points are buffered and drawn by a timer at
about 10 Hz, so a fast run never redraws the plot on every logged step.

While a run adds points the axes keep their range: steps span the run's length from the start, and the
loss and learning-rate axes go from 0 to a round ceiling that moves only when a value passes it. A finished
run's curve (:meth:`LossPlot.set_metrics`) is fitted to its data. An axis
whose range changes rebuilds its tick labels, dozens of short Qt calls that each give up the interpreter
lock; with a training thread holding it in between, one rebuild per plotted step stalled the window by
60-150 ms.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import Qt, QTimer
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QVBoxLayout, QWidget

RAW_COLOR = "#9cc3e6"
SMOOTH_COLOR = "#1f6fb5"
EVAL_COLOR = "#e0702a"
LR_COLOR = "#5a9e4b"
JOIN_COLOR = "#888888"
FLUSH_MS = 100
SMOOTHING = 0.85  # EMA weight of the previous value (debiased, like TensorBoard's smoothing slider)
AXIS_WIDTH = 62  # same left-axis width on both plots so their x axes line up


def round_ceiling(value: float) -> float:
    """The smallest of 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8 times a power of ten that is at least ``value`` (> 0)."""
    if value <= 0:
        return 1.0
    scale = 10.0 ** math.floor(math.log10(value))
    for step in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10):
        if step * scale >= value * (1 - 1e-12):
            return step * scale
    return 10 * scale


def _finite(value: Any) -> float | None:
    """``value`` as a float when it is a finite number, else None."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


EVAL_NAME = "eval loss"


class LossPlot(QWidget):
    """Loss against step (raw thin, EMA bold, eval points) above a small learning-rate plot."""

    def __init__(self, parent: QWidget | None = None, show_lr: bool = True) -> None:
        super().__init__(parent)
        palette = self.palette()
        background = palette.color(QPalette.ColorRole.Base)
        foreground = palette.color(QPalette.ColorRole.Text)

        self.loss_widget = pg.PlotWidget(background=background)
        self.lr_widget = pg.PlotWidget(background=background)
        self.loss_plot: pg.PlotItem = self.loss_widget.getPlotItem()
        self.lr_plot: pg.PlotItem = self.lr_widget.getPlotItem()
        for item in (self.loss_plot, self.lr_plot):
            item.showGrid(x=True, y=True, alpha=0.12)
            item.getViewBox().setMouseEnabled(x=True, y=False)
            item.setMenuEnabled(False)
            for name in ("left", "bottom"):
                axis = item.getAxis(name)
                axis.setTextPen(pg.mkPen(foreground))
                axis.setPen(pg.mkPen(QColor(foreground).lighter(160) if foreground.lightness() < 128
                                     else QColor(foreground).darker(160)))
            item.getAxis("left").setWidth(AXIS_WIDTH)
        self.loss_plot.setLabel("left", "loss")
        self.lr_plot.setLabel("left", "learning rate")
        self.lr_plot.setLabel("bottom", "step")
        self.lr_plot.setXLink(self.loss_plot)
        self.lr_plot.getAxis("left").enableAutoSIPrefix(False)
        self.legend = self.loss_plot.addLegend(offset=(-10, 10), labelTextColor=foreground)

        self.raw_curve = self.loss_plot.plot(pen=pg.mkPen(RAW_COLOR, width=1), name="training loss")
        self.smooth_curve = self.loss_plot.plot(pen=pg.mkPen(SMOOTH_COLOR, width=2.5), name="smoothed")
        self.eval_curve = self.loss_plot.plot(pen=None, symbol="o", symbolSize=8, symbolPen=pg.mkPen("w"),
                                              symbolBrush=pg.mkBrush(EVAL_COLOR))  # in the legend once it has points
        self.lr_curve = self.lr_plot.plot(pen=pg.mkPen(LR_COLOR, width=1.5))
        self.eval_curve.setZValue(10)
        self._join = pg.InfiniteLine(angle=90, movable=False,  # where a continued run took over ("Train more")
                                     pen=pg.mkPen(JOIN_COLOR, width=1, style=Qt.PenStyle.DashLine))
        self.loss_plot.addItem(self._join, ignoreBounds=True)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.loss_widget, 3)
        layout.addWidget(self.lr_widget, 1)
        self.lr_widget.setVisible(show_lr)
        self.lr_widget.setMinimumHeight(90)

        self._timer = QTimer(self)
        self._timer.setInterval(FLUSH_MS)
        self._timer.timeout.connect(self.flush)
        self._dirty = False
        self.clear()

    # --- data --------------------------------------------------------------------------------------
    def clear(self) -> None:
        """Forget every point (the curves stay, empty)."""
        self._steps: list[float] = []
        self._loss: list[float] = []
        self._smooth: list[float] = []
        self._ema = 0.0
        self._ema_n = 0
        self._eval_steps: list[float] = []
        self._eval_loss: list[float] = []
        self._lr_steps: list[float] = []
        self._lr: list[float] = []
        self._max_steps = 0
        self._ranges: tuple[float, float, float] | None = None
        self._set_live(True)  # points arrive one by one (add_point / add_progress)
        self._join.hide()
        self._dirty = True
        self.flush()

    def _set_live(self, live: bool) -> None:
        """Live: ranges move in steps (:meth:`_fit_ranges`); not live: fitted to the data by pyqtgraph."""
        self._live, self._ranges = live, None
        for item in (self.loss_plot, self.lr_plot):
            if live:
                item.disableAutoRange()
            else:
                item.enableAutoRange()

    def mark_join(self, step: float | None) -> None:
        """A dashed line at ``step``, where a continued run's curve follows its parent's (None: no line)."""
        if step is not None:
            self._join.setValue(step)
        self._join.setVisible(step is not None)

    @property
    def join_step(self) -> float | None:
        """The step of the join line, or None when it is hidden."""
        return float(self._join.value()) if self._join.isVisible() else None

    def add_point(self, step: float, loss: Any = None, learning_rate: Any = None,
                  eval_loss: Any = None) -> None:
        """Buffer one logged step (any of the values may be missing); drawn on the next flush."""
        if (value := _finite(loss)) is not None:
            self._steps.append(step)
            self._loss.append(value)
            self._ema_n += 1
            self._ema = SMOOTHING * self._ema + (1 - SMOOTHING) * value
            self._smooth.append(self._ema / (1 - SMOOTHING ** self._ema_n))
        if (value := _finite(eval_loss)) is not None:
            self._eval_steps.append(step)
            self._eval_loss.append(value)
        if (value := _finite(learning_rate)) is not None:
            self._lr_steps.append(step)
            self._lr.append(value)
        self._dirty = True
        if not self._timer.isActive():
            self._timer.start()

    def add_progress(self, progress: Any) -> None:
        """Buffer a ``core.training.TrainProgress`` report (a live run: the axes keep their range)."""
        if not self._live:
            self._set_live(True)
        self._max_steps = max(self._max_steps, int(progress.max_steps or 0))
        self.add_point(progress.step, progress.loss, progress.learning_rate, progress.eval_loss)

    def set_metrics(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Show a finished run's metrics (rows of ``runs.read_metrics``) at once."""
        self.clear()
        for row in rows:
            step = _finite(row.get("step"))
            if step is not None:
                self.add_point(step, row.get("loss"), row.get("learning_rate"), row.get("eval_loss"))
        self.flush()
        self._set_live(False)  # drawn once: fitted to its data

    def point_count(self) -> int:
        """How many training-loss points have been received (drawn or still buffered)."""
        return len(self._loss)

    def flush(self) -> None:
        """Draw the buffered points now (the timer calls this about ten times a second)."""
        if not self._dirty:
            self._timer.stop()
            return
        self._dirty = False
        self.raw_curve.setData(self._steps, self._loss)
        self.smooth_curve.setData(self._steps, self._smooth)
        self.eval_curve.setData(self._eval_steps, self._eval_loss)
        listed = self.legend.getLabel(self.eval_curve) is not None
        if bool(self._eval_steps) != listed:
            if listed:
                self.legend.removeItem(self.eval_curve)
            else:
                self.legend.addItem(self.eval_curve, EVAL_NAME)
        self.lr_curve.setData(self._lr_steps, self._lr)
        self._fit_ranges()

    def _fit_ranges(self) -> None:
        """Set the axes' ranges when a value passed them (or the run's length became known)."""
        if not self._live:
            return
        last_step = max([*self._steps[-1:], *self._eval_steps[-1:], *self._lr_steps[-1:]], default=0.0)
        loss_top = max(max(self._loss, default=0.0), max(self._eval_loss, default=0.0))
        steps = float(self._max_steps) if self._max_steps >= last_step else round_ceiling(last_step or 1.0)
        ranges = (steps, round_ceiling(loss_top or 1.0), round_ceiling(max(self._lr, default=0.0) or 1e-3))
        if ranges == self._ranges:
            return
        self._ranges = ranges
        steps, loss, lr = ranges
        self.loss_plot.setXRange(0, steps, padding=0.02)
        self.loss_plot.setYRange(0, loss, padding=0.02)
        self.lr_plot.setYRange(0, lr, padding=0.05)
