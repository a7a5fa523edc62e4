"""LoRA Desk: teach a language model a new fact with LoRA, on your own workstation.

Importing this package is cheap: it must not import torch, transformers or Qt.
"""

__version__ = "0.1.0"
