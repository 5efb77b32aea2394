"""The control loop: reconcile (one tick), the daemon around it, the ticker, preflight checks and plan rendering."""
