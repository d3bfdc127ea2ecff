"""YAML presets shipped with rlmorning (``--config NAME``)."""
