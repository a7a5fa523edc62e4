"""The settings form's editors: spin boxes that say why a value is refused, the target-module picker, and
:func:`make_field`, which builds the editor for one :class:`~loradesk.core.config.FieldInfo`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import Signal, Slot
from PySide6.QtGui import QValidator
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QGridLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from loradesk.core.config import FieldInfo

#: What 0 means for fields where it is a switch rather than a number.
ZERO_MEANS = {"training.max_steps": "Off (use epochs)", "training.eval_steps": "Each epoch",
              "training.save_steps": "Each epoch", "training.save_minutes": "Off", "training.threads": "Auto",
              "training.validation_fraction": "None"}


def _range_message(value: float, minimum: float, maximum: float) -> str:
    if value < minimum:
        return f"must be at least {minimum:g}"
    if value > maximum:
        return f"must be at most {maximum:g}"
    return ""


class SpinBox(QSpinBox):
    """A QSpinBox that says why a typed value is refused (``range_hint``) instead of silently ignoring it."""

    range_hint = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        result = super().validate(text, pos)
        value, ok = self.locale().toInt(text.strip().replace(self.locale().groupSeparator(), ""))
        self.range_hint.emit(_range_message(value, self.minimum(), self.maximum()) if ok else "")
        return result


class DoubleSpinBox(QDoubleSpinBox):
    """A QDoubleSpinBox with ``range_hint`` like :class:`SpinBox`."""

    range_hint = Signal(str)

    def validate(self, text: str, pos: int) -> object:
        result = super().validate(text, pos)
        value, ok = self.locale().toDouble(text.strip())
        self.range_hint.emit(_range_message(value, self.minimum(), self.maximum()) if ok else "")
        return result


class SciSpinBox(QDoubleSpinBox):
    """A spin box for small rates: shows ``0.0002`` or ``1e-05``, accepts ``2e-4``, steps 1-2-5 per decade."""

    range_hint = Signal(str)
    _LADDER = (1.0, 2.0, 5.0)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setDecimals(12)

    def textFromValue(self, value: float) -> str:
        return f"{value:.4g}"

    def valueFromText(self, text: str) -> float:
        try:
            return float(text.strip())
        except ValueError:
            return self.value()

    def validate(self, text: str, pos: int) -> object:
        stripped = text.strip()
        try:
            value = float(stripped)
        except ValueError:
            self.range_hint.emit("")
            ok = re.fullmatch(r"[0-9.eE+-]*", stripped) is not None
            return (QValidator.State.Intermediate if ok else QValidator.State.Invalid, text, pos)
        message = _range_message(value, self.minimum(), self.maximum())
        self.range_hint.emit(message)
        return (QValidator.State.Intermediate if message else QValidator.State.Acceptable, text, pos)

    def fixup(self, text: str) -> str:
        return self.textFromValue(self.value())

    def stepBy(self, steps: int) -> None:
        value = self.value()
        if value <= 0:
            self.setValue(self.minimum())
            return
        decade = math.floor(math.log10(value) + 1e-9)
        mantissa = value / 10**decade
        position = min(range(3), key=lambda i: abs(self._LADDER[i] - mantissa)) + 3 * decade + steps
        self.setValue(self._LADDER[position % 3] * 10 ** (position // 3))


@dataclass
class Field:
    """One generated editor: how to read it, how to set it, and where its problems go."""

    info: FieldInfo
    widget: QWidget
    message: QLabel
    get: Callable[[], Any]
    set: Callable[[Any], None]


class TargetModules(QWidget):
    """Which layers get an adapter: "auto" (all) or the checked layer names found in the model."""

    changed = Signal()
    find_requested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.auto = QCheckBox("All linear layers (auto)")
        self.find_button = QPushButton("Find layers")
        self.find_button.setToolTip("Read the model's layer names so you can pick some")
        self.status = QLabel()
        self.status.setObjectName("hintLabel")
        self.status.setWordWrap(True)
        self._grid = QGridLayout()
        self._grid.setContentsMargins(18, 0, 0, 0)
        self._grid.setHorizontalSpacing(12)
        self._boxes: dict[str, QCheckBox] = {}
        top = QHBoxLayout()
        top.setContentsMargins(0, 0, 0, 0)
        top.addWidget(self.auto)
        top.addStretch(1)
        top.addWidget(self.find_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(4)
        layout.addLayout(top)
        layout.addLayout(self._grid)
        layout.addWidget(self.status)
        self.status.hide()
        self.auto.toggled.connect(self._on_auto)
        self.find_button.clicked.connect(self.find_requested)

    def names(self) -> list[str]:
        return list(self._boxes)

    def set_names(self, names: list[str], checked: list[str] | None = None) -> None:
        """Show a checkbox per layer name (keeping current checks unless ``checked`` is given)."""
        keep = set(self.checked_names() if checked is None else checked)
        for box in self._boxes.values():
            self._grid.removeWidget(box)
            box.deleteLater()
        self._boxes = {}
        for i, name in enumerate(dict.fromkeys(names)):
            box = QCheckBox(name)
            box.setChecked(name in keep)
            box.setEnabled(not self.auto.isChecked())
            box.toggled.connect(self.changed)
            self._grid.addWidget(box, i // 3, i % 3)
            self._boxes[name] = box

    def checked_names(self) -> list[str]:
        return [name for name, box in self._boxes.items() if box.isChecked()]

    def value(self) -> list[str]:
        return ["auto"] if self.auto.isChecked() else self.checked_names()

    def set_value(self, value: list[str]) -> None:
        auto = value == ["auto"] or "auto" in value
        self.auto.blockSignals(True)
        self.auto.setChecked(auto)
        self.auto.blockSignals(False)
        explicit = [] if auto else list(value)
        self.set_names(self.names() + [n for n in explicit if n not in self._boxes],
                       checked=explicit if not auto else self.checked_names())
        self._enable_boxes()

    def check_all(self) -> None:
        for box in self._boxes.values():
            box.blockSignals(True)
            box.setChecked(True)
            box.blockSignals(False)
        self.changed.emit()

    def set_status(self, text: str) -> None:
        self.status.setText(text)
        self.status.setVisible(bool(text))

    def _enable_boxes(self) -> None:
        for box in self._boxes.values():
            box.setEnabled(not self.auto.isChecked())

    @Slot(bool)
    def _on_auto(self, on: bool) -> None:
        self._enable_boxes()
        self.changed.emit()
        if not on and not self._boxes:
            self.find_requested.emit()


def message_label() -> QLabel:
    """The red line under an editor that says what is wrong with its value (hidden while nothing is)."""
    label = QLabel()
    label.setObjectName("fieldMessage")
    label.setWordWrap(True)
    label.hide()
    return label


def cell(editor: QWidget, message: QLabel) -> QWidget:
    """``editor`` with its message line below it, as one form cell."""
    widget = QWidget()
    layout = QVBoxLayout(widget)
    layout.setContentsMargins(0, 0, 0, 0)
    layout.setSpacing(2)
    layout.addWidget(editor)
    layout.addWidget(message)
    return widget


def mark(widget: QWidget, message: QLabel, text: str) -> None:
    """Outline ``widget`` in red and show ``text`` under it; an empty ``text`` clears both."""
    if bool(widget.property("invalid")) != bool(text):
        widget.setProperty("invalid", bool(text))
        widget.style().unpolish(widget)
        widget.style().polish(widget)
    message.setText(text)
    message.setVisible(bool(text))


def _editor(info: FieldInfo, changed: Callable[..., None]) -> tuple[QWidget, Callable[[], Any], Callable[[Any], None]]:
    """The editor for ``info``'s type, calling ``changed`` on each edit, with its getter and setter."""
    default = info.default
    widget: Any
    if isinstance(default, bool):
        widget = QCheckBox(info.label)
        widget.toggled.connect(changed)
        return widget, widget.isChecked, widget.setChecked
    if info.choices:
        widget = QComboBox()
        widget.addItems(list(info.choices))
        widget.currentTextChanged.connect(changed)
        widget.setMaximumWidth(220)
        return widget, widget.currentText, widget.setCurrentText
    if isinstance(default, list):
        widget = TargetModules()
        widget.changed.connect(changed)
        return widget, widget.value, widget.set_value
    if isinstance(default, int):
        widget = SpinBox()
        widget.setRange(int(info.minimum if info.minimum is not None else 0),
                        int(info.maximum if info.maximum is not None else 2**31 - 1))
        widget.setGroupSeparatorShown(info.maximum is not None and info.maximum >= 100_000)
    elif isinstance(default, float):
        if info.decimals and info.decimals > 4:
            widget = SciSpinBox()
        else:
            widget = DoubleSpinBox()
            widget.setDecimals(info.decimals or 2)
        widget.setRange(info.minimum if info.minimum is not None else 0.0,
                        info.maximum if info.maximum is not None else 1e9)
        if info.step:
            widget.setSingleStep(info.step)
    else:
        widget = QLineEdit()
        widget.textEdited.connect(changed)
        return widget, widget.text, widget.setText
    widget.valueChanged.connect(changed)
    return widget, widget.value, widget.setValue


def make_field(info: FieldInfo, changed: Callable[..., None], problem: Callable[[str], str]) -> Field:
    """The editor for one setting: ``changed`` is called on each edit; ``problem(path)`` is the setting's
    current problem, shown again once a refused value is abandoned."""
    message = message_label()
    widget, get, put = _editor(info, changed)
    if isinstance(widget, SpinBox | DoubleSpinBox | SciSpinBox):
        widget.setKeyboardTracking(True)
        widget.setAccelerated(True)
        widget.setMaximumWidth(180)
        widget.range_hint.connect(lambda text: _show_hint(message, text))
        widget.editingFinished.connect(lambda: _show_problem(message, problem(info.path)))
        if info.path in ZERO_MEANS and widget.minimum() == 0:
            widget.setSpecialValueText(ZERO_MEANS[info.path])
    widget.setToolTip(info.help)
    return Field(info, widget, message, get, put)


def _show_hint(message: QLabel, text: str) -> None:
    """A typed value outside the allowed range: say why it is not taken."""
    if text:
        message.setText(f"Not accepted: {text}")
        message.setVisible(True)


def _show_problem(message: QLabel, text: str) -> None:
    message.setText(text)
    message.setVisible(bool(text))
