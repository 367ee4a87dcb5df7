"""The model kinds, one module each in this package, found by looking (no list to edit).

A kind's module (`pipeline/kinds/<kind>.py`, named as its `kind:` in a spec) holds its
task spec, a `base.TaskBase` with `kind: Literal["<kind>"]` and its settings, and `KIND`,
its `base.StageKind` entry: where its stage class lives, the table it writes, its fields
and role. It stays light (pydantic only), so the spec, the plan and `audiobatch validate`
read every kind without importing torch.

Adding a model kind that writes an existing table is two files: this module, and its
stage (`pipeline/stages/<kind>.py`, a `stages.model.ModelStage` whose `load_model`
returns its `models.base.ModelAdapter`; a larger loader may live in `pipeline/models/`).
`registry.MODEL_STAGES` finds them; the spec's union of task kinds (`spec.TaskSpec`, hence
`schemas/job_spec.schema.json`), the column contract (`contract.MODEL_STAGES`), the plan
and the runner all read it.

A kind can also come from another package, without touching this one: its distribution
declares an entry point in the group `audiobatch.kinds`, named as the kind, whose value
is its kind module (`[project.entry-points."audiobatch.kinds"] level = "mypkg.level_kind"`).
The module is the same as one here (`TaskBase` spec, `KIND`); its stage may live anywhere
importable. Ray's workers import the stage and unpickle the spec, and find the kind's
entry the same way, so the package must be installed on every node (the cluster's image,
or `pip` in `audiobatch submit --runtime-env`). A plugin cannot replace a built-in kind:
the same name is refused.

This `__init__` imports nothing: a plugin's kind module imports `pipeline.kinds.base`
while it is itself being imported (a worker unpickling its spec), and must not set off
the search for kinds, which would import that half-made module.
"""
