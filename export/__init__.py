"""kdlive's export side: compile a trained student into a model bundle for ``live``."""
