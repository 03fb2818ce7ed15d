"""VAVL: Versatile Audio-Visual Learning for emotion recognition, trained and applied on Ray."""

__version__ = "0.1.0"
