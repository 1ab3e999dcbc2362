"""Small helpers shared by the commands (console output)."""
