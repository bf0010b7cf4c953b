"""Versioned safety prompt sets for training (the safety-KL term): never the evaluation suite's prompts."""
