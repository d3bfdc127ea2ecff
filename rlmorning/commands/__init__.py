"""CLI subcommands: every module here has ``register(subparsers) -> {name: handler}``."""
