"""The command-line programs. Each module has `main(argv: list[str] | None = None) -> int`
(0 ok, 2 bad input, 1 internal error), run by the console script `vavl-<name>` of an installed
package and by `pipelines/<name>.py`, the entry point for `ray job submit --working-dir .`."""
