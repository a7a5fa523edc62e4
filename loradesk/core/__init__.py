"""Headless core of LoRA Desk: data, settings, models, training, generation. Never imports Qt."""
