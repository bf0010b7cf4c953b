"""Export to training formats and QLoRA fine-tuning (later issues)."""
