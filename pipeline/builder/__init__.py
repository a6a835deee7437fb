"""A build: its plan, its Beam graph, how it runs, what it counts and how it ends. Read in this order:

  inputs.py       every source's inputs (weights, limits, refusals) and the shards they are cut into
  plan.py         params + knowledge -> the steps (each a stage with its batch and accelerator), checked
  backends/       the landmark and AU backends the plan asks for (registry: name -> steps, versions, models)
  step.py         a step of the plan: a stage under its label, batched or not
  shard_steps.py  the image steps run per shard of inputs, with resumable completion markers
  run.py          the wiring: sources -> steps -> rows, rejects, manifest (`build()`)
  runner.py       the Beam runner and its worker processes, progress and stage counters
  progress.py     progress across workers
  manifest.py     the manifest of a build: what it read, ran and wrote
  finish.py       the end: dataset card, validation, publishing only if it passed
"""
