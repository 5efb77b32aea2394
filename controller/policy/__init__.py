"""The pure core: scores (ours and the sideband's modes), weight mapping and the per-pool plan."""
