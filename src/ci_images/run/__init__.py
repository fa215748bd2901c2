"""Running a plan: resolve it against the registries, build, smoke-test, publish, and report."""
