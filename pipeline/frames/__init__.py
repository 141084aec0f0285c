"""What every story frame goes through whatever its source: the clean stage (blank, blurred,
near-duplicate and intro/outro frames out, their text handed on)."""
