"""Qt user interface of LoRA Desk: the only package that imports PySide6 and pyqtgraph."""
