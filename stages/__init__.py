"""One module per stage. Each stage is an async function ``(ctx: StageContext, ...)``
turned into a Prefect task by :func:`stages.runtime.stage`, which records its transitions,
logs and outputs in the store."""
