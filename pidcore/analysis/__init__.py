"""Rules that name what a results table shows: layer phases, stage-2 rises, task regimes, family strategies and
rows whose diagnostics make them untrustworthy. Each rule is stated in words beside its code, and the pages show
that statement wherever they show the rule's result."""
