"""Reference implementations: the models as their users run them, sharing no code with the export path."""
