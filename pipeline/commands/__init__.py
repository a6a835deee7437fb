"""The `fea` subcommands, a module per group: each adds its parsers (`add_*`) and handles them (`cmd_*`).

A handler turns parsed arguments into one library call and prints its outcome; `pipeline.cli` builds
the parser from these groups and maps exceptions to exit codes.

  args.py     exit codes, argparse value types (counts, fractions, output paths), shared help
  build.py    build (params + flags -> one config), sources, llm import-batch
  release.py  validate, inspect, report, export: reading a finished build
  train.py    train, evaluate, calibrate: learning from builds
"""
