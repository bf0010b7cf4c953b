"""Evaluation of base against fine-tuned models (later issues). Not Hugging Face's `evaluate`."""
