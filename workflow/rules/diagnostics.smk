# diagnostics rules: filled in by the stage that owns them (see docs/architecture.md).
