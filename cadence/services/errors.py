class UserError(ValueError):
    """A refusal to show the operator as one clear sentence (CLI: stderr, non-zero exit)."""
