"""spacehub worker side: RQ jobs, recipes, builders, runtimes, GPU allocation."""
