"""Text preparation for speech synthesis (normalising written text into speakable words)."""
