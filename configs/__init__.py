"""The experiment recipes (YAML), installed with the package as `vavl._recipes`: `--config NAME`
finds them from any folder (`vavl.recipes`). This file makes the folder a regular package, which
an editable install needs to map it."""
